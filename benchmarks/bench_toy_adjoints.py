"""Benchmark of the paper's toy: forward and gradient time per adjoint, memory against steps.

Prints
1. forward time, gradient time and their ratio for each adjoint strategy
   (``toy.flux`` over the paper's three readings, default 1e5 particles, 2 steps);
2. the peak memory of one gradient against ``n_steps`` in {16, 64, 256, 1024}, from XLA's
   compiled memory analysis (arguments + outputs + temporaries, the buffer plan of the whole
   computation), and the ratio to 16 steps;
3. particle-steps per second of the replay gradient at each ``n_steps``.

Run: ``python benchmarks/bench_toy_adjoints.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp

import ppl_bmc
from ppl_bmc import toy

ADJOINTS = {
    "AutodiffAdjoint": ppl_bmc.AutodiffAdjoint(),
    "ForwardSensitivity": ppl_bmc.ForwardSensitivity(),
    "ReplayAdjoint": ppl_bmc.ReplayAdjoint(),
}
MIB = 2.0**20


def functions(n_particles, n_steps, adjoint):
    key = jax.random.key(0)
    observed = jnp.array(toy.PAPER_OBSERVED)

    def forward(node):
        return toy.flux(node, toy.PAPER_THETAS, key=key, n_particles=n_particles, n_steps=n_steps, adjoint=adjoint)

    def loglik(node):
        return -500.0 * jnp.sum((observed - forward(node)) ** 2)

    return jax.jit(forward), jax.jit(jax.grad(loglik))


def median_time(fn, arg, repeats):
    jax.block_until_ready(fn(arg))  # compile and warm up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(arg))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def peak_bytes(fn, arg):
    stats = fn.lower(arg).compile().memory_analysis()
    if stats is None:
        return float("nan")
    return stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-particles", type=int, default=100_000, help="particles per reading for timings")
    parser.add_argument("--memory-particles", type=int, default=10_000, help="particles per reading for memory")
    parser.add_argument("--steps", type=int, nargs="+", default=[16, 64, 256, 1024])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    args = parser.parse_args(argv)
    if args.quick:
        args.n_particles, args.memory_particles, args.steps, args.repeats = 2_000, 500, [16, 64], 2

    node = jnp.array(toy.PAPER_START, dtype=jnp.result_type(float))
    n_read = len(toy.PAPER_THETAS)
    print(f"ppl_bmc {ppl_bmc.__version__}, jax {jax.__version__}, backend {jax.default_backend()} "
          f"({jax.devices()[0].device_kind}), dtype {node.dtype}, {jax.local_device_count()} device(s)")

    print(f"\n1. toy.flux, {n_read} readings x {args.n_particles} particles, 2 steps (median of {args.repeats})")
    print(f"{'adjoint':<20}{'forward ms':>12}{'gradient ms':>13}{'grad/fwd':>10}")
    for name, adjoint in ADJOINTS.items():
        fwd, grad = functions(args.n_particles, 2, adjoint)
        t_f, t_g = median_time(fwd, node, args.repeats), median_time(grad, node, args.repeats)
        print(f"{name:<20}{t_f * 1e3:>12.2f}{t_g * 1e3:>13.2f}{t_g / t_f:>10.2f}")

    print(f"\n2. peak memory of one gradient (XLA buffer plan), {n_read} x {args.memory_particles} particles")
    print(f"{'adjoint':<20}" + "".join(f"{f'{s} steps MiB':>16}" for s in args.steps) + f"{'max/first':>11}")
    for name, adjoint in ADJOINTS.items():
        sizes = [peak_bytes(functions(args.memory_particles, s, adjoint)[1], node) for s in args.steps]
        print(f"{name:<20}" + "".join(f"{b / MIB:>16.2f}" for b in sizes) + f"{sizes[-1] / sizes[0]:>11.2f}")

    print(f"\n3. ReplayAdjoint gradient, {n_read} x {args.memory_particles} particles")
    print(f"{'n_steps':>8}{'gradient ms':>13}{'particle-steps/s':>18}{'forward ms':>12}{'grad/fwd':>10}")
    for s in args.steps:
        fwd, grad = functions(args.memory_particles, s, ADJOINTS["ReplayAdjoint"])
        t_f, t_g = median_time(fwd, node, args.repeats), median_time(grad, node, args.repeats)
        rate = n_read * args.memory_particles * s / t_g
        print(f"{s:>8}{t_g * 1e3:>13.2f}{rate:>18.3g}{t_f * 1e3:>12.2f}{t_g / t_f:>10.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
