"""A newcomer's first hour with ``ppl-bmc``: every shipped model through simulate → fit (map and
nuts) → summarize, the files the docs advertise, figures that cannot break a fit, damaged data
files, and a command line that answers before JAX starts.
"""

import os
import subprocess
import sys
import time
import tomllib
import zipfile

import numpy as np
import pytest

from ppl_bmc import cli, infer
from ppl_bmc.cli import protocol

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODELS = os.path.join(ROOT, "models")
SHIPPED = sorted(f[:-3] for f in os.listdir(MODELS) if f.endswith(".py") and not f.startswith("_"))
COMMON = {"posterior.nc", "summary.csv", "trace.png", "diagnostics.json", "fit.toml", "report.txt"}
# Small sizes per model: (simulate options, fit options); the fits are short, not converged.
SMALL = {
    "paper_toy": (["--set", "sim_particles=20000"], ["--n-particles", "300"]),
    "hidden_void": (["--set", "grid=6", "--set", "exposure_days=10.0"], []),
    "volcano_3d": (["--set", "grid=4", "--set", "truth_grid=8", "--set", "n_pixels=3", "--set", "n_stations=8",
                    "--set", "dem_cells=17", "--set", "n_directions=2"], []),
}


def run(capsys, *argv):
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_every_shipped_model_is_covered():
    assert set(SHIPPED) == set(SMALL), "add the new model's small sizes to SMALL"


@pytest.fixture(scope="module")
def data_dirs(tmp_path_factory):
    base = tmp_path_factory.mktemp("first_hour")
    out = {}
    for name in SHIPPED:
        folder = base / f"data_{name}"
        assert cli.main(["simulate", name, "--out", str(folder), *SMALL[name][0]]) == 0
        out[name] = folder
    return out


def _expected_files(module, method):
    files = set(COMMON)
    if method == "nuts":
        files.add("rank.png")
    for site in getattr(module, "MAPS", {}):
        files |= {f"mean_{site}.png", f"sd_{site}.png"}
        if method == "nuts":
            files |= {f"rhat_{site}.png", f"ess_{site}.png"}
    return files


def _fit_options(method):
    if method == "nuts":
        return ["--chains", "2", "--warmup", "30", "--samples", "30", "--mc-noise-draws", "0"]
    return ["--map-steps", "300"]


@pytest.fixture(scope="module")
def fitted(data_dirs, tmp_path_factory):
    """``fitted(name, method) -> (folder, rc, stdout, stderr)``: each fit runs once per module."""
    cache = {}
    base = tmp_path_factory.mktemp("fits")

    def get(name, method):
        if (name, method) not in cache:
            out = base / f"{name}_{method}"
            import io
            from contextlib import redirect_stderr, redirect_stdout

            so, se = io.StringIO(), io.StringIO()
            with redirect_stdout(so), redirect_stderr(se):
                rc = cli.main(["fit", name, "--data", str(data_dirs[name]), "--method", method, "--out", str(out),
                               *_fit_options(method), *SMALL[name][1]])
            cache[name, method] = (out, rc, so.getvalue(), se.getvalue())
        return cache[name, method]

    return get


def _cases():
    # the volcano's NUTS fit (~24 s, compile-bound) runs in the slow suite; NUTS through the CLI
    # stays in the fast suite with the other models, the volcano with MAP
    for name in SHIPPED:
        for method in ("map", "nuts"):
            slow = (name, method) == ("volcano_3d", "nuts")
            yield pytest.param(name, method, marks=pytest.mark.slow) if slow else (name, method)


@pytest.mark.parametrize("name, method", list(_cases()))
def test_simulate_fit_summarize_every_shipped_model(name, method, fitted, capsys):
    out, rc, stdout, err = fitted(name, method)
    assert rc == 0, err
    assert "Report:" in stdout and "verdict:" in stdout
    module = cli.load_model(name)
    expected = _expected_files(module, method)
    assert expected <= set(os.listdir(out)), expected - set(os.listdir(out))
    for png in (f for f in expected if f.endswith(".png")):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rc, stdout2, err = run(capsys, "summarize", out)
    assert rc == 0, err
    assert "verdict:" in stdout2 and "warning: figure" not in err
    table = (out / "summary.csv").read_text().splitlines()[0].split(",")[1:]
    if method == "map":  # the point and its curvature sd, no r̂/ESS columns of NaN
        assert table == ["map", "sd", "ci_lower", "ci_upper"]
        import pandas as pd

        sd = pd.read_csv(out / "summary.csv", index_col=0)["sd"]
        assert np.all(np.isfinite(sd)) and np.all(sd > 0)
    else:
        assert table == list(infer.SUMMARY_COLUMNS)


