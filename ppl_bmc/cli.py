"""The ``ppl-bmc`` command: scripted simulations, fits and diagnostics.

Subcommands
-----------
``ppl-bmc models``
    List the models (``models/*.py``) and their first docstring line.
``ppl-bmc simulate MODEL [--config cfg.toml] [--set KEY=VALUE ...] [--seed N] --out DIR``
    Synthetic data and the truth, written as a *data folder* (below).
``ppl-bmc fit MODEL --data DIR --method map|nuts|hmc|laplace [--chains --warmup --samples
--n-particles --seed --config --set --resume --force ...] --out DIR``
    A fit, written as a *results folder* (below).  ``ppl-bmc fit --help`` lists every option.
``ppl-bmc summarize DIR [--var-names ...] [--rows N]``
    Summary table (the N rows with the largest r̂, default 30), trace and rank plots, posterior
    mean/sd maps of field models, diagnostics.
``ppl-bmc bench [NAME ...] [--quick] [--list]``
    Run the benchmark scripts ``benchmarks/bench_*.py`` (all, or those named).
``ppl-bmc version``, ``ppl-bmc toy-flux``
    Versions of the stack; the toy's BMC flux at a node.

Exit status 0 on success, 2 with one line ``ppl-bmc: error: ...`` on bad input (unknown model,
option or config key, missing or bad data, unwritable or non-empty output folder), 130 when
interrupted (Ctrl-C).  Diagnostic warnings go to stderr as ``ppl-bmc: warning: ...`` and do
not change the exit status.  Progress bars (warmup, sampling, SVI) are drawn on stderr when it
is a terminal and the environment variable ``CI`` is unset (``--progress/--no-progress``).

Model files
-----------
A model is a Python file ``models/<name>.py``; ``MODEL`` is its path or its bare name, looked up
in the folder ``$PPL_BMC_MODELS`` if set, else in the repository's ``models/``.  It is loaded
with ``importlib`` from its path and defines:

* ``DEFAULTS: dict`` — every configuration key the model understands, with its default.  The
  ``[model]`` table of ``--config`` files, then ``--set KEY=VALUE`` and ``--n-particles`` override
  them; an unknown key is an error that lists the valid ones.  A value must have the type of
  its default (an int where the default is an int, …) unless the default is ``None``.
* ``simulate(config, *, key) -> (data, truth)`` — synthetic data (name → numpy array, holding
  the observed sites) and the true values (name → numpy array).
* ``build(config, data, *, key) -> (model, kwargs)`` — a NumPyro model and the keyword arguments
  to call it with, observed sites conditioned on ``data``.  ``key`` is the likelihood's fixed
  key (common random numbers); another key gives an independent re-evaluation of the simulated
  likelihood (the Monte-Carlo-noise diagnostic uses this).
* ``OBSERVED: tuple[str, ...]`` — the observed sites; ``VAR_NAMES: list[str]`` — the sites of
  summary tables and trace plots.
* optional ``MAPS: dict[str, dict]`` — site → ``{"extent": [x0, x1, z0, z1] (m), "xlabel",
  "ylabel"}`` (optional ``"title"``); ``summarize`` draws the posterior mean and sd of that site as
  ``mean_<site>.png`` and ``sd_<site>.png``.  The site's last two axes are ``(z, x)``: row ``i``
  is the ``i``-th row of cells from the bottom (``imshow(..., origin="lower", extent=extent)``).
* optional ``validate_data(data)`` — raises ``ValueError`` for bad data.  The command itself
  rejects missing observed sites, non-finite observed values, negative values in observed
  integer (count) arrays, and observed values outside the support of their site's distribution.

Configuration files
-------------------
TOML (read with ``tomllib``), tables ``[model]`` (the model's keys), ``[simulate]`` (``seed``,
``out``) and ``[fit]`` (every option of ``ppl-bmc fit`` with ``-`` written ``_``: ``method``,
``chains``, ``warmup``, ``samples``, ``seed``, ``block``, ``data``, ``out``, …; see
:data:`FIT_DEFAULTS`).  A flag given on the command line wins over the file; ``--force`` and
``--resume`` are flags only.  Unknown tables or keys are errors.

Data folder (``simulate --out DIR``; ``fit --data DIR``)
--------------------------------------------------------
``data.npz`` — the data arrays (required; a folder of real data needs only this file);
``truth.npz`` — the true values; ``config.toml`` — ``[simulate]`` (model name and path, seed,
versions, time) and ``[model]`` (the resolved model configuration).  ``fit`` starts from the data
folder's ``[model]`` table (so a fit uses the geometry the data were simulated with), then
applies its own ``--config``, ``--set`` and ``--n-particles``.

Results folder (``fit --out DIR``)
----------------------------------
``posterior.nc`` — ArviZ netCDF (h5netcdf) with the groups posterior, sample_stats,
observed_data, posterior_predictive and log_likelihood (one value per observation per draw);
``summary.csv`` (columns mean, sd, ci_lower, ci_upper (94 % equal-tailed), ess_bulk, ess_tail,
r_hat), ``trace.png``, ``rank.png`` (MCMC/Laplace), ``mean_<site>.png``/``sd_<site>.png`` (maps),
``diagnostics.json`` (r̂, ESS, divergences, BFMI, tree depth, the MC-noise diagnostic, the
warnings) and ``fit.toml`` (the resolved ``[fit]`` and ``[model]`` configuration, the data and
model paths, versions, wall time).  ``method = "map"`` stores the MAP point as one chain with one
draw (r̂/ESS undefined); ``"laplace"`` stores ``samples`` independent draws of the Gaussian at the
mode as one chain.  Every file is written atomically (temporary file, then rename).  An existing
non-empty folder is refused unless ``--force``.  NUTS/HMC fits save the sampler's state and
draws after each block of ``block`` iterations in ``DIR/.resume/checkpoint.pkl``; Ctrl-C leaves
the folder's earlier files untouched, and ``ppl-bmc fit ... --resume`` continues from the last
block and ends with ``samples`` draws per chain (``--samples`` may be raised on resume).  The
checkpoint is removed when the fit completes.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import datetime
import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import threading

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python >= 3.11 has tomllib
    tomllib = None

#: Options of ``ppl-bmc fit`` (TOML ``[fit]`` keys; flags ``--<key with - for _>``).
FIT_DEFAULTS = {
    "method": "nuts",  # map | nuts | hmc | laplace
    "chains": 2,  # MCMC chains
    "warmup": 500,  # warmup iterations per chain
    "samples": 1000,  # draws per chain (MCMC) or draws of the Gaussian (laplace)
    "seed": 0,  # seeds the likelihood key, the sampler and the replicated data
    "block": 0,  # MCMC iterations per checkpointed block (0: (warmup + samples) / 20)
    "chain_method": "auto",  # auto | parallel | vectorized | sequential
    "dense_mass": False,  # dense mass matrix (else diagonal)
    "target_accept": 0.8,  # step-size adaptation target in (0, 1)
    "max_tree_depth": 10,  # NUTS
    "hmc_steps": 0,  # HMC leapfrog steps per draw (0: trajectory length 2π)
    "map_steps": 2000,  # SVI steps (map, laplace)
    "learning_rate": 0.01,  # Adam step (map, laplace)
    "mc_noise_draws": 200,  # posterior draws for the MC-noise diagnostic (0: skip it)
    "mc_noise_keys": 4,  # independent likelihood keys it re-evaluates with
    "mc_noise_threshold": 0.5,  # flag when sd(l1 - l2) / sd(l1) exceeds this
    "batch_size": 0,  # draws per vectorised predictive/log-likelihood pass (0: all)
    "progress": "auto",  # auto | true | false
    "data": "",  # data folder
    "out": "",  # results folder
}
METHODS = ("map", "nuts", "hmc", "laplace")
SIMULATE_DEFAULTS = {"seed": 0, "out": ""}
SUMMARY_ROWS = 30  # rows `summarize` prints by default (worst r_hat first)
RESULT_FILES = ("posterior.nc", "summary.csv", "trace.png", "rank.png", "diagnostics.json", "fit.toml")
CHECKPOINT = os.path.join(".resume", "checkpoint.pkl")
PROTOCOL = ("DEFAULTS", "simulate", "build", "OBSERVED", "VAR_NAMES")

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class UsageError(ValueError):
    """Bad input: reported as one line ``ppl-bmc: error: ...``, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``ppl-bmc: error: ...``) instead of usage + message."""

    def error(self, message):
        raise UsageError(f"{message} (see {self.prog} --help)")


# --------------------------------------------------------------------------- small helpers


def _stderr(msg):
    print(msg, file=sys.stderr, flush=True)


def _warn(msg):
    _stderr(f"ppl-bmc: warning: {msg}")


def _note(msg):
    _stderr(f"ppl-bmc: {msg}")


def _progress_enabled(setting) -> bool:
    if isinstance(setting, bool):
        return setting
    if setting not in ("auto", "true", "false"):
        raise UsageError(f"progress must be auto, true or false, got {setting!r}")
    if setting != "auto":
        return setting == "true"
    return sys.stderr.isatty() and "CI" not in os.environ


def models_dir() -> str:
    """The folder bare model names are looked up in: ``$PPL_BMC_MODELS`` or the repository's
    ``models/``."""
    return os.environ.get("PPL_BMC_MODELS") or os.path.join(_REPO, "models")


def _model_names(folder):
    try:
        return sorted(f[:-3] for f in os.listdir(folder) if f.endswith(".py") and not f.startswith("_"))
    except OSError:
        return []


def resolve_model(spec: str) -> str:
    """Path of a model given as a path (``models/paper_toy.py``) or a bare name (``paper_toy``)."""
    if spec.endswith(".py") or os.sep in spec or (os.altsep and os.altsep in spec):
        path = os.path.abspath(spec)
        if not os.path.isfile(path):
            raise UsageError(f"model file {spec} does not exist")
        return path
    folder = models_dir()
    path = os.path.join(folder, spec + ".py")
    if not os.path.isfile(path):
        names = _model_names(folder)
        raise UsageError(f"unknown model {spec!r}; models in {folder}: {', '.join(names) or 'none'}")
    return path


def load_model(spec: str):
    """Import a model file (see the module docstring) and check it defines the protocol."""
    import importlib.util

    path = resolve_model(spec)
    name = os.path.splitext(os.path.basename(path))[0]
    modname = f"ppl_bmc_model_{name}"
    module_spec = importlib.util.spec_from_file_location(modname, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[modname] = module
    try:
        module_spec.loader.exec_module(module)
    except ImportError as err:
        raise UsageError(f"cannot import model {path}: {err}") from err
    missing = [n for n in PROTOCOL if not hasattr(module, n)]
    if missing:
        raise UsageError(f"{path} is not a ppl-bmc model: it does not define {', '.join(missing)}")
    if not isinstance(module.DEFAULTS, dict):
        raise UsageError(f"{path}: DEFAULTS must be a dict, got {type(module.DEFAULTS).__name__}")
    module.__ppl_bmc_path__ = path
    return module


def _parse_value(text: str):
    """A ``--set`` value: a TOML literal (number, bool, string in quotes, list), else a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _type_name(value):
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a table"}.get(type(value), type(value).__name__)


