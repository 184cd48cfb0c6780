"""The ``ppl-bmc`` command (thin: argument parsing and printing).

``ppl-bmc version`` prints the versions of the stack; ``ppl-bmc toy-flux`` prints the toy's
BMC flux for a node.  The fuller CLI (simulate, fit, summarize, bench) builds on this module.
"""

from __future__ import annotations

import argparse
import sys


def _version(args) -> int:
    import arviz
    import jax
    import numpyro

    import ppl_bmc

    print(f"ppl_bmc {ppl_bmc.__version__}; jax {jax.__version__} ({jax.default_backend()}); "
          f"numpyro {numpyro.__version__}; arviz {arviz.__version__}")
    return 0


def _toy_flux(args) -> int:
    import math

    import jax
    import numpy as np

    from ppl_bmc import toy

    thetas = [math.pi * t for t in args.thetas_over_pi]
    flux = toy.flux(args.node, thetas, key=jax.random.key(args.seed), n_particles=args.n_particles, n_steps=args.n_steps)
    for t, f in zip(args.thetas_over_pi, np.asarray(flux)):
        print(f"theta = {t:+.4f} pi  flux = {f:.5f}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="ppl-bmc", description="Differentiable backward Monte-Carlo for NumPyro.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("version", help="print the versions of ppl_bmc, jax, numpyro and arviz").set_defaults(func=_version)
    p = sub.add_parser("toy-flux", help="BMC flux of the paper's toy at a node")
    p.add_argument("--node", type=float, nargs=3, default=[0.0, 5.0, 10.0], metavar=("MUX", "MUY", "SIGMA2"))
    p.add_argument("--thetas-over-pi", type=float, nargs="+", default=[0.0, 0.1, -0.08])
    p.add_argument("--n-particles", type=int, default=100_000)
    p.add_argument("--n-steps", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_toy_flux)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ValueError as err:  # bad input: one line, no traceback
        print(f"ppl-bmc: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