def test_many_site_traces_show_the_worst_r_hat_sites_named(fitted):
    """A 6 × 6 field has 36 sites: the trace figure draws 6 panels, the worst r̂ first."""
    from ppl_bmc.cli import summarize
    from ppl_bmc.infer import figures

    out, rc, _, err = fitted("hidden_void", "nuts")
    assert rc == 0, err
    data = infer.from_netcdf(out / "posterior.nc")
    post = infer.group(data, "posterior")
    assert post["log_density"].dims == ("chain", "draw", "z", "x")  # named axes
    assert infer.group(data, "log_likelihood")["counts"].dims == ("chain", "draw", "detector", "bin")
    items = figures.elements(post, ["log_density"])
    table = infer.summary(data, var_names=["log_density"])
    # only cells inside the pyramid are candidates: outside it the posterior is the prior
    module = protocol.load_model("hidden_void")
    config = tomllib.loads((out / "fit.toml").read_text())["model"]
    inside = summarize._inside_masks(module, config, post, items)
    assert 0 < inside.sum() < len(items)
    scores = np.where(inside, summarize._column(table, items, "r_hat"), np.nan)
    chosen = figures.pick_elements(items, scores)
    assert len(chosen) == figures.MAX_PANELS < len(items)
    worst = table["r_hat"][[label for (label, _, _), ok in zip(items, inside) if ok]]
    worst = worst.sort_values(ascending=False, kind="stable").index[: len(chosen)]
    assert set(c[0] for c in chosen) == set(worst)
    assert all(inside[items.index(c)] for c in chosen)


@pytest.fixture(scope="module")
def broken_figure_fit(data_dirs, tmp_path_factory):
    """A toy NUTS fit (another seed) whose trace figure raises."""
    from ppl_bmc.infer import figures

    def broken(*args, **kwargs):
        raise RuntimeError("Requested 64 subplots")

    mp = pytest.MonkeyPatch()
    mp.setattr(figures, "trace_figure", broken)
    out = tmp_path_factory.mktemp("broken") / "r"
    import io
    from contextlib import redirect_stderr, redirect_stdout

    so, se = io.StringIO(), io.StringIO()
    try:
        with redirect_stdout(so), redirect_stderr(se):
            rc = cli.main(["fit", "paper_toy", "--data", str(data_dirs["paper_toy"]), "--method", "nuts", "--out",
                           str(out), "--seed", "1", *_fit_options("nuts"), *SMALL["paper_toy"][1]])
    finally:
        mp.undo()
    return out, rc, se.getvalue()


def test_a_failing_figure_is_a_warning_and_the_fit_succeeds(broken_figure_fit):
    out, rc, err = broken_figure_fit
    assert rc == 0, err
    assert "ppl-bmc: warning: figure trace.png was not drawn: RuntimeError: Requested 64 subplots" in err
    assert "Traceback" not in err
    files = set(os.listdir(out))
    assert "trace.png" not in files and {"posterior.nc", "summary.csv", "rank.png", "report.txt"} <= files


def test_loo_and_compare_work_on_posterior_nc(fitted, broken_figure_fit):
    """ArviZ's LOO needs the log_likelihood group: present in posterior.nc on both stacks."""
    import arviz as az

    fits = {"seed0": infer.from_netcdf(fitted("paper_toy", "nuts")[0] / "posterior.nc"),
            "seed1": infer.from_netcdf(broken_figure_fit[0] / "posterior.nc")}
    loo = az.loo(fits["seed0"])
    elpd = float(loo.elpd if hasattr(loo, "elpd") else loo["elpd_loo"])  # ArviZ 1.x / 0.23
    # 3 readings with σ_obs = 1/√1000: each pointwise log-density is at most log(1/(σ√2π)) ≈ 2.54,
    # and about 2 for a fit within 1 σ_obs of the data; a fit far from the data would be < 0
    assert 0.0 < elpd < 3 * 2.54, elpd
    table = az.compare(fits)
    assert len(table) == 2


