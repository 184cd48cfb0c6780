"""Installed, not only checked out: a plain (non-editable) ``pip install .`` runs the shipped models."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_pip_install_runs_the_shipped_models(tmp_path):
    # Install the package alone (its dependencies are this environment's) into a folder that
    # shadows the editable checkout, and run the command line from elsewhere: nothing may be
    # read from the checkout.
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), ROOT],
                   check=True, capture_output=True, text=True)
    assert (site / "ppl_bmc" / "models" / "paper_toy.py").is_file()
    assert (site / "ppl_bmc" / "data" / "materials.npz").is_file()
    env = {k: v for k, v in os.environ.items() if k != "PPL_BMC_MODELS"}
    env["PYTHONPATH"] = str(site)
    work = tmp_path / "elsewhere"
    work.mkdir()

    def cli(*args):
        out = subprocess.run([sys.executable, "-m", "ppl_bmc.cli", *args], cwd=work, env=env, capture_output=True,
                             text=True, timeout=600)
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout + out.stderr

    where = subprocess.run([sys.executable, "-c", "import ppl_bmc; print(ppl_bmc.__file__)"], cwd=work, env=env,
                           capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(site)), where  # the installed copy, not the checkout
    listing = cli("models")
    assert "paper_toy" in listing and "hidden_void" in listing and str(site) in listing
    cli("simulate", "paper_toy", "--out", "data")
    cli("fit", "paper_toy", "--data", "data", "--method", "map", "--out", "fit")
    for name in ("posterior.nc", "summary.csv", "report.txt", "diagnostics.json"):
        assert (work / "fit" / name).is_file(), name