def _check_type(where: str, key: str, value, default):
    """``value`` must have the type of ``default`` (ints are accepted for floats)."""
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, (list, tuple)):
        ok = isinstance(value, (list, tuple))
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise UsageError(f"{where} {key} must be {_type_name(default)} (default {default!r}), got {value!r}")
    return value


def _merge(where: str, base: dict, updates: dict, defaults: dict) -> dict:
    out = dict(base)
    for key, value in updates.items():
        if key == "progress" and defaults is FIT_DEFAULTS and isinstance(value, bool):
            value = "true" if value else "false"
        if key not in defaults:
            raise UsageError(f"unknown {where} key {key!r}; valid keys: {', '.join(sorted(defaults))}")
        out[key] = _check_type(where, key, value, defaults[key])
    return out


def read_toml(path) -> dict:
    """Parse a TOML file; errors become one-line :class:`UsageError`."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise UsageError(f"config file {path} does not exist") from None
    except OSError as err:
        raise UsageError(f"cannot read config file {path}: {err.strerror}") from None
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"config file {path} is not valid TOML: {err}") from None


def _config_tables(path, allowed) -> dict:
    if not path:
        return {}
    doc = read_toml(path)
    bad = [k for k in doc if k not in allowed]
    if bad:
        raise UsageError(f"config file {path}: unknown table or key {bad[0]!r}; valid tables: "
                         f"{', '.join('[' + a + ']' for a in allowed)}")
    for name, table in doc.items():
        if not isinstance(table, dict):
            raise UsageError(f"config file {path}: {name} must be a table [{name}]")
    return doc


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v == math.inf else "-inf" if v == -math.inf else repr(v))
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_toml_value(x)}" for k, x in v.items() if x is not None) + " }"
    if hasattr(v, "tolist"):  # numpy scalars and arrays
        return _toml_value(v.tolist())
    return json.dumps(str(v))


def to_toml(doc: dict, header: str = "") -> str:
    """A TOML document from ``{table: {key: value}}`` (scalars, lists, inline tables; ``None``
    values are written as comments)."""
    lines = [f"# {line}" for line in header.splitlines()]
    for table, values in doc.items():
        lines += ["", f"[{table}]"]
        for k, v in values.items():
            lines.append(f"# {k} = None" if v is None else f"{json.dumps(k) if not k.isidentifier() else k} = {_toml_value(v)}")
    return "\n".join(lines).lstrip("\n") + "\n"


def _write_text(path, text):
    from ppl_bmc._io import atomic_write

    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)

    atomic_write(path, write)


def _check_out(out: str, *, force: bool, resume: bool = False, what="output folder") -> str:
    """Create/validate an output folder: writable, and empty unless ``force``/``resume``."""
    import tempfile

    if not out:
        raise UsageError(f"the {what} is missing: give --out DIR")
    out = os.path.abspath(out)
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"{what} {out} exists and is not a folder")
    try:
        os.makedirs(out, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out, prefix=".tmp-probe-")
        os.close(fd)
        os.remove(probe)
    except OSError as err:
        raise UsageError(f"cannot write to {what} {out}: {err.strerror or err}") from None
    entries = [e for e in os.listdir(out) if not e.startswith(".tmp-")]
    if entries and not (force or resume):
        if os.path.exists(os.path.join(out, CHECKPOINT)):
            raise UsageError(f"{what} {out} holds an interrupted fit: add --resume to continue it, or --force to start over")
        raise UsageError(f"{what} {out} is not empty: add --force to overwrite it")
    return out


@contextlib.contextmanager
def _sigint_deferred():
    """Hold Ctrl-C while a group of files is written; re-raise it afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    old = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
    if received:
        raise KeyboardInterrupt


