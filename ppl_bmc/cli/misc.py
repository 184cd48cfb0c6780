"""Small subcommands: ``bench``, ``version``, ``toy-flux``."""

from __future__ import annotations

import math
import os
import subprocess
import sys

from ppl_bmc.cli.common import UsageError, note, warn

#: The checkout the package runs from (benchmarks/ lives there; it is not installed).
_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def bench_command(args) -> int:
    folder = os.path.join(_REPO, "benchmarks")
    scripts = sorted(f for f in os.listdir(folder) if f.startswith("bench_") and f.endswith(".py")) if os.path.isdir(folder) else []
    if not scripts:
        raise UsageError(f"no benchmarks/bench_*.py scripts in {_REPO} (benchmarks run from a checkout of ppl_bmc)")
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
        note(f"running {' '.join(cmd[1:])}")
        rc = subprocess.call(cmd, cwd=_REPO)
        if rc:
            warn(f"{script} exited with status {rc}")
            status = 1
    return status


def version_command(args) -> int:
    import arviz
    import jax
    import numpyro

    import ppl_bmc

    print(f"ppl_bmc {ppl_bmc.__version__}; jax {jax.__version__} ({jax.default_backend()}); "
          f"numpyro {numpyro.__version__}; arviz {arviz.__version__}")
    return 0


def toy_flux_command(args) -> int:
    import jax
    import numpy as np

    from ppl_bmc import toy

    thetas = [math.pi * t for t in args.thetas_over_pi]
    flux = toy.flux(args.node, thetas, key=jax.random.key(args.seed), n_particles=args.n_particles, n_steps=args.n_steps)
    for t, f in zip(args.thetas_over_pi, np.asarray(flux)):
        print(f"theta = {t:+.4f} pi  flux = {f:.5f}")
    return 0
