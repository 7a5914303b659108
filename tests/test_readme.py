"""The README works as written: its Python blocks run, every command in its shell blocks parses
(the flags exist), and the blocks it marks `readme-test: run` run."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from unlearnkit.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(<!-- readme-test: run -->\n)?```(\w*)\n(.*?)```", re.S)


def blocks() -> list[tuple[bool, str, str]]:
    return [(bool(m.group(1)), m.group(2), m.group(3)) for m in BLOCK.finditer((ROOT / "README.md").read_text())]


def commands(text: str) -> list[str]:
    """Shell commands of a block: comments dropped, continued lines joined."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [line.split("  #")[0].strip() for line in joined.splitlines() if line.strip() and not line.startswith("#")]


def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "UNLEARNKIT_CACHE": str(tmp_path / "cache"), "UNLEARNKIT_MODELS": "",
            "PYTHONPATH": str(ROOT)}


def test_the_readme_has_the_blocks_this_test_reads():
    kinds = [kind for _, kind, _ in blocks()]
    assert kinds.count("python") >= 3 and kinds.count("bash") >= 4


def test_every_python_block_runs_as_written(tmp_path):
    code = "\n\n".join(text for _, kind, text in blocks() if kind == "python")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env(tmp_path), capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "before" in done.stdout and "after" in done.stdout


def test_every_shell_command_parses():
    parser = build_parser()
    seen = 0
    for _, kind, text in blocks():
        if kind != "bash":
            continue
        for command in commands(text):
            words = shlex.split(command)
            if words[0] == "bash":
                assert (ROOT / words[1]).is_file(), command
                continue
            if words[0] == "torchrun":
                words = words[words.index("-m") + 2:]  # what follows "-m unlearnkit"
            elif words[0] in ("unlearnkit", ".venv/bin/unlearnkit"):
                words = words[1:]
            else:
                raise AssertionError(f"a README command this test does not know: {command}")
            if words == ["--version"]:
                continue
            parser.parse_args(words)  # an unknown flag or method exits here
            seen += 1
    assert seen >= 15


@pytest.mark.parametrize("command", [c for run, kind, text in blocks() if run for c in commands(text)])
def test_the_blocks_marked_to_run_run(command, tmp_path):
    words = shlex.split(command)
    assert words[0] == ".venv/bin/unlearnkit"
    done = subprocess.run([sys.executable, "-m", "unlearnkit", *words[1:]], cwd=ROOT, env=env(tmp_path),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Avg. Gap to Retrain" in done.stdout and "retrain (the goal)" in done.stdout