def _sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _versions() -> dict:
    import arviz
    import jax
    import numpyro

    import ppl_bmc

    return {"ppl_bmc": ppl_bmc.__version__, "jax": jax.__version__, "numpyro": numpyro.__version__,
            "arviz": arviz.__version__, "python": sys.version.split()[0], "backend": jax.default_backend()}


# --------------------------------------------------------------------------- data


def read_data(folder: str):
    """``(data, config)`` of a data folder: the arrays of ``data.npz`` and the parsed
    ``config.toml`` (``{}`` if absent)."""
    import numpy as np

    if not folder:
        raise UsageError("the data folder is missing: give --data DIR")
    if not os.path.isdir(folder):
        raise UsageError(f"data folder {folder} does not exist")
    path = os.path.join(folder, "data.npz")
    if not os.path.isfile(path):
        raise UsageError(f"data folder {folder} has no data.npz (write one with ppl-bmc simulate)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            data = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as err:
        raise UsageError(f"cannot read {path}: {err}") from None
    cfg_path = os.path.join(folder, "config.toml")
    config = read_toml(cfg_path) if os.path.isfile(cfg_path) else {}
    return data, config


def check_data(module, data: dict) -> None:
    """Observed sites present, finite, counts ≥ 0, then the model's own ``validate_data``."""
    import numpy as np

    missing = [s for s in module.OBSERVED if s not in data]
    if missing:
        raise UsageError(f"the data lack the observed site(s) {', '.join(missing)} of the model "
                         f"(data.npz holds: {', '.join(sorted(data)) or 'nothing'})")
    for site in module.OBSERVED:
        arr = np.asarray(data[site])
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise UsageError(f"observed {site} must be numeric, got dtype {arr.dtype}")
        if np.issubdtype(arr.dtype, np.inexact) and not np.all(np.isfinite(arr)):
            bad = np.argwhere(~np.isfinite(arr))[0]
            raise UsageError(f"observed {site} has non-finite values (e.g. {arr[tuple(bad)]} at index {tuple(int(i) for i in bad)})")
        if np.issubdtype(arr.dtype, np.integer) and np.any(arr < 0):
            bad = np.argwhere(arr < 0)[0]
            raise UsageError(f"observed counts {site} must be >= 0, got {arr[tuple(bad)]} at index {tuple(int(i) for i in bad)}")
    if hasattr(module, "validate_data"):
        try:
            module.validate_data(data)
        except ValueError as err:
            raise UsageError(f"bad data: {err}") from None


def check_support(model, kwargs: dict) -> None:
    """Observed values must lie in the support of their site's distribution (e.g. counts ≥ 0
    for a Poisson site)."""
    import numpy as np
    from numpyro.distributions import constraints

    from ppl_bmc.infer.predictive import trace_model

    tr = trace_model(model, **kwargs)
    for name, site in tr.items():
        if site["type"] != "sample" or not site["is_observed"]:
            continue
        support = site["fn"].support
        while isinstance(support, constraints.independent):  # check element by element
            support = support.base_constraint
        value = np.asarray(site["value"])
        try:
            inside = np.broadcast_to(np.asarray(support(value)), value.shape)
        except (ValueError, NotImplementedError, TypeError):  # e.g. a dependent constraint: no check
            continue
        if not np.all(inside):
            idx = tuple(int(i) for i in np.argwhere(~inside)[0])
            raise UsageError(f"observed {name} is outside the support of its {type(site['fn']).__name__} distribution "
                             f"(e.g. {value[idx]} at index {idx})")


# --------------------------------------------------------------------------- commands


def _models(args) -> int:
    folder = models_dir()
    names = _model_names(folder)
    if not names:
        raise UsageError(f"no models in {folder}")
    print(f"models in {folder}:")
    for name in names:
        path = os.path.join(folder, name + ".py")
        try:
            with open(path, encoding="utf-8") as fh:
                tree = ast.parse(fh.read())
        except (OSError, SyntaxError):
            print(f"  {name:20s} (unreadable)")
            continue
        doc = (ast.get_docstring(tree) or "").strip().splitlines()
        defined = set()
        for node in tree.body:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
            defined |= {t.id for t in targets if isinstance(t, ast.Name)}
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                defined.add(node.name)
        missing = [n for n in PROTOCOL if n not in defined]
        flag = "" if not missing else f"  [not runnable by ppl-bmc: no {', '.join(missing)}]"
        print(f"  {name:20s} {doc[0] if doc else ''}{flag}")
    return 0


def _simulate(args) -> int:
    tables = _config_tables(args.config, ("model", "simulate"))
    sim = _merge("[simulate]", SIMULATE_DEFAULTS, tables.get("simulate", {}), SIMULATE_DEFAULTS)
    for key in SIMULATE_DEFAULTS:
        if getattr(args, key, None) is not None:
            sim[key] = _check_type("--" + key, key, getattr(args, key), SIMULATE_DEFAULTS[key])
    module = load_model(args.model)
    model_cfg = _merge("[model]", module.DEFAULTS, tables.get("model", {}), module.DEFAULTS)
    model_cfg = _merge("model option", model_cfg, _cli_model_options(args), module.DEFAULTS)
    out = _check_out(sim["out"], force=args.force, what="data folder")

    import jax
    import numpy as np

    try:
        data, truth = module.simulate(dict(model_cfg), key=jax.random.key(sim["seed"]))
    except ValueError as err:
        raise UsageError(f"simulate: {err}") from None
    from ppl_bmc._io import atomic_write

    def npz(path, arrays):
        def write(tmp):
            with open(tmp, "wb") as fh:
                np.savez(fh, **{k: np.asarray(v) for k, v in arrays.items()})

        atomic_write(path, write)

    meta = {"model": os.path.splitext(os.path.basename(module.__ppl_bmc_path__))[0],
            "model_path": module.__ppl_bmc_path__, "seed": sim["seed"],
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), **_versions()}
    with _sigint_deferred():
        npz(os.path.join(out, "data.npz"), data)
        npz(os.path.join(out, "truth.npz"), truth)
        _write_text(os.path.join(out, "config.toml"),
                    to_toml({"simulate": meta, "model": model_cfg}, header="written by ppl-bmc simulate"))
    shapes = ", ".join(f"{k} {tuple(np.shape(v))}" for k, v in data.items())
    print(f"wrote {out}: data.npz ({shapes}), truth.npz, config.toml")
    return 0


