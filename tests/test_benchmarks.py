"""The benchmark scripts run (smoke test; the figures themselves go into issue notes)."""

import os
import runpy
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_toy_adjoint_benchmark_quick(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["bench_toy_adjoints.py", "--quick"])
    try:
        runpy.run_path(os.path.join(ROOT, "benchmarks", "bench_toy_adjoints.py"), run_name="__main__")
    except SystemExit as stop:
        assert stop.code == 0
    out = capsys.readouterr().out
    for name in ("AutodiffAdjoint", "ForwardSensitivity", "ReplayAdjoint", "particle-steps/s"):
        assert name in out
