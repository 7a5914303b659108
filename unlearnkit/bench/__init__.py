"""Benchmarks: scenarios (data + model + forget rule), a resumable runner, and reports."""