def _cli_model_options(args) -> dict:
    opts = {}
    for item in getattr(args, "set", None) or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set expects KEY=VALUE, got {item!r}")
        opts[key.strip()] = _parse_value(value.strip())
    if getattr(args, "n_particles", None) is not None:
        opts["n_particles"] = args.n_particles
    return opts


def _check_fit_options(fit: dict) -> None:
    def need(cond, key, rng):
        if not cond:
            raise UsageError(f"{key} must be {rng}, got {fit[key]!r}")

    need(fit["method"] in METHODS, "method", f"one of {', '.join(METHODS)}")
    need(fit["chains"] >= 1, "chains", "an integer >= 1")
    need(fit["warmup"] >= 0, "warmup", "an integer >= 0")
    need(fit["samples"] >= (2 if fit["method"] == "laplace" else 1), "samples", "an integer >= 1 (>= 2 for laplace)")
    need(fit["block"] >= 0, "block", "an integer >= 0 (0: automatic)")
    need(fit["chain_method"] in ("auto", "parallel", "vectorized", "sequential"), "chain_method",
         "auto, parallel, vectorized or sequential")
    need(0 < fit["target_accept"] < 1, "target_accept", "in (0, 1)")
    need(fit["max_tree_depth"] >= 1, "max_tree_depth", "an integer >= 1")
    need(fit["hmc_steps"] >= 0, "hmc_steps", "an integer >= 0 (0: trajectory length 2π)")
    need(fit["map_steps"] >= 10, "map_steps", "an integer >= 10")
    need(fit["learning_rate"] > 0, "learning_rate", "> 0")
    need(fit["mc_noise_draws"] == 0 or fit["mc_noise_draws"] >= 3, "mc_noise_draws", "0 (skip) or an integer >= 3")
    need(fit["mc_noise_keys"] >= 1, "mc_noise_keys", "an integer >= 1")
    need(fit["mc_noise_threshold"] > 0, "mc_noise_threshold", "> 0")
    need(fit["batch_size"] >= 0, "batch_size", "an integer >= 0 (0: all draws at once)")
    _progress_enabled(fit["progress"])


def resolve_fit_config(args, module, data_config: dict):
    """``(fit, model, explicit)``: the ``[fit]`` options, the model configuration, and the
    options given explicitly (config file or flags) as ``{"fit": {...}, "model": {...}}``."""
    tables = _config_tables(args.config, ("model", "fit"))
    fit_file = tables.get("fit", {})
    fit = _merge("[fit]", FIT_DEFAULTS, fit_file, FIT_DEFAULTS)
    explicit_fit = dict(fit_file)
    for key, default in FIT_DEFAULTS.items():
        value = getattr(args, key, None)
        if key == "progress" and isinstance(value, bool):
            value = "true" if value else "false"
        if value is not None:
            fit[key] = _check_type("--" + key.replace("_", "-"), key, value, default)
            explicit_fit[key] = fit[key]
    fit["progress"] = fit["progress"].lower()
    _check_fit_options(fit)
    data_model = data_config.get("model", {}) if isinstance(data_config.get("model", {}), dict) else {}
    data_model = {k: v for k, v in data_model.items() if k in module.DEFAULTS}  # a renamed key is not an error here
    model_cfg = _merge("[model] (data folder)", module.DEFAULTS, data_model, module.DEFAULTS)
    model_file = tables.get("model", {})
    model_cfg = _merge("[model]", model_cfg, model_file, module.DEFAULTS)
    cli_opts = _cli_model_options(args)
    model_cfg = _merge("model option", model_cfg, cli_opts, module.DEFAULTS)
    return fit, model_cfg, {"fit": explicit_fit, "model": {**model_file, **cli_opts}}


