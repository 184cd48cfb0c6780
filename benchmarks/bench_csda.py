"""Benchmark of the backward CSDA muon transport (uniform slab, straight line, no scattering).

Prints particle-steps per second of ``muography.transmitted_flux(method="bmc")`` forward and
with the ReplayAdjoint gradient (d flux / d opacity), per CPU core and in total, and the memory
of one gradient against ``n_steps`` (XLA compiled memory analysis), without and with multiple
scattering.

Run: ``python benchmarks/bench_csda.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp

import ppl_bmc
from ppl_bmc import muography

MIB = float(2**20)


def functions(n_particles, n_steps, scattering):
    key = jax.random.key(0)
    fwd = lambda x: muography.transmitted_flux(x, 30.0, method="bmc", key=key, n_particles=n_particles, n_steps=n_steps,
                                               scattering=scattering)
    return jax.jit(fwd), jax.jit(jax.grad(fwd))


def median_time(fn, arg, repeats):
    jax.block_until_ready(fn(arg))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(arg))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-particles", type=int, default=100_000)
    parser.add_argument("--steps", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.n_particles, args.steps, args.repeats = 2_000, [4, 16], 2
    cores = os.cpu_count() or 1
    opacity = jnp.asarray(300.0, dtype=jnp.result_type(float))
    print(f"ppl_bmc {ppl_bmc.__version__}, jax {jax.__version__}, backend {jax.default_backend()}, "
          f"dtype {opacity.dtype}, {cores} CPU core(s); slab of 300 m.w.e. standard rock at 30°")
    print(f"{'scatter':>8}{'n_steps':>8}{'fwd ms':>10}{'fwd steps/s':>14}{'per core':>11}{'grad ms':>10}{'grad steps/s':>14}"
          f"{'grad/fwd':>10}{'grad MiB':>10}")
    for scattering, n_steps in [(s, n) for s in (False, True) for n in args.steps]:
        fwd, grad = functions(args.n_particles, n_steps, scattering)
        t_f, t_g = median_time(fwd, opacity, args.repeats), median_time(grad, opacity, args.repeats)
        mem = grad.lower(opacity).compile().memory_analysis()
        mib = (mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes) / MIB if mem else float("nan")
        work = args.n_particles * n_steps
        print(f"{'yes' if scattering else 'no':>8}{n_steps:>8}{t_f * 1e3:>10.2f}{work / t_f:>14.3g}{work / t_f / cores:>11.3g}{t_g * 1e3:>10.2f}"
              f"{work / t_g:>14.3g}{t_g / t_f:>10.2f}{mib:>10.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
