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
    Summary table (the N rows with the largest r̂, default 30), trace and rank plots (every
    scalar, or the few field sites that mix worst, named), posterior mean/sd maps of field models
    in physical units with r̂ and ESS maps, diagnostics, and a plain-language report.
``ppl-bmc bench [NAME ...] [--quick] [--list]``
    Run the benchmark scripts ``benchmarks/bench_*.py`` (all, or those named).
``ppl-bmc version``, ``ppl-bmc toy-flux``
    Versions of the stack; the toy's BMC flux at a node.

Exit status 0 on success, 2 with one line ``ppl-bmc: error: ...`` on bad input (unknown model,
option or config key, missing, empty, truncated or corrupted data, unwritable or non-empty output
folder), 130 when interrupted (Ctrl-C), 143 when terminated (SIGTERM, as a batch scheduler
stops a job: handled like Ctrl-C, checkpoint kept and the resume command printed).  A figure
that cannot be drawn is a warning naming it; the fit's other files are written and the exit
status is 0.  Options, config files, model keys (read from the model file's literal
``DEFAULTS`` without running it), the data file's format and the output folder are checked before
JAX is imported; the observed values themselves are checked once the model is loaded.  Diagnostic warnings go to stderr as ``ppl-bmc: warning: ...`` and do
not change the exit status.  Progress bars (warmup, sampling, SVI) are drawn on stderr when it
is a terminal and the environment variable ``CI`` is unset (``--progress/--no-progress``).