def _fit(args) -> int:
    # Everything that needs no JAX comes first: the host device count must be set before JAX starts.
    probe = _config_tables(args.config, ("model", "fit")).get("fit", {})
    chains = args.chains if args.chains is not None else probe.get("chains", FIT_DEFAULTS["chains"])
    out_probe = args.out if args.out is not None else probe.get("out", "")
    if args.resume and isinstance(out_probe, str) and os.path.isfile(os.path.join(out_probe, CHECKPOINT)):
        from ppl_bmc.infer.mcmc import Checkpoint  # unpickling needs numpy only: JAX does not start

        with contextlib.suppress(Exception):
            chains = Checkpoint.load(os.path.join(out_probe, CHECKPOINT)).num_chains
    if isinstance(chains, int) and not isinstance(chains, bool) and chains > 1:
        import numpyro

        numpyro.set_host_device_count(chains)  # no effect once JAX has started (e.g. in-process tests)
    module = load_model(args.model)
    data_dir = args.data if args.data is not None else probe.get("data", "")
    data, data_config = read_data(data_dir if isinstance(data_dir, str) else "")
    fit, model_cfg, explicit = resolve_fit_config(args, module, data_config)
    check_data(module, data)
    out = _check_out(fit["out"], force=args.force, resume=args.resume)
    ckpt_path = os.path.join(out, CHECKPOINT)
    data_hash = _sha256(os.path.join(data_dir, "data.npz"))

    from ppl_bmc import infer

    resume = None
    if args.resume:
        if not os.path.isfile(ckpt_path):
            raise UsageError(f"nothing to resume in {out}: no {CHECKPOINT} (the fit finished, or never saved a block)")
        try:
            resume = infer.Checkpoint.load(ckpt_path)
        except Exception as err:  # noqa: BLE001 - a damaged file: one line, no traceback
            raise UsageError(f"cannot read the checkpoint {ckpt_path}: {err}") from None
        fit, model_cfg = _resume_config(resume, fit, model_cfg, explicit, module, data_hash)

    import jax

    seed = fit["seed"]
    k_lik, k_run, k_pred, k_noise = jax.random.split(jax.random.key(seed), 4)
    try:
        model, kwargs = module.build(dict(model_cfg), data, key=k_lik)
    except ValueError as err:
        raise UsageError(f"build: {err}") from None
    check_support(model, kwargs)
    progress = _progress_enabled(fit["progress"])
    meta = {"fit": fit, "model": model_cfg, "model_path": module.__ppl_bmc_path__,
            "data": os.path.abspath(data_dir), "data_sha256": data_hash}
    method = fit["method"]
    batch = fit["batch_size"] or None
    t0 = _now()
    resume_cmd = _resume_command(args, out)
    saved = [resume is not None]  # a checkpoint of this run exists

    def save_checkpoint(ckpt):
        ckpt.save(ckpt_path)
        saved[0] = True

    try:
        if method in ("nuts", "hmc"):
            _note(f"{method}: {fit['chains']} chain(s) × ({fit['warmup']} warmup + {fit['samples']} draws)"
                  + (f", resuming after {resume.iteration} iterations" if resume else ""))
            result = infer.run_mcmc(
                model, rng_key=k_run, num_warmup=fit["warmup"], num_samples=fit["samples"], num_chains=fit["chains"],
                chain_method=None if fit["chain_method"] == "auto" else fit["chain_method"], kernel=method,
                dense_mass=fit["dense_mass"], target_accept_prob=fit["target_accept"],
                max_tree_depth=fit["max_tree_depth"], num_steps=fit["hmc_steps"] or None,
                block_size=fit["block"] or None, checkpoint=save_checkpoint, resume=resume,
                progress_bar=progress, meta=meta, **kwargs)
            draws = {k: result.samples[k] for k in result.z}
        elif method == "laplace":
            _note(f"laplace: MAP ({fit['map_steps']} SVI steps), Hessian, {fit['samples']} draws")
            result = infer.laplace(model, rng_key=k_run, num_samples=fit["samples"], num_steps=fit["map_steps"],
                                   learning_rate=fit["learning_rate"], progress_bar=progress, batch_size=batch, **kwargs)
            draws = {k: v[None] for k, v in result.samples.items() if k in result.z}
        else:
            _note(f"map: {fit['map_steps']} SVI steps")
            result = infer.fit_map(model, rng_key=k_run, num_steps=fit["map_steps"], learning_rate=fit["learning_rate"],
                                   progress_bar=progress, **kwargs)
            draws = None
        data_tree = infer.to_inference_data(result, rng_key=k_pred, batch_size=batch,
                                            attrs={"model": os.path.basename(module.__ppl_bmc_path__), "seed": seed})
        report = _fit_report(infer, method, result, data_tree, draws, module, model_cfg, data, model, kwargs,
                             k_noise, fit, batch)
    except KeyboardInterrupt:
        _stderr("ppl-bmc: interrupted; the earlier files in " + out + " are untouched.")
        if saved[0] and method in ("nuts", "hmc") and os.path.isfile(ckpt_path):
            try:
                done = infer.Checkpoint.load(ckpt_path)
                _stderr(f"ppl-bmc: {min(done.num_draws, done.num_samples)} of {done.num_samples} draws per chain "
                        f"({done.iteration} iterations with warmup) are saved in {os.path.join(out, '.resume')}.")
            except Exception:  # noqa: BLE001
                pass
            _stderr(f"ppl-bmc: resume with: {resume_cmd}")
        else:
            _stderr("ppl-bmc: nothing was saved to resume from: run the same command again to start over.")
        return 130
    except ValueError as err:
        raise UsageError(f"{method}: {err}") from None
    report["elapsed_s"] = round(_now() - t0, 3)
    _write_fit_outputs(out, data_tree, report, fit, model_cfg, module, data_dir, data_hash)
    for line in report["warnings"]:
        _warn(line)
    print(f"{method} fit of {os.path.basename(module.__ppl_bmc_path__)} in {report['elapsed_s']:.1f} s -> {out}")
    _summarize_folder(out, module=module, quiet_warnings=True)
    return 0


def _now():
    import time

    return time.perf_counter()


def _resume_command(args, out) -> str:
    import shlex

    argv = list(getattr(args, "_argv", []))
    if not argv:
        return f"ppl-bmc fit ... --out {out} --resume"
    argv = [a for a in argv if a not in ("--force", "--resume")]
    return "ppl-bmc " + " ".join(shlex.quote(a) for a in argv) + " --resume"


