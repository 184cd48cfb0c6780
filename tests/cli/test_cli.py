"""The ``ppl-bmc`` command end to end: simulate → fit → summarize, outputs, interruption and
resume, bad input, and the Monte-Carlo-noise diagnostic.

Sizes are tiny (a few hundred particles, 50 warmup + 50 draws, 2 chains) so that the file
runs in about a minute; the fits are therefore not converged and their sampler warnings are
expected.  Most commands run in-process through ``cli.main`` (JAX starts once); the
interruption test runs ``python -m ppl_bmc.cli`` in a subprocess.
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest

from ppl_bmc import cli, infer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOY = os.path.join(ROOT, "models", "paper_toy.py")
FIVE_GROUPS = ("posterior", "sample_stats", "observed_data", "posterior_predictive", "log_likelihood")
TINY = ["--chains", "2", "--warmup", "50", "--samples", "50"]

# A tiny field model with Poisson counts and a 2-D latent site (2 rows z × 3 columns x), for
# the count checks and the posterior maps (MAPS).  Its likelihood is exact: no MC noise.
GRID_MODEL = textwrap.dedent('''
    """A tiny Poisson field (test model): counts on 2 x 3 cells."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import numpyro
    import numpyro.distributions as dist

    DEFAULTS = {"rate": 20.0, "shape": [2, 3], "n_particles": 1}
    OBSERVED = ("counts",)
    VAR_NAMES = ["log_rate"]
    MAPS = {"log_rate": {"extent": [0.0, 3.0, 0.0, 2.0], "xlabel": "x (m)", "ylabel": "z (m)"}}


    def simulate(config, *, key):
        shape = tuple(config["shape"])
        counts = np.asarray(jax.random.poisson(key, config["rate"], shape), dtype=np.int64)
        return {"counts": counts}, {"log_rate": np.full(shape, np.log(config["rate"]))}


    def build(config, data, *, key):
        shape = tuple(config["shape"])

        def model(counts=None):
            log_rate = numpyro.sample("log_rate", dist.Normal(jnp.log(config["rate"]), 1.0).expand(shape).to_event(2))
            numpyro.sample("counts", dist.Poisson(jnp.exp(log_rate)).to_event(2), obs=counts)

        return model, {"counts": jnp.asarray(data["counts"])}
