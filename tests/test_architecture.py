"""The package's imports run one way: no circle, and no arrow from a lower layer to a higher one
(README, "Architecture"). Walks every module's imports with `ast`, lazy imports inside functions
included; imports under `if TYPE_CHECKING:` (annotations only, never executed) are left out."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "unlearnkit"

# Bottom up. A module belongs to the first entry that is its name or a dotted prefix of it.
LAYERS = [
    ("foundation", ["registry", "checkpoint", "method", "distributed"]),
    ("data, models, metric primitives", ["data", "datasets", "text", "text_encoder", "models", "text_models",
                                         "metrics", "generation.unet", "generation.diffusion"]),
    ("request, transforms, loop", ["tasks", "generation.task", "request", "transforms", "loop", "train", "subspace"]),
    ("methods", ["methods"]),
    ("evaluation", ["evaluate", "audit", "generation.judge", "testing"]),
    ("bench", ["bench"]),
    ("entry points", ["cli", "api", "__main__", "__init__", "generation.__init__"]),
]


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] + ["__init__"]) if parts[-1] == "__init__" and len(parts) > 1 else ".".join(parts)


def layer_of(name: str) -> int:
    for i, (_, members) in enumerate(LAYERS):
        for m in members:
            if name == m or name.startswith(m + "."):
                return i
    raise AssertionError(f"module unlearnkit.{name} has no layer: add it to LAYERS in {__file__}")


def imports(path: Path, modules: set[str]) -> set[str]:
    """The package modules `path` imports (`from unlearnkit import x` counts as module x when x is one)."""
    found = set()
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and getattr(block.test, "id", None) == "TYPE_CHECKING" for n in ast.walk(block)}
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("unlearnkit"):
            base = node.module.removeprefix("unlearnkit").lstrip(".")
            for alias in node.names:
                sub = f"{base}.{alias.name}" if base else alias.name
                if sub in modules or f"{sub}.__init__" in modules:
                    found.add(sub if sub in modules else f"{sub}.__init__")
                elif base:
                    found.add(base if base in modules else f"{base}.__init__")
                else:
                    found.add("__init__")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("unlearnkit."):
                    sub = alias.name.removeprefix("unlearnkit.")
                    found.add(sub if sub in modules else f"{sub}.__init__")
    return found


def graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: imports(path, set(paths)) - {name} for name, path in paths.items()}


def test_every_module_has_a_layer_and_imports_only_its_own_or_lower_layers():
    upward = [f"{m} ({LAYERS[layer_of(m)][0]}) imports {d} ({LAYERS[layer_of(d)][0]})"
              for m, deps in graph().items() for d in deps if layer_of(d) > layer_of(m)]
    assert not upward, "imports that point up a layer:\n" + "\n".join(sorted(upward))


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    """One import circle of `g` (module -> imported modules) as a path that ends where it starts, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for d in sorted(g.get(m, ())):
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state and (cycle := visit(d)):
                return cycle
        stack.pop()
        state[m] = 2
        return None

    return next((c for m in sorted(g) if m not in state and (c := visit(m))), None)


def test_no_import_circle():
    cycle = find_cycle(graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_the_api_does_not_reach_into_the_benchmarks():
    assert not any(d.startswith("bench") for d in graph()["api"])


def test_the_walker_finds_circles_and_upward_imports(tmp_path):
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    module = tmp_path / "m.py"
    module.write_text("from unlearnkit.bench import runner\nif TYPE_CHECKING:\n    from unlearnkit import cli\n"
                      "def f():\n    import unlearnkit.request\n")
    assert imports(module, {"bench.runner", "cli", "request"}) == {"bench.runner", "request"}