def _resume_config(ckpt, fit, model_cfg, explicit, module, data_hash):
    meta = ckpt.meta or {}
    saved_fit, saved_model = dict(meta.get("fit", {})), dict(meta.get("model", {}))
    if meta.get("model_path") and os.path.abspath(meta["model_path"]) != os.path.abspath(module.__ppl_bmc_path__):
        raise UsageError(f"--resume: the interrupted fit used the model {meta['model_path']}, not {module.__ppl_bmc_path__}")
    if meta.get("data_sha256") and meta["data_sha256"] != data_hash:
        raise UsageError("--resume: the data changed since the interrupted fit (data.npz differs); start over with --force")
    changeable = {"samples", "progress", "data", "out", "batch_size", "mc_noise_draws", "mc_noise_keys",
                  "mc_noise_threshold"}
    for key, value in explicit["fit"].items():
        if key not in changeable and key in saved_fit and saved_fit[key] != value:
            raise UsageError(f"--resume: {key} = {value!r} differs from the interrupted fit's {saved_fit[key]!r}; "
                             f"only samples may change (or start over with --force)")
    for key, value in explicit["model"].items():
        if key in saved_model and saved_model[key] != value:
            raise UsageError(f"--resume: model option {key} = {value!r} differs from the interrupted fit's "
                             f"{saved_model[key]!r}; start over with --force")
    new_fit = dict(saved_fit or fit)
    for key in changeable:
        new_fit[key] = fit[key]
    return new_fit, (saved_model or model_cfg)


def _fit_report(infer, method, result, data_tree, draws, module, model_cfg, data, model, kwargs, k_noise, fit, batch):
    import jax
    import numpy as np

    report = {"method": method, "warnings": []}
    if method in ("nuts", "hmc"):
        diag = infer.diagnostics(data_tree, var_names=_var_names(module, data_tree),
                                 max_tree_depth=fit["max_tree_depth"] if method == "nuts" else None)
        report["diagnostics"] = diag.as_dict()
        report["warnings"] += diag.warnings
        report["chain_method"] = result.chain_method
    elif method == "laplace":
        report["laplace"] = {"positive_definite": result.positive_definite,
                             "importance_efficiency": result.importance_efficiency,
                             "map_converged": result.map.converged}
        if not result.positive_definite:
            report["warnings"].append("laplace: the Hessian at the mode is not positive definite")
        if result.importance_efficiency < 0.5:
            report["warnings"].append(f"laplace: importance efficiency {result.importance_efficiency:.2f} < 0.5: the "
                                      f"posterior is far from Gaussian; use nuts")
        if not result.map.converged:
            report["warnings"].append("laplace: the SVI MAP did not converge (raise map_steps)")
    else:
        report["map"] = {"converged": result.converged, "final_loss": float(result.losses[-1]),
                         "params": {k: np.asarray(v).tolist() for k, v in result.params.items()}}
        if not result.converged:
            report["warnings"].append("map: SVI did not converge (raise map_steps or learning_rate)")
    report["mc_noise"] = None
    if draws is not None and fit["mc_noise_draws"]:
        ll = infer.group(data_tree, "log_likelihood")
        total = sum(np.asarray(ll[v].values).reshape(ll[v].shape[:2] + (-1,)).sum(-1) for v in ll.data_vars)
        alts = []
        for k in jax.random.split(k_noise, fit["mc_noise_keys"]):
            alts.append(module.build(dict(model_cfg), data, key=k))
        noise = infer.mc_noise(model, draws, model_kwargs=kwargs, alt_model=[m for m, _ in alts],
                               alt_model_kwargs=[kw for _, kw in alts], loglik=total,
                               threshold=fit["mc_noise_threshold"], max_draws=fit["mc_noise_draws"],
                               batch_size=batch, warn=False)
        report["mc_noise"] = noise.as_dict()
        if noise.flagged:
            report["warnings"].append(noise.message)
    return report