# --------------------------------------------------------------------------- bad data files


def _write_good(folder):
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "data.npz", obs=np.array([0.05, 0.04, 0.045]), thetas=np.array([0.0, 0.3, -0.25]))


def _truncated(folder):
    _write_good(folder)
    raw = (folder / "data.npz").read_bytes()
    (folder / "data.npz").write_bytes(raw[: len(raw) // 2])


def _empty(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data.npz").write_bytes(b"")


def _npy(folder):
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "data.npz", "wb") as fh:
        np.save(fh, np.arange(3.0))


def _text(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data.npz").write_text("obs,0.05,0.04\n")


def _pickled(folder):
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "data.npz", obs=np.array([{"a": 1}], dtype=object))


def _corrupted_member(folder):
    """A valid zip directory whose member's bytes are damaged (CRC mismatch)."""
    _write_good(folder)
    path = folder / "data.npz"
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("obs.npy")
    raw = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    raw[start + 20 : start + 40] = b"\xff" * 20
    path.write_bytes(bytes(raw))


def _empty_archive(folder):
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "data.npz")


@pytest.mark.parametrize("damage, words", [
    (_truncated, "not an .npz archive"),
    (_empty, "empty"),
    (_npy, "not an .npz archive"),
    (_text, "not an .npz archive"),
    (_pickled, "cannot read"),
    (_corrupted_member, "cannot read"),
    (_empty_archive, "holds no arrays"),
])
def test_a_damaged_data_file_is_one_line_and_status_2(damage, words, tmp_path):
    """Run in a fresh process: the error must come before JAX is imported."""
    data = tmp_path / "d"
    damage(data)
    code = ("import sys; from ppl_bmc import cli; "
            f"rc = cli.main(['fit', 'paper_toy', '--data', {str(data)!r}, '--out', {str(tmp_path / 'r')!r}]); "
            "assert 'jax' not in sys.modules, 'jax was imported'; sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("ppl-bmc: error: "), proc.stderr
    assert "data.npz" in lines[0] and words in lines[0], lines[0]


# --------------------------------------------------------------------------- start-up latency

FAST = [
    ["--help"],
    ["fit", "--help"],
    ["fit", "paper_toy", "--method", "mcmc"],
    ["fit", "no_such_model", "--data", "d"],
    ["fit", "paper_toy", "--set", "no_such_key=1", "--data", "{data}", "--out", "{out}"],
    ["fit", "hidden_void", "--set", "grid=2.5", "--data", "{data}", "--out", "{out}"],
    ["fit", "paper_toy", "--config", "{bad_toml}", "--data", "{data}"],
    ["fit", "paper_toy", "--chains", "0", "--data", "{data}", "--out", "{out}"],
    ["simulate", "paper_toy", "--set", "no_such_key=1", "--out", "{out}"],
    ["fit", "hidden_void", "--coordinator", "nohost", "--num-processes", "2", "--process-id", "0", "--data", "{data}",
     "--out", "{out}"],
    ["fit", "hidden_void", "--coordinator", "127.0.0.1:1234", "--num-processes", "2", "--process-id", "2",
     "--data", "{data}", "--out", "{out}"],
    ["fit", "paper_toy", "--coordinator", "127.0.0.1:1234", "--num-processes", "2", "--process-id", "0",
     "--data", "{data}", "--out", "{out}"],
]


@pytest.mark.parametrize("argv", FAST, ids=lambda a: " ".join(a)[:40])
def test_help_and_bad_arguments_answer_before_jax_starts(argv, tmp_path):
    """Each answer comes without importing JAX, NumPyro or ArviZ (checked in the process), and
    in under a second of wall time (the best of five runs, to ride out a busy machine; typically
    0.2–0.4 s on 2 cores, against 3–7 s when the package imported JAX first)."""
    data = tmp_path / "data"
    _write_good(data)
    bad = tmp_path / "bad.toml"
    bad.write_text("[fit\nchains = 2\n")
    args = [a.format(data=data, out=tmp_path / "out", bad_toml=bad) for a in argv]
    code = ("import sys; from ppl_bmc import cli\n"
            "try:\n    rc = cli.main(sys.argv[1:])\nexcept SystemExit as e:\n    rc = e.code\n"
            "heavy = [m for m in ('jax', 'numpyro', 'arviz', 'matplotlib') if m in sys.modules]\n"
            "assert not heavy, heavy\nsys.exit(rc)")
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60)
        best = min(best, time.perf_counter() - t0)
        assert "AssertionError" not in proc.stderr, proc.stderr
        if best < 1.0:
            break
    if "--help" in argv:
        assert proc.returncode == 0 and "usage:" in proc.stdout
    else:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("ppl-bmc: error: "), proc.stderr
    assert best < 1.0, f"{best:.2f} s"


def test_literal_defaults_are_read_without_running_the_model(tmp_path):
    """The CLI's static reading of DEFAULTS equals the imported one for every shipped model; a
    DEFAULTS changed after its literal is not read statically (the model is imported instead)."""
    for name in SHIPPED:
        path = protocol.resolve_model(name)
        static = protocol.static_defaults(path)
        assert static is not None, f"{name}: DEFAULTS must be a literal dict"
        assert static == cli.load_model(name).DEFAULTS
    toy = cli.load_model("paper_toy")  # the literal restates two constants of the package
    assert toy.DEFAULTS["sigma_obs"] == toy.SIGMA_OBS and tuple(toy.DEFAULTS["truth"]) == tuple(toy.toy.PAPER_TRUTH)
    for tail in ("DEFAULTS.update(b=2)", "DEFAULTS['b'] = 2", "DEFAULTS = {'a': 2}", "DEFAULTS |= {'b': 2}"):
        path = tmp_path / "m.py"
        path.write_text(f"DEFAULTS = {{'a': 1}}\n{tail}\n")
        assert protocol.static_defaults(str(path)) is None, tail
    path.write_text("N = 3\nDEFAULTS = {'a': N}\n")
    assert protocol.static_defaults(str(path)) is None


def test_a_signal_while_the_results_are_written_keeps_the_fit(data_dirs, tmp_path, capsys, monkeypatch):
    """SIGTERM that lands while the files are written is held until they are: the fit is kept,
    the summary is skipped, and the message says so (exit 143)."""
    from ppl_bmc.cli import common, summarize

    def terminated(*args, **kwargs):
        raise common.Terminated

    monkeypatch.setattr(summarize, "summarize_folder", terminated)
    out = tmp_path / "r"
    rc, _, err = run(capsys, "fit", "paper_toy", "--data", data_dirs["paper_toy"], "--method", "map", "--out", out,
                     "--map-steps", "50", "--no-map-sd", *SMALL["paper_toy"][1])
    assert rc == 143, err
    assert "its results are in" in err and f"ppl-bmc summarize {out}" in err
    assert {"posterior.nc", "diagnostics.json", "fit.toml"} <= set(os.listdir(out))


def test_a_failed_check_reads_as_what_is_wrong():
    """The report's verdict names what failed in words that say it failed."""
    from ppl_bmc.cli.report import verdict

    ok, reasons = verdict("map", {"map": {"converged": False, "curvature": {"positive_definite": False}}}, 1)
    assert not ok and reasons == ["the MAP optimisation did not converge", "Hessian at the point not positive definite"]
    ok, reasons = verdict("map", {"map": {"converged": True, "curvature": {"positive_definite": True}}}, 1)
    assert ok and reasons == ["the MAP optimisation converged", "Hessian at the point positive definite"]
    ok, reasons = verdict("laplace", {"laplace": {"positive_definite": False, "importance_efficiency": 0.9,
                                                  "map_converged": True}}, 1)
    assert not ok and reasons == ["Hessian not positive definite"]
