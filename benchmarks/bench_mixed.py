"""Benchmark of mixed-mode BMC (stochastic hard events) through a slab, against CSDA BMC.

Standard rock, vertical, GCCLY sky, muons above 1 MeV: ``transmitted_flux(..., method=BMC)``
forward and value+gradient (replay adjoint) with respect to the opacity, for CSDA (4 steps) and
the mixed mode (one step per hard event, up to the package's bound), at 1000 and 3000 m.w.e.
Prints particle-steps per second (total and per CPU core), the mean number of hard events per
muon, the truncated fraction, and the weight's effective sample size per particle,
ESS/N = (Σw)² / (N Σw²), beside the CSDA walk's for the same detector-side energies (nearly 1:
its energy proposal follows the CSDA integrand; the gap is the hard events' noise).

Run: ``python benchmarks/bench_mixed.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time

import jax
import jax.numpy as jnp

import ppl_bmc
from ppl_bmc import BMC, ReplayAdjoint, muography
from ppl_bmc.physics import flux, mixed
from ppl_bmc.physics.constants import MWE
from ppl_bmc.transport import loop
from ppl_bmc.transport.csda import MuonKernel
from ppl_bmc.transport.paths import LineOfSight
from ppl_bmc.transport.stochastic import MixedKernel, events_bound


def median_time(fn, arg, repeats):
    jax.block_until_ready(fn(arg))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(arg))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def weight_statistics(opacity, n_particles, key):
    """(ESS/N of the mixed weights, ESS/N of the CSDA weights of the same detector-side energies,
    mean hard events per muon, truncated fraction)."""
    table = mixed.get("standard_rock")
    sky = flux.get("gccly")
    ctx = {"zenith": jnp.zeros(1), "k_min": jnp.full((1,), 1e-3)}
    streams = loop.Streams(key, 1, n_particles)
    params = jnp.float32(opacity)
    kernel = MixedKernel(LineOfSight(1), table, sky, 1e6, True)
    state, log_w = loop.init(kernel, params, ctx, streams, jnp.float32)
    events = jnp.zeros_like(log_w)
    for k in range(1, events_bound(table, MWE * opacity, 1e-3) + 1):
        before = state.walked
        state, inc = loop.step(kernel, state, params, ctx, streams, k, jnp.float32)
        log_w, events = log_w + inc, events + (state.walked != before)
    w = jnp.exp(log_w + loop.final(kernel, state, params, ctx))[0]
    csda = MuonKernel(LineOfSight(4), table.csda, sky, 1e6, True)  # the same init uniforms: the same energies
    w_csda = jnp.exp(loop.run(csda, params, ctx, streams, 4, jnp.float32)[1])[0]
    ess = lambda v: float(jnp.sum(v) ** 2 / (v.size * jnp.sum(v**2)))
    return ess(w), ess(w_csda), float(jnp.mean(events)), float(jnp.mean(state.end[0] == 0))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-particles", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.n_particles, args.repeats = 2000, 1
    cores = os.cpu_count() or 1
    print(f"ppl_bmc {ppl_bmc.__version__}, jax {jax.__version__}, backend {jax.default_backend()}, {cores} CPU core(s); "
          f"slab of standard rock, 0°, {args.n_particles} particles")
    print(f"{'m.w.e.':>7}{'physics':>8}{'n_steps':>8}{'fwd ms':>9}{'fwd steps/s':>13}{'per core':>10}{'grad ms':>9}"
          f"{'grad steps/s':>14}")
    table = mixed.get("standard_rock")
    for opacity in (1000.0, 3000.0):
        for physics in ("csda", "mixed"):
            n_steps = 4 if physics == "csda" else events_bound(table, MWE * opacity, 1e-3)
            est = BMC(jax.random.key(0), args.n_particles, adjoint=ReplayAdjoint())
            f = jax.jit(lambda x, est=est, physics=physics: muography.transmitted_flux(x, 0.0, method=est,
                                                                                       physics=physics))
            g = jax.jit(jax.value_and_grad(lambda x, est=est, physics=physics: muography.transmitted_flux(
                x, 0.0, method=est, physics=physics)))
            x = jnp.float32(opacity)
            tf, tg = median_time(f, x, args.repeats), median_time(g, x, args.repeats)
            steps = args.n_particles * n_steps
            print(f"{opacity:7g}{physics:>8}{n_steps:8d}{1e3 * tf:9.1f}{steps / tf:13.3g}{steps / tf / cores:10.3g}"
                  f"{1e3 * tg:9.1f}{steps / tg:14.3g}")
    print("weights of the mixed walk (one key):")
    for opacity in (1000.0, 3000.0):
        ess, ess_csda, events, truncated = weight_statistics(opacity, args.n_particles, jax.random.key(1))
        print(f"  {opacity:6g} m.w.e.: ESS/N {ess:.3f} (CSDA walk of the same energies {ess_csda:.3f}); hard events "
              f"per muon {events:.2f}; truncated {truncated:.1e}; "
              f"relative sd of the estimate {math.sqrt(1 / (ess * args.n_particles) - 1 / args.n_particles):.1e}")


if __name__ == "__main__":
    main()
