"""Benchmark of BMC precision: Monte-Carlo noise and its cost, plain against improved estimators.

For each case the same front door runs with ``R`` independent keys; the table prints the relative
standard deviation of one estimate (per bin: RMS over bins), the MC error in Poisson sd of the
bin (muography scenes, 30-day exposures), the sd of the total Poisson log-likelihood between keys
(nats), the wall time per estimate (compiled, median) and the efficiency ``1 / (variance × time)``
relative to the plain estimator:

* plain — log-uniform detector energies, independent uniforms (the paper's estimator);
* importance — energies from the straight-line CSDA integrand along each particle's line of sight
  (:class:`ppl_bmc.LineOfSightEnergy`), independent uniforms;
* improved (the default) — importance + Latin-hypercube strata of the initial uniforms.

Cases: the paper's toy (its randomness is all per step: one estimator), a slab at 10, 300 and
3000 m.w.e. (30°), and the hidden-void pyramid (8 × 8 voxels, 3 detectors × 24 bins, uniform
2600 kg/m³, against the quadrature).  Then the particle budget of the hidden-void model
(:func:`ppl_bmc.particle_budget`) and the error it achieves.

Run: ``python benchmarks/bench_bmc_precision.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import ppl_bmc
from ppl_bmc import muography, toy

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models"))
import hidden_void  # noqa: E402

DAY = 86400.0
ESTIMATORS = {
    "plain": dict(energy=ppl_bmc.LogUniformEnergy(), stratified=False),
    "importance": dict(energy=ppl_bmc.LineOfSightEnergy(), stratified=False),
    "improved": dict(energy=ppl_bmc.LineOfSightEnergy(), stratified=True),
}


def replicas(fn, keys):
    """Estimates of ``fn(key)`` over ``keys`` (stacked) and the median wall time of one (compiled)."""
    jax.block_until_ready(fn(keys[0]))  # compile
    out, times = [], []
    for k in keys:
        t0 = time.perf_counter()
        out.append(np.asarray(jax.block_until_ready(fn(k)), dtype=float))
        times.append(time.perf_counter() - t0)
    return np.stack(out), statistics.median(times)


def poisson_loglik(mu, n):
    return np.sum(n * np.log(mu) - mu, axis=tuple(range(1, mu.ndim)))


def row(name, est, seconds, truth=None, data=None):
    """One table row: ``(name, rel sd, MC sd / Poisson sd, sd of ℓ, seconds, variance)``."""
    mean = est.mean(0)
    rel = float(np.sqrt(np.mean((est.std(0, ddof=1) / mean) ** 2)))
    if truth is None:
        return name, rel, float("nan"), float("nan"), seconds, rel**2
    err = est - truth[None]
    poisson = float(np.sqrt(np.mean(err**2 / truth[None])))
    ll = float(np.std(poisson_loglik(est, data), ddof=1))
    return name, rel, poisson, ll, seconds, rel**2


def print_table(title, rows):
    print(f"\n{title}")
    print(f"  {'estimator':11s} {'rel sd/est':>11s} {'MC/Poisson':>11s} {'sd(ℓ) nats':>11s} {'s/est':>8s} "
          f"{'efficiency':>11s}")
    base = rows[0][5] * rows[0][4]
    for name, rel, pois, ll, sec, var in rows:
        eff = base / (var * sec) if var > 0 else float("inf")
        print(f"  {name:11s} {rel:11.2e} {pois:11.3f} {ll:11.3f} {sec:8.3f} {eff:11.3g}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few keys and particles (smoke run)")
    args = parser.parse_args(argv)
    n_keys = 4 if args.quick else 16
    keys = [jax.random.key(1000 + i) for i in range(n_keys)]
    print(f"devices: {jax.devices()}; {n_keys} keys per estimator")

    # the paper's toy: 1e5 particles, its three readings
    est, sec = replicas(lambda k: toy.flux(toy.PAPER_START, toy.PAPER_THETAS, key=k,
                                           n_particles=10_000 if args.quick else 100_000), keys)
    print_table("toy (paper's start node, 3 readings, 1e5 particles; all randomness per step)",
                [row("plain", est, sec)])

    n_slab = 1000
    for opacity in (10.0, 300.0, 3000.0):
        rows = []
        for name, opts in ESTIMATORS.items():
            fn = lambda k, o=opts: muography.transmitted_flux(opacity, 30.0, method=ppl_bmc.BMC(k, n_slab, **o))
            est, sec = replicas(fn, keys)
            rows.append(row(name, est[:, None], sec))
        print_table(f"slab {opacity:g} m.w.e. at 30°, {n_slab} particles", rows)

    grid = 8
    scene, dets = hidden_void.scene({}, grid), hidden_void.detectors()
    rho = jnp.full(scene.field.fill.shape, 2600.0)
    truth = np.asarray(ppl_bmc.expected_counts(scene, rho, dets, method=ppl_bmc.Quadrature(64)), dtype=float)
    data = np.round(truth)
    for n in ((64,) if args.quick else (256, 1024)):
        rows = []
        for name, opts in ESTIMATORS.items():
            fn = lambda k, o=opts: ppl_bmc.expected_counts(scene, rho, dets, method=ppl_bmc.BMC(k, n, **o))
            est, sec = replicas(fn, keys)
            rows.append(row(name, est, sec, truth, data))
        print_table(f"pyramid {grid}×{grid} (3 detectors × 24 bins, 30 days, {truth.min():.0f}–{truth.max():.0f} "
                    f"counts per bin), {n} particles per bin, against the quadrature", rows)

    t0 = time.perf_counter()
    budget = ppl_bmc.particle_budget(scene, rho, dets, key=jax.random.key(7))
    t_budget = time.perf_counter() - t0
    est, sec = replicas(lambda k: ppl_bmc.expected_counts(scene, rho, dets, method=ppl_bmc.BMC(k, budget.n_particles)),
                        keys)
    err = (est - truth[None]) / np.sqrt(truth[None])
    print(f"\nparticle budget of the pyramid (target {budget.target} Poisson sd, pilot 8 × (64 + 256) particles, "
          f"{t_budget:.1f} s): {budget.n_particles} particles per bin; predicted worst bin "
          f"{budget.se_over_poisson.max():.3f}; measured at the budget over {n_keys} keys: RMS {np.sqrt(np.mean(err**2)):.3f}, "
          f"worst bin {np.sqrt(np.mean(err**2, axis=0)).max():.3f} Poisson sd; {sec:.3f} s per estimate")


if __name__ == "__main__":
    main()