Model files
-----------
A model is a Python file ``models/<name>.py``; ``MODEL`` is its path or its bare name, looked up
in the folder ``$PPL_BMC_MODELS`` if set, else in the repository's ``models/``.  The package is
split by concept: :mod:`~ppl_bmc.cli.common` (constants, errors, signals),
:mod:`~ppl_bmc.cli.config`, :mod:`~ppl_bmc.cli.folders` (data and results files),
:mod:`~ppl_bmc.cli.protocol` (model files), :mod:`~ppl_bmc.cli.simulate`,
:mod:`~ppl_bmc.cli.fit`, :mod:`~ppl_bmc.cli.summarize`, :mod:`~ppl_bmc.cli.misc`.  It is loaded
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
  "ylabel"}`` and optionally ``"title"``, ``"transform": "exp"`` (draw ``exp(site)``, e.g. a
  density from a log-density), ``"label"`` and ``"unit"`` (colour-bar label, e.g. ``"density"``,
  ``"kg/m³"``), ``"truth"`` (an array of ``truth.npz`` in the same units, drawn as an outline),
  ``"truth_extent"`` (its extent when its grid differs) and ``"mask"`` (a function
  ``mask(config, shape) -> bool array``: cells inside the scene; the others are left blank).
  ``summarize`` draws ``mean_<site>.png`` and ``sd_<site>.png`` (or the point and its curvature
  sd for a MAP fit) and, for MCMC, ``rhat_<site>.png`` and ``ess_<site>.png``.  The site's last
  two axes are ``(z, x)``: row ``i`` is the ``i``-th row of cells from the bottom
  (``imshow(..., origin="lower", extent=extent)``).  A 3-D site ``(z, y, x)`` needs
  ``"section": {"axis": a, "at": f}`` (or ``"index": i``): the maps show the section at index
  ``i`` (or ``⌊f·n⌋``) of its axis ``a`` (0 = z, 1 = y, 2 = x); the mask is 3-D, the truth the section.
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
``summary.csv`` (MCMC: columns mean, sd, ci_lower, ci_upper (94 % equal-tailed), ess_bulk,
ess_tail, r_hat; Laplace: mean, sd, ci_lower, ci_upper of its independent draws; MAP: map, sd,
ci_lower, ci_upper from the curvature at the point), ``trace.png`` (MCMC: density and trace per chain; Laplace and
MAP: the distribution or the point ± sd; the truth when the data folder has it), ``rank.png``
(MCMC with ≥ 2 chains), the maps (above), ``diagnostics.json`` (r̂, ESS, divergences, BFMI,
tree depth, the MC-noise diagnostic, the warnings), ``report.txt`` (the plain-language report)
and ``fit.toml`` (the resolved ``[fit]`` and ``[model]`` configuration, the data and model
paths, versions, wall time).  ``method = "map"`` stores the MAP point as one chain with one
draw and its curvature sd in ``diagnostics.json`` (``map_sd = false`` skips the Hessian);
``"laplace"`` stores ``samples`` independent draws of the Gaussian at the mode as one chain.  Every file is written atomically (temporary file, then rename).  An existing
non-empty folder is refused unless ``--force``.  NUTS/HMC fits save the sampler's state and
draws after each block of ``block`` iterations in ``DIR/.resume/checkpoint.pkl``; Ctrl-C leaves
the folder's earlier files untouched, and ``ppl-bmc fit ... --resume`` continues from the last
block and ends with ``samples`` draws per chain (``--samples`` may be raised on resume).  The
checkpoint is removed when the fit completes.
"""

from __future__ import annotations

import argparse
import sys

from ppl_bmc.cli.common import (
    CHECKPOINT,
    EXIT_SIGTERM,
    FIT_DEFAULTS,
    METHODS,
    RESULT_FILES,
    SUMMARY_ROWS,
    Terminated,
    UsageError,
    _Parser,
    sigterm_as_interrupt,
)
from ppl_bmc.cli.config import read_toml, to_toml
from ppl_bmc.cli.fit import fit_command
from ppl_bmc.cli.folders import read_data
from ppl_bmc.cli.misc import bench_command, toy_flux_command, version_command
from ppl_bmc.cli.protocol import load_model, models_command, models_dir, resolve_model, static_defaults
from ppl_bmc.cli.simulate import simulate_command
from ppl_bmc.cli.summarize import summarize_command

__all__ = ["CHECKPOINT", "FIT_DEFAULTS", "METHODS", "RESULT_FILES", "UsageError", "build_parser", "load_model", "main",
           "models_dir", "read_data", "read_toml", "resolve_model", "static_defaults", "to_toml"]


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
    p.add_argument("--map-sd", action=argparse.BooleanOptionalAction, default=None,
                   help="map: the curvature (Laplace) sd at the MAP point (default on)")
    p.add_argument("--mc-noise-draws", type=int, help="draws for the MC-noise diagnostic (default 200; 0 skips it)")
    p.add_argument("--mc-noise-keys", type=int, help="independent likelihood keys of the MC-noise diagnostic (default 4)")
    p.add_argument("--mc-noise-threshold", type=float, help="MC-noise flag threshold on sd(l1-l2)/sd(l1) (default 0.5)")
    p.add_argument("--batch-size", type=int, help="draws per vectorised predictive pass (default 0: all)")
    p.add_argument("--progress", dest="progress", action="store_const", const=True, default=None,
                   help="progress bars on stderr (default: when stderr is a terminal and CI is unset)")
    p.add_argument("--no-progress", dest="progress", action="store_const", const=False)
    p.add_argument("--resume", action="store_true", help="continue the interrupted fit saved in the results folder")
    p.add_argument("--force", action="store_true", help="overwrite a non-empty results folder")
    p.add_argument("--coordinator", metavar="HOST:PORT",
                   help="several hosts (jax.distributed): process 0's address; start the same command on every "
                        "host with --num-processes and its own --process-id; the model's BMC likelihood is split "
                        "over every host's devices (model option devices='all') and process 0 writes the results")
    p.add_argument("--num-processes", type=int, help="several hosts: how many processes take part")
    p.add_argument("--process-id", type=int, help="several hosts: this process's index, 0 … num-processes − 1")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ppl-bmc", description="Differentiable backward Monte-Carlo for NumPyro: simulate, fit, "
                                                 "summarize (see the module docstring of ppl_bmc.cli).")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("version", help="print the versions of ppl_bmc, jax, numpyro and arviz").set_defaults(func=version_command)
    p = sub.add_parser("toy-flux", help="BMC flux of the paper's toy at a node")
    p.add_argument("--node", type=float, nargs=3, default=[0.0, 5.0, 10.0], metavar=("MUX", "MUY", "SIGMA2"))
    p.add_argument("--thetas-over-pi", type=float, nargs="+", default=[0.0, 0.1, -0.08])
    p.add_argument("--n-particles", type=int, default=100_000)
    p.add_argument("--n-steps", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=toy_flux_command)
    sub.add_parser("models", help="list the models in models/").set_defaults(func=models_command)
    p = sub.add_parser("simulate", help="synthetic data and the truth -> a data folder")
    p.add_argument("model", help="model file (models/NAME.py) or bare name")
    p.add_argument("--config", help="TOML file with [model] and [simulate] tables")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="a model option (TOML literal or string); repeatable")
    p.add_argument("--n-particles", type=int, help="sets the model option n_particles")
    p.add_argument("--seed", type=int, help="seed of the simulation (default 0)")
    p.add_argument("--out", help="data folder to write")
    p.add_argument("--force", action="store_true", help="overwrite a non-empty data folder")
    p.set_defaults(func=simulate_command)
    p = sub.add_parser("fit", help="fit a model to a data folder -> a results folder")
    p.add_argument("model", help="model file (models/NAME.py) or bare name")
    _add_fit_flags(p)
    p.set_defaults(func=fit_command)
    p = sub.add_parser("summarize", help="summary table, trace/rank plots, maps and diagnostics of a results folder")
    p.add_argument("folder", help="results folder written by ppl-bmc fit")
    p.add_argument("--var-names", nargs="+", help="variables to summarise (default the model's VAR_NAMES)")
    p.add_argument("--rows", type=int, default=SUMMARY_ROWS,
                   help=f"summary rows to print, worst r_hat first (default {SUMMARY_ROWS}; 0 = all)")
    p.set_defaults(func=summarize_command)
    p = sub.add_parser("bench", help="run the benchmark scripts benchmarks/bench_*.py")
    p.add_argument("names", nargs="*", help="benchmarks to run (e.g. toy_adjoints); default all")
    p.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    p.add_argument("--list", action="store_true", help="list the benchmarks")
    p.set_defaults(func=bench_command)
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
        with sigterm_as_interrupt():
            return args.func(args)
    except UsageError as err:  # bad input: one line, no traceback
        print(f"ppl-bmc: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except ValueError as err:
        print(f"ppl-bmc: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        terminated = isinstance(err, Terminated)
        print(f"ppl-bmc: {'terminated (SIGTERM)' if terminated else 'interrupted'}", file=sys.stderr)
        return EXIT_SIGTERM if terminated else 130