def _write_fit_outputs(out, data_tree, report, fit, model_cfg, module, data_dir, data_hash):
    from ppl_bmc import infer

    stale = [f for f in os.listdir(out) if f in RESULT_FILES or (f.endswith(".png") and f.startswith(("mean_", "sd_")))]
    fit_doc = {
        "fit": {k: v for k, v in fit.items() if k not in ("data", "out")},
        "model": model_cfg,
        "paths": {"model": module.__ppl_bmc_path__, "data": os.path.abspath(data_dir), "data_sha256": data_hash},
        "run": {"elapsed_s": report.get("elapsed_s"),
                "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), **_versions()},
    }
    with _sigint_deferred():
        for name in stale:  # outputs of an earlier fit that this one does not rewrite
            if name not in ("posterior.nc", "diagnostics.json", "fit.toml"):
                os.remove(os.path.join(out, name))
        infer.to_netcdf(data_tree, os.path.join(out, "posterior.nc"))
        _write_text(os.path.join(out, "diagnostics.json"), json.dumps(report, indent=1, ensure_ascii=False) + "\n")
        _write_text(os.path.join(out, "fit.toml"), to_toml(fit_doc, header="written by ppl-bmc fit"))
        ckpt = os.path.join(out, CHECKPOINT)
        if os.path.exists(ckpt):
            os.remove(ckpt)
            with contextlib.suppress(OSError):
                os.rmdir(os.path.dirname(ckpt))


def _var_names(module, data_tree, requested=None):
    from ppl_bmc import infer

    post = infer.group(data_tree, "posterior")
    if requested:
        bad = [v for v in requested if v not in post.data_vars]
        if bad:
            raise UsageError(f"unknown variable(s) {', '.join(bad)}; the posterior has {', '.join(post.data_vars)}")
        return list(requested)
    names = [v for v in (getattr(module, "VAR_NAMES", None) or []) if v in post.data_vars]
    return names or None


def _model_of_results(folder):
    """The model module named in ``fit.toml`` (None if it cannot be loaded)."""
    path = os.path.join(folder, "fit.toml")
    if not os.path.isfile(path):
        return None
    model_path = read_toml(path).get("paths", {}).get("model")
    if not model_path or not os.path.isfile(model_path):
        return None
    try:
        return load_model(model_path)
    except (UsageError, Exception):  # noqa: BLE001 - the plots fall back to all variables
        return None


def _summarize(args) -> int:
    folder = os.path.abspath(args.folder)
    if not os.path.isdir(folder):
        raise UsageError(f"results folder {args.folder} does not exist")
    if not os.path.isfile(os.path.join(folder, "posterior.nc")):
        raise UsageError(f"results folder {args.folder} has no posterior.nc (run ppl-bmc fit first)")
    if args.rows < 0:
        raise UsageError(f"--rows must be >= 0 (0 prints every row), got {args.rows}")
    _summarize_folder(folder, module=_model_of_results(folder), var_names=args.var_names, max_rows=args.rows)
    return 0


def _summarize_folder(folder, *, module=None, var_names=None, quiet_warnings=False, max_rows=SUMMARY_ROWS):
    """Write summary.csv, trace.png, rank.png and the maps of ``folder/posterior.nc``; print the
    table (at most ``max_rows`` rows, worst r̂ first; 0 = all) and the diagnostics."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from ppl_bmc import infer
    from ppl_bmc._io import atomic_write

    try:
        data_tree = infer.from_netcdf(os.path.join(folder, "posterior.nc"))
    except Exception as err:  # noqa: BLE001 - a damaged file: one line
        raise UsageError(f"cannot read {os.path.join(folder, 'posterior.nc')}: {err}") from None
    names = _var_names(module, data_tree, var_names)
    post = infer.group(data_tree, "posterior")
    rank = post.sizes["chain"] >= 2 and post.sizes["draw"] >= 4  # rank plots compare chains
    with _sigint_deferred():
        table = infer.summary(data_tree, var_names=names)
        atomic_write(os.path.join(folder, "summary.csv"), lambda tmp: table.to_csv(tmp))
        fig = infer.plot_trace(data_tree, var_names=names)
        atomic_write(os.path.join(folder, "trace.png"), lambda tmp: fig.savefig(tmp, dpi=72, format="png"))
        plt.close("all")
        if rank:
            fig = infer.plot_rank(data_tree, var_names=names)
            atomic_write(os.path.join(folder, "rank.png"), lambda tmp: fig.savefig(tmp, dpi=72, format="png"))
            plt.close("all")
        maps = getattr(module, "MAPS", None) or {}
        written_maps = []
        for site, spec in maps.items():
            if site not in post.data_vars:
                continue
            values = np.asarray(post[site].values)
            if values.ndim < 4:
                _warn(f"MAPS[{site!r}]: the site is not 2-D (shape {values.shape[2:]}); no map drawn")
                continue
            values = values.reshape((-1,) + values.shape[-2:])
            for stat, img in (("mean", values.mean(0)), ("sd", values.std(0))):
                fig, ax = plt.subplots(figsize=(5.5, 4))
                im = ax.imshow(img, origin="lower", extent=spec.get("extent"), aspect="auto")
                ax.set_xlabel(spec.get("xlabel", "x (m)"))
                ax.set_ylabel(spec.get("ylabel", "z (m)"))
                ax.set_title(f"posterior {stat} of {spec.get('title', site)}")
                fig.colorbar(im, ax=ax)
                path = os.path.join(folder, f"{stat}_{site}.png")
                atomic_write(path, lambda tmp, fig=fig: fig.savefig(tmp, dpi=72, format="png"))
                plt.close(fig)
                written_maps.append(os.path.basename(path))
    import pandas as pd

    shown = table
    if max_rows and len(table) > max_rows:
        # field models have hundreds of rows: show the worst-mixing ones first
        order = table.sort_values(["r_hat", "ess_bulk"], ascending=[False, True], na_position="last").index
        shown = table.loc[order[:max_rows]]
        print(f"{len(table)} rows; the {max_rows} with the largest r_hat (all in summary.csv; --rows 0 prints all):")
    with pd.option_context("display.width", 120, "display.max_columns", 20):
        print(shown.round(4).to_string())
    report_path = os.path.join(folder, "diagnostics.json")
    if os.path.isfile(report_path):
        report = json.load(open(report_path, encoding="utf-8"))
        diag = report.get("diagnostics") or {}
        if diag:
            print(f"diagnostics: r_hat max {_fmt(diag.get('r_hat_max'))}, ESS bulk/tail min "
                  f"{_fmt(diag.get('ess_bulk_min'), 0)}/{_fmt(diag.get('ess_tail_min'), 0)}, "
                  f"{diag.get('divergences', 0)} divergences, BFMI {', '.join(_fmt(b, 2) for b in diag.get('bfmi', []))}"
                  + (f", tree depth max {diag['tree_depth_max']} (limit {diag['max_tree_depth']}, "
                     f"{diag['max_tree_depth_hits']} hits)" if diag.get("tree_depth_max") is not None else ""))
        lap = report.get("laplace")
        if lap:
            print(f"laplace: Hessian {'positive definite' if lap['positive_definite'] else 'NOT positive definite'}, "
                  f"importance efficiency {_fmt(lap['importance_efficiency'], 2)}, MAP converged: {lap['map_converged']}")
        point = report.get("map")
        if point:
            print(f"map: converged: {point['converged']}, final loss {_fmt(point['final_loss'], 4)}")
        noise = report.get("mc_noise")
        if noise:
            print(f"MC noise: ratio {_fmt(noise['ratio'], 3)} (threshold {noise['threshold']}), sd(l1 - l2) "
                  f"{_fmt(noise['sd_diff'], 3)} nats, sd(l) {_fmt(noise['sd_loglik'], 3)} nats over "
                  f"{noise['num_draws']} draws -> {'FLAGGED' if noise['flagged'] else 'ok'}")
        if not quiet_warnings:
            for line in report.get("warnings", []):
                _warn(line)
    files = ["summary.csv", "trace.png"] + (["rank.png"] if rank else []) + written_maps
    print(f"wrote {', '.join(files)} in {folder}")


def _fmt(x, digits=3):
    return "n/a" if x is None else f"{x:.{digits}f}"


def _bench(args) -> int:
    folder = os.path.join(_REPO, "benchmarks")
    scripts = sorted(f for f in os.listdir(folder) if f.startswith("bench_") and f.endswith(".py")) if os.path.isdir(folder) else []
    if not scripts:
        raise UsageError(f"no benchmarks/bench_*.py scripts in {_REPO}")
    names = {s[len("bench_"):-3]: s for s in scripts}
    if args.list:
        for name in names:
            print(name)
        return 0
    chosen = []
    for name in args.names or list(names):
        key = name[len("bench_"):] if name.startswith("bench_") else name
        key = key[:-3] if key.endswith(".py") else key
        if key not in names:
            raise UsageError(f"unknown benchmark {name!r}; available: {', '.join(names)}")
        chosen.append(names[key])
    status = 0
    for script in chosen:
        cmd = [sys.executable, os.path.join(folder, script)] + (["--quick"] if args.quick else [])
        _note(f"running {' '.join(cmd[1:])}")
        rc = subprocess.call(cmd, cwd=_REPO)
        if rc:
            _warn(f"{script} exited with status {rc}")
            status = 1
    return status


def _version(args) -> int:
    import arviz
    import jax
    import numpyro

    import ppl_bmc

    print(f"ppl_bmc {ppl_bmc.__version__}; jax {jax.__version__} ({jax.default_backend()}); "
          f"numpyro {numpyro.__version__}; arviz {arviz.__version__}")
    return 0


def _toy_flux(args) -> int:
    import jax
    import numpy as np

    from ppl_bmc import toy

    thetas = [math.pi * t for t in args.thetas_over_pi]
    flux = toy.flux(args.node, thetas, key=jax.random.key(args.seed), n_particles=args.n_particles, n_steps=args.n_steps)
    for t, f in zip(args.thetas_over_pi, np.asarray(flux)):
        print(f"theta = {t:+.4f} pi  flux = {f:.5f}")
    return 0


# --------------------------------------------------------------------------- parser


def _add_fit_flags(p):
    p.add_argument("--method", choices=METHODS, help="map, nuts, hmc or laplace (default nuts)")
    p.add_argument("--chains", type=int, help="MCMC chains (default 2)")
    p.add_argument("--warmup", type=int, help="warmup iterations per chain (default 500)")
    p.add_argument("--samples", type=int, help="draws per chain, or laplace draws (default 1000)")
    p.add_argument("--seed", type=int, help="seed of the likelihood key, the sampler and the replicas (default 0)")
    p.add_argument("--n-particles", type=int, help="sets the model option n_particles")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="a model option (TOML literal or string); repeatable")
    p.add_argument("--config", help="TOML file with [model] and [fit] tables")
    p.add_argument("--data", help="data folder (data.npz, config.toml)")
    p.add_argument("--out", help="results folder")
    p.add_argument("--block", type=int, help="MCMC iterations per checkpointed block (default (warmup + samples) / 20)")
    p.add_argument("--chain-method", choices=("auto", "parallel", "vectorized", "sequential"))
    p.add_argument("--dense-mass", action=argparse.BooleanOptionalAction, default=None, help="dense mass matrix")
    p.add_argument("--target-accept", type=float, help="step-size adaptation target (default 0.8)")
    p.add_argument("--max-tree-depth", type=int, help="NUTS tree depth limit (default 10)")
    p.add_argument("--hmc-steps", type=int, help="HMC leapfrog steps (default 0: trajectory length 2π)")
    p.add_argument("--map-steps", type=int, help="SVI steps for map/laplace (default 2000)")
    p.add_argument("--learning-rate", type=float, help="Adam learning rate for map/laplace (default 0.01)")
    p.add_argument("--mc-noise-draws", type=int, help="draws for the MC-noise diagnostic (default 200; 0 skips it)")
    p.add_argument("--mc-noise-keys", type=int, help="independent likelihood keys of the MC-noise diagnostic (default 4)")
    p.add_argument("--mc-noise-threshold", type=float, help="MC-noise flag threshold on sd(l1-l2)/sd(l1) (default 0.5)")
    p.add_argument("--batch-size", type=int, help="draws per vectorised predictive pass (default 0: all)")
    p.add_argument("--progress", dest="progress", action="store_const", const=True, default=None,
                   help="progress bars on stderr (default: when stderr is a terminal and CI is unset)")
    p.add_argument("--no-progress", dest="progress", action="store_const", const=False)
    p.add_argument("--resume", action="store_true", help="continue the interrupted fit saved in the results folder")
    p.add_argument("--force", action="store_true", help="overwrite a non-empty results folder")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ppl-bmc", description="Differentiable backward Monte-Carlo for NumPyro: simulate, fit, "
                                                 "summarize (see the module docstring of ppl_bmc.cli).")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("version", help="print the versions of ppl_bmc, jax, numpyro and arviz").set_defaults(func=_version)
    p = sub.add_parser("toy-flux", help="BMC flux of the paper's toy at a node")
    p.add_argument("--node", type=float, nargs=3, default=[0.0, 5.0, 10.0], metavar=("MUX", "MUY", "SIGMA2"))
    p.add_argument("--thetas-over-pi", type=float, nargs="+", default=[0.0, 0.1, -0.08])
    p.add_argument("--n-particles", type=int, default=100_000)
    p.add_argument("--n-steps", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_toy_flux)
    sub.add_parser("models", help="list the models in models/").set_defaults(func=_models)
    p = sub.add_parser("simulate", help="synthetic data and the truth -> a data folder")
    p.add_argument("model", help="model file (models/NAME.py) or bare name")
    p.add_argument("--config", help="TOML file with [model] and [simulate] tables")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="a model option (TOML literal or string); repeatable")
    p.add_argument("--n-particles", type=int, help="sets the model option n_particles")
    p.add_argument("--seed", type=int, help="seed of the simulation (default 0)")
    p.add_argument("--out", help="data folder to write")
    p.add_argument("--force", action="store_true", help="overwrite a non-empty data folder")
    p.set_defaults(func=_simulate)
    p = sub.add_parser("fit", help="fit a model to a data folder -> a results folder")
    p.add_argument("model", help="model file (models/NAME.py) or bare name")
    _add_fit_flags(p)
    p.set_defaults(func=_fit)
    p = sub.add_parser("summarize", help="summary table, trace/rank plots, maps and diagnostics of a results folder")
    p.add_argument("folder", help="results folder written by ppl-bmc fit")
    p.add_argument("--var-names", nargs="+", help="variables to summarise (default the model's VAR_NAMES)")
    p.add_argument("--rows", type=int, default=SUMMARY_ROWS,
                   help=f"summary rows to print, worst r_hat first (default {SUMMARY_ROWS}; 0 = all)")
    p.set_defaults(func=_summarize)
    p = sub.add_parser("bench", help="run the benchmark scripts benchmarks/bench_*.py")
    p.add_argument("names", nargs="*", help="benchmarks to run (e.g. toy_adjoints); default all")
    p.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    p.add_argument("--list", action="store_true", help="list the benchmarks")
    p.set_defaults(func=_bench)
    return parser


def main(argv=None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    import warnings

    # ArviZ 0.23 announces its refactor at import: noise on every command's stderr.
    warnings.filterwarnings("ignore", message=r"\s*ArviZ is undergoing a major refactor", category=FutureWarning)
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        args._argv = argv
        return args.func(args)
    except UsageError as err:  # bad input: one line, no traceback
        print(f"ppl-bmc: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except ValueError as err:
        print(f"ppl-bmc: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ppl-bmc: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
