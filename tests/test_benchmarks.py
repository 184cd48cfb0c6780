"""The benchmark scripts run (smoke test; the figures themselves go into issue notes)."""

import os
import runpy
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_quick(script, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", [script, "--quick"])
    try:
        runpy.run_path(os.path.join(ROOT, "benchmarks", script), run_name="__main__")
    except SystemExit as stop:
        assert stop.code == 0
    return capsys.readouterr().out


def test_toy_adjoint_benchmark_quick(capsys, monkeypatch):
    out = run_quick("bench_toy_adjoints.py", capsys, monkeypatch)
    for name in ("AutodiffAdjoint", "ForwardSensitivity", "ReplayAdjoint", "particle-steps/s"):
        assert name in out


def test_csda_benchmark_quick(capsys, monkeypatch):
    out = run_quick("bench_csda.py", capsys, monkeypatch)
    assert "fwd steps/s" in out and "grad MiB" in out


@pytest.mark.slow  # 45–95 s on 2 cores: compiles every adjoint at two step counts
def test_muography_benchmark_quick(capsys, monkeypatch):
    out = run_quick("bench_muography.py", capsys, monkeypatch)
    assert "ReplayAdjoint memory ratio" in out and "NUTS, hidden void" in out
