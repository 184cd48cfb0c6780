"""Benchmark of BMC through a scene of several materials (a Composition) against one material.

A 2-D 16 × 16 voxel block (densities 2000-2800 kg/m³) seen by one detector in 24 bins:
``expected_counts`` with BMC, forward and value+gradient (replay adjoint) with respect to every
parameter, for the plain standard-rock scene and the same densities split by mass between
standard rock and water (a Composition, fraction 0.7 of rock in every voxel), without and with
multiple scattering, and in PUMAS's mixed mode (straight lines; a step per hard event, each
walking the line's pieces in every material).  Prints particle-steps per second (total and per
CPU core; the mixed mode's steps are its event steps, the bound that ``expected_counts`` walks)
and the cost of the second material.

Run: ``python benchmarks/bench_composition.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

import ppl_bmc
from ppl_bmc import BMC, Detector, Scene
from ppl_bmc.geometry import Composition, VoxelGrid
from ppl_bmc.detectors import check_detectors
from ppl_bmc.detectors import readings
from ppl_bmc.likelihood import _check_steps, _mixed_events


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
    parser.add_argument("--n-particles", type=int, default=2000, help="particles per bin")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.n_particles, args.repeats = 50, 1
    grid = VoxelGrid((-100.0, 0.0), (100.0, 100.0), (16, 16))
    rho = jnp.asarray(np.random.default_rng(0).uniform(2000.0, 2800.0, grid.shape), dtype=jnp.float32)
    frac = jnp.full(grid.shape, 0.7, jnp.float32)
    dets = [Detector((0.0, 0.0), np.linspace(-60, 60, 25))]
    cores = os.cpu_count() or 1
    print(f"ppl_bmc {ppl_bmc.__version__}, jax {jax.__version__}, backend {jax.default_backend()}, {cores} CPU core(s); "
          f"16 x 16 voxels, 24 bins x {args.n_particles} particles")
    print(f"{'scene':>12}{'physics':>8}{'scatter':>8}{'n_steps':>8}{'fwd ms':>9}{'fwd steps/s':>13}{'per core':>10}{'grad ms':>9}"
          f"{'grad steps/s':>14}")
    rows = {}
    for physics, scattering in (("csda", False), ("csda", True), ("mixed", False)):
        for name in ("rock", "rock+water"):
            if name == "rock":
                scene, params = Scene(grid, step_m=8.0, scattering=scattering, physics=physics), rho
            else:
                comp = Composition(("standard_rock", "water"), grid, density=grid)
                scene, params = Scene(comp, step_m=8.0, scattering=scattering, physics=physics), (rho, (frac,))
            n_steps = _check_steps(scene, check_detectors(dets, 2), None)  # the default walk length
            method = BMC(jax.random.key(0), n_particles=args.n_particles, n_steps=n_steps)
            if physics == "mixed":  # expected_counts walks up to this many event steps
                n_steps = _mixed_events(scene, check_detectors(dets, 2), readings(dets))
            f = lambda q: jnp.sum(jnp.log(ppl_bmc.expected_counts(scene, q, dets, method=method)))
            fwd, grad = jax.jit(f), jax.jit(jax.value_and_grad(f))
            t_f, t_g = median_time(fwd, params, args.repeats), median_time(grad, params, args.repeats)
            work = 24 * args.n_particles * n_steps
            rows[(name, physics, scattering)] = (t_f, t_g)
            print(f"{name:>12}{physics:>8}{str(scattering):>8}{n_steps:>8}{1e3 * t_f:9.1f}{work / t_f:13.3g}{work / t_f / cores:10.3g}"
                  f"{1e3 * t_g:9.1f}{work / t_g:14.3g}")
    for physics, scattering in (("csda", False), ("csda", True), ("mixed", False)):
        (f1, g1), (f2, g2) = rows[("rock", physics, scattering)], rows[("rock+water", physics, scattering)]
        print(f"second material ({physics}, scattering={scattering}): forward x{f2 / f1:.2f}, gradient x{g2 / g1:.2f}")


if __name__ == "__main__":
    main()