''')


def run(capsys, *argv):
    """``ppl-bmc argv`` in-process: (exit status, stdout, stderr)."""
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_error(rc, err):
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, err
    assert len(lines) == 1 and lines[0].startswith("ppl-bmc: error: "), err
    assert "Traceback" not in err
    return lines[0]


def digest(folder):
    """sha256 of every file under ``folder`` (relative path → hex digest)."""
    out = {}
    for base, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(base, name)
            out[os.path.relpath(path, folder)] = hashlib.sha256(open(path, "rb").read()).hexdigest()
    return out


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """The toy's synthetic data (10⁵ particles per reading instead of the default 4·10⁵)."""
    folder = tmp_path_factory.mktemp("cli") / "d"
    rc = cli.main(["simulate", TOY, "--out", str(folder), "--set", "sim_particles=100000"])
    assert rc == 0
    return folder


@pytest.fixture(scope="module")
def nuts_dir(data_dir):
    """simulate → fit nuts (2 chains, 2000 particles: a well-sampled likelihood) → summarize."""
    out = data_dir.parent / "r_nuts"
    assert cli.main(["fit", TOY, "--data", str(data_dir), "--method", "nuts", *TINY, "--n-particles", "2000",
                     "--out", str(out)]) == 0
    assert cli.main(["summarize", str(out)]) == 0
    return out


@pytest.fixture
def grid_model(tmp_path):
    path = tmp_path / "grid_counts.py"
    path.write_text(GRID_MODEL)
    return path


def test_simulate_writes_a_data_folder(data_dir):
    with np.load(data_dir / "data.npz") as npz:
        assert sorted(npz.files) == ["obs", "thetas"]
        assert npz["obs"].shape == (3,)
        # the paper's observations are a rounded simulation at the same truth (3 decimals)
        np.testing.assert_allclose(npz["obs"], (0.04, 0.042, 0.032), atol=3e-3)
    with np.load(data_dir / "truth.npz") as npz:
        np.testing.assert_array_equal(npz["node"], (-1.0, 5.0, 10.0))
    config = cli.read_toml(data_dir / "config.toml")
    assert config["simulate"]["model"] == "paper_toy" and config["simulate"]["seed"] == 0
    assert config["model"]["sim_particles"] == 100000 and config["model"]["n_particles"] == 2000


def test_fit_nuts_then_summarize_writes_the_results(nuts_dir):
    for name in ("posterior.nc", "summary.csv", "trace.png", "rank.png", "diagnostics.json", "fit.toml"):
        assert (nuts_dir / name).stat().st_size > 0, name
    assert not (nuts_dir / ".resume").exists()  # the checkpoint goes once the fit is complete
    assert not [p for p in os.listdir(nuts_dir) if p.startswith(".tmp")]
    header = (nuts_dir / "summary.csv").read_text().splitlines()[0].split(",")
    assert header[1:] == list(infer.SUMMARY_COLUMNS)
    report = json.loads((nuts_dir / "diagnostics.json").read_text())
    assert report["method"] == "nuts"
    diag = report["diagnostics"]
    assert diag["num_chains"] == 2 and diag["num_draws"] == 50 and len(diag["bfmi"]) == 2
    assert diag["tree_depth_max"] >= 1 and diag["max_tree_depth"] == 10
    fit = cli.read_toml(nuts_dir / "fit.toml")
    assert fit["fit"]["method"] == "nuts" and fit["model"]["n_particles"] == 2000
    assert fit["paths"]["model"] == TOY


def test_netcdf_has_five_groups_and_pointwise_log_likelihood(nuts_dir, data_dir):
    data = infer.from_netcdf(nuts_dir / "posterior.nc")
    assert set(FIVE_GROUPS) <= set(infer.groups(data))
    assert infer.group(data, "posterior")["node"].shape == (2, 50, 3)
    # one log-likelihood value per observation (3 readings) per draw (2 chains × 50)
    ll = infer.group(data, "log_likelihood")["obs"]
    assert ll.shape == (2, 50, 3) and np.all(np.isfinite(ll.values))
    observed = np.load(data_dir / "data.npz")["obs"]
    np.testing.assert_array_equal(infer.group(data, "observed_data")["obs"].values, observed)
    pp = infer.group(data, "posterior_predictive")["obs"].values
    assert pp.shape == (2, 50, 3)
    # replicas are the flux plus N(0, 1/1000) noise, so they scatter around the data by ~0.03
    # (a generous 10 sd bound) and are not copies of it
    assert np.all(np.abs(pp - observed) < 0.32) and not np.allclose(pp, observed)
    stats = infer.group(data, "sample_stats")
    for name in ("diverging", "energy", "tree_depth", "n_steps", "acceptance_rate", "lp", "step_size"):
        assert stats[name].shape == (2, 50), name


def test_a_well_sampled_fit_is_not_flagged(nuts_dir):
    # 2000 particles: ratios 0.07-0.14 measured for seeds 0-3, far below the threshold 0.5
    noise = json.loads((nuts_dir / "diagnostics.json").read_text())["mc_noise"]
    assert noise["flagged"] is False and noise["ratio"] < 0.3, noise
    assert len(noise["ratios"]) == 4
    # the posterior-mean shift between keys (posterior sd) is reported; the toy observes no counts
    assert 0 <= noise["shift"] <= noise["shift_threshold"] == 0.1 and noise["bin_error"] is None, noise


def test_mc_noise_flags_an_under_sampled_fit(data_dir, capsys):
    # 5 particles per reading: the likelihood surface changes visibly with the key.  Measured
    # ratios (4 other keys, 100 draws) for seeds 0-3: 0.76, 0.88, 0.91, 1.15 (2000 particles:
    # 0.07-0.14); the flag threshold is 0.5.  The run is deterministic (fixed seed).
    out = data_dir.parent / "r_noisy"
    rc, stdout, err = run(capsys, "fit", "paper_toy", "--data", data_dir, *TINY, "--n-particles", "5", "--out", out)
    assert rc == 0, err
    noise = json.loads((out / "diagnostics.json").read_text())["mc_noise"]
    assert noise["flagged"] is True and noise["ratio"] > noise["threshold"] == 0.5, noise
    assert "ppl-bmc: warning: Monte-Carlo noise of the likelihood is large" in err
    assert "FLAGGED" in stdout and "posterior-mean shift between keys" in stdout


def test_fit_laplace_then_summarize(data_dir, tmp_path, capsys):
    out = tmp_path / "r_laplace"
    rc, _, err = run(capsys, "fit", TOY, "--data", data_dir, "--method", "laplace", "--samples", "60",
                     "--n-particles", "500", "--map-steps", "300", "--learning-rate", "0.05", "--out", out)
    assert rc == 0, err
    rc, stdout, err = run(capsys, "summarize", out)
    assert rc == 0, err
    assert "laplace: Hessian positive definite" in stdout
    for name in ("posterior.nc", "summary.csv", "trace.png", "diagnostics.json"):
        assert (out / name).stat().st_size > 0, name
    data = infer.from_netcdf(out / "posterior.nc")
    assert set(FIVE_GROUPS) <= set(infer.groups(data))
    # 60 independent draws of the Gaussian at the mode, as one chain
    node = infer.group(data, "posterior")["node"].values
    assert node.shape == (1, 60, 3) and infer.group(data, "log_likelihood")["obs"].shape == (1, 60, 3)
    assert json.loads((out / "diagnostics.json").read_text())["laplace"]["positive_definite"]
    # the posterior is close to the N((0, 5, 10), I) prior: sd of node ≈ (1, 0.4, 1) (±60 %: 60 draws)
    assert np.all(node.std(axis=(0, 1)) > 0.2) and np.all(node.std(axis=(0, 1)) < 2.0)


def test_fit_map_from_a_config_file_then_summarize(data_dir, tmp_path, capsys):
    cfg = tmp_path / "fit.toml"
    cfg.write_text('[fit]\nmethod = "map"\nmap_steps = 100\nlearning_rate = 0.05\n'
                   '[model]\nn_particles = 300\nprior = "weak"\n')
    out = tmp_path / "r_map"
    rc, _, err = run(capsys, "fit", "paper_toy", "--config", cfg, "--data", data_dir, "--map-steps", "300", "--out", out)
    assert rc == 0, err
    rc, stdout, err = run(capsys, "summarize", out)
    assert rc == 0, err
    for name in ("posterior.nc", "summary.csv", "trace.png", "diagnostics.json"):
        assert (out / name).stat().st_size > 0, name
    fit = cli.read_toml(out / "fit.toml")
    assert fit["fit"]["method"] == "map" and fit["fit"]["map_steps"] == 300  # the flag wins over the file
    assert fit["fit"]["learning_rate"] == 0.05  # from the file
    assert fit["model"]["n_particles"] == 300 and fit["model"]["prior"] == "weak"
    assert fit["model"]["sim_particles"] == 100000  # inherited from the data folder's config
    data = infer.from_netcdf(out / "posterior.nc")
    assert set(FIVE_GROUPS) <= set(infer.groups(data))
    post = infer.group(data, "posterior")
    assert {"mu", "sigma2", "node"} <= set(post.data_vars)
    # the MAP point as one chain with one draw (and its replicas / log-likelihood)
    assert post["node"].shape == (1, 1, 3) and infer.group(data, "log_likelihood")["obs"].shape == (1, 1, 3)
    report = json.loads((out / "diagnostics.json").read_text())
    assert report["mc_noise"] is None and report["map"]["converged"]
    np.testing.assert_allclose(post["mu"].values[0, 0], report["map"]["params"]["mu"], rtol=1e-5)
    assert "map: converged: True" in stdout


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130),  # ~18 s each: SIGTERM in the slow suite
                                            pytest.param(signal.SIGTERM, 143, marks=pytest.mark.slow)],
                         ids=["SIGINT", "SIGTERM"])
def test_interrupted_fit_keeps_the_folder_and_resume_completes(signum, status, data_dir, nuts_dir, tmp_path, capsys):
    """Ctrl-C and a batch scheduler's SIGTERM: earlier files kept, checkpoint saved, resume hint."""
    out = tmp_path / "r"
    out.mkdir()
    for name in ("posterior.nc", "summary.csv", "trace.png", "diagnostics.json", "fit.toml"):
        (out / name).write_bytes((nuts_dir / name).read_bytes())
    before = digest(out)
    # 500 particles, 20 warmup + 200 draws in blocks of 10: ~0.1 s per block here, so the
    # signal (sent once the first block is saved) lands during sampling with seconds to spare.
    args = ["fit", TOY, "--data", str(data_dir), "--out", str(out), "--force", "--chains", "2", "--warmup", "20",
            "--samples", "200", "--block", "10", "--n-particles", "500"]
    # A parent started in the background by a shell may ignore SIGINT, and the child would
    # inherit that: give the child the default disposition.
    ignored = signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    if ignored:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen([sys.executable, "-m", "ppl_bmc.cli", *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                                env={**os.environ, "CI": "1", "JAX_PLATFORMS": "cpu"})
    finally:
        if ignored:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
    checkpoint = out / ".resume" / "checkpoint.pkl"
    deadline = time.time() + 120
    while not checkpoint.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert checkpoint.exists(), proc.communicate()
    proc.send_signal(signum)
    stdout, err = proc.communicate(timeout=120)
    assert proc.returncode == status, err
    assert "--resume" in err and "untouched" in err and "Traceback" not in err
    after = digest(out)
    new = set(after) - set(before)
    assert {k: after[k] for k in before} == before  # earlier files byte-identical
    assert new == {os.path.join(".resume", "checkpoint.pkl")}, new
    saved = infer.Checkpoint.load(checkpoint)
    assert 0 < saved.iteration < 220 and not saved.done
    # the command set the host device count before JAX started: one CPU device per chain
    assert saved.settings["chain_method"] == "parallel"
    if signum == signal.SIGTERM:
        return  # resuming is the same after either signal: checked once, after SIGINT

    rc, _, err = run(capsys, *args, "--resume")  # the same command with --resume
    assert rc == 0, err
    data = infer.from_netcdf(out / "posterior.nc")
    assert infer.group(data, "posterior")["node"].shape == (2, 200, 3)  # the requested draws per chain
    assert infer.group(data, "log_likelihood")["obs"].shape == (2, 200, 3)
    assert not checkpoint.exists()
    assert digest(out)["posterior.nc"] != before["posterior.nc"]


def test_resume_without_a_checkpoint_and_non_empty_folders(data_dir, nuts_dir, capsys):
    line = one_line_error(*run(capsys, "fit", TOY, "--data", data_dir, "--out", nuts_dir, "--resume")[::2])
    assert "nothing to resume" in line
    line = one_line_error(*run(capsys, "fit", TOY, "--data", data_dir, "--out", nuts_dir)[::2])
    assert "not empty" in line and "--force" in line
    line = one_line_error(*run(capsys, "simulate", TOY, "--out", nuts_dir)[::2])
    assert "not empty" in line


def _negative(folder):
    with np.load(folder / "data.npz") as npz:
        data = dict(npz)
    data["obs"] = data["obs"] * np.array([1, -1, 1])
    np.savez(folder / "data.npz", **data)


def _nan(folder):
    with np.load(folder / "data.npz") as npz:
        data = dict(npz)
    data["obs"][1] = np.nan
    np.savez(folder / "data.npz", **data)


@pytest.mark.parametrize(
    "case, expected",
    [
        ("unknown model", "unknown model 'no_such_model'"),
        ("missing data", "does not exist"),
        ("data without data.npz", "has no data.npz"),
        ("unknown option", "unrecognized arguments: --frobnicate"),
        ("unknown config key", "unknown [fit] key 'chainz'"),
        ("unknown config table", "unknown table or key 'sampler'"),
        ("invalid toml", "is not valid TOML"),
        ("unknown model key", "unknown model option key 'nparticles'; valid keys:"),
        ("wrong type", "n_particles must be an integer"),
        ("bad range", "chains must be an integer >= 1"),
        ("negative flux", "obs must be finite fluxes >= 0"),
        ("nan in data", "observed obs has non-finite values"),
        ("unwritable output", "cannot write to output folder"),
    ],
)
def test_bad_input_gives_one_line_and_status_2(case, expected, data_dir, tmp_path, capsys):
    d = tmp_path / "d"
    d.mkdir()
    (d / "data.npz").write_bytes((data_dir / "data.npz").read_bytes())
    out = tmp_path / "r"
    cfg = tmp_path / "cfg.toml"
    base = ["fit", "paper_toy", "--data", d, "--out", out]
    argv = {
        "unknown model": ["fit", "no_such_model", "--data", d, "--out", out],
        "missing data": ["fit", "paper_toy", "--data", tmp_path / "nowhere", "--out", out],
        "data without data.npz": ["fit", "paper_toy", "--data", tmp_path, "--out", out],
        "unknown option": base + ["--frobnicate"],
        "unknown config key": base + ["--config", cfg],
        "unknown config table": base + ["--config", cfg],
        "invalid toml": base + ["--config", cfg],
        "unknown model key": base + ["--set", "nparticles=5"],
        "wrong type": base + ["--set", "n_particles=2.5"],
        "bad range": base + ["--chains", "0"],
        "negative flux": base,
        "nan in data": base,
        "unwritable output": ["fit", "paper_toy", "--data", d, "--out", d / "data.npz" / "r"],
    }[case]
    cfg.write_text({"unknown config key": "[fit]\nchainz = 2\n", "unknown config table": "[sampler]\nx = 1\n",
                    "invalid toml": "[fit\n"}.get(case, ""))
    if case == "negative flux":
        _negative(d)
    if case == "nan in data":
        _nan(d)
    line = one_line_error(*run(capsys, *argv)[::2])
    assert expected in line, line
    assert not out.exists() or not os.listdir(out)  # nothing written


def test_negative_counts_and_maps_of_a_field_model(grid_model, tmp_path, capsys):
    d, out = tmp_path / "d", tmp_path / "r"
    rc, _, err = run(capsys, "simulate", grid_model, "--out", d, "--seed", "3")
    assert rc == 0, err
    rc, _, err = run(capsys, "fit", grid_model, "--data", d, "--method", "map", "--map-steps", "300",
                     "--learning-rate", "0.05", "--out", out)
    assert rc == 0, err
    rc, stdout, err = run(capsys, "summarize", out)
    assert rc == 0, err
    for name in ("mean_log_rate.png", "sd_log_rate.png", "summary.csv", "trace.png"):
        assert (out / name).stat().st_size > 0, name
    assert "mean_log_rate.png" in stdout

    counts = np.load(d / "data.npz")["counts"]
    counts[1, 2] = -4
    np.savez(d / "data.npz", counts=counts)
    line = one_line_error(*run(capsys, "fit", grid_model, "--data", d, "--out", tmp_path / "r2")[::2])
    assert "observed counts counts must be >= 0, got -4 at index (1, 2)" in line
    np.savez(d / "data.npz", counts=counts.astype(float))  # float counts: the Poisson support check
    line = one_line_error(*run(capsys, "fit", grid_model, "--data", d, "--out", tmp_path / "r2")[::2])
    assert "outside the support of its" in line


def test_models_bench_list_and_help(capsys):
    rc, out, _ = run(capsys, "models")
    assert rc == 0 and "paper_toy" in out and "The paper's toy" in out
    rc, out, _ = run(capsys, "bench", "--list")
    assert rc == 0 and "toy_adjoints" in out.split() and "csda" in out.split()
    line = one_line_error(*run(capsys, "bench", "nope")[::2])
    assert "unknown benchmark 'nope'" in line
    with pytest.raises(SystemExit) as stop:
        cli.main(["fit", "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--method", "--chains", "--warmup", "--samples", "--n-particles", "--seed", "--config", "--resume",
                 "--force", "--out", "--data"):
        assert flag in out


def test_console_script_reports_bad_input_without_traceback(tmp_path):
    # the real process: one line on stderr, status 2 (no ArviZ notice, no traceback)
    proc = subprocess.run([sys.executable, "-m", "ppl_bmc.cli", "fit", "no_such_model", "--data", str(tmp_path),
                           "--out", str(tmp_path / "r")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and proc.stderr.startswith("ppl-bmc: error: ")


@pytest.mark.slow
def test_bench_quick_runs_the_scripts(capsys):
    assert cli.main(["bench", "--quick"]) == 0


def test_summarize_prints_the_rows_with_the_largest_r_hat(nuts_dir, capsys):
    table = pd.read_csv(nuts_dir / "summary.csv", index_col=0)
    assert len(table) >= 3
    rc, stdout, _ = run(capsys, "summarize", nuts_dir, "--rows", 2)
    assert rc == 0
    assert f"{len(table)} rows; the 2 with the largest r_hat" in stdout
    table_text = stdout.split("\nReport:")[0]  # the plain-language report below names rows too
    printed = [line.split()[0] for line in table_text.splitlines() if line.split() and line.split()[0] in table.index]
    assert len(printed) == 2
    hidden = table.index.difference(printed)
    assert table.loc[printed, "r_hat"].min() >= table.loc[hidden, "r_hat"].max()
    rc, _, err = run(capsys, "summarize", nuts_dir, "--rows", -1)
    assert rc == 2 and "--rows must be >= 0" in one_line_error(rc, err)
