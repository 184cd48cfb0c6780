"""Benchmark: the 3-D volcano survey (models/volcano_3d.py) — value+gradient time of its
log-density with the quadrature and with BMC, and the MAP wall time.

The log-density is the model's potential (GMRF prior over ``grid³`` voxels, telescopes with
background and efficiency, open-sky runs, gravity) in the unconstrained space, as NUTS and the
MAP see it.  Printed per method: the first call (tabulation and compilation) and the mean of
``--repeat`` later calls, in ms.  The BMC variant replaces the quadrature by backward Monte-Carlo
with ``--particles`` per line of sight (replay adjoint).

``--nuts N``: also NUTS on the quadrature model (2 chains, N warmup and N draws each): wall time,
leapfrog steps per draw, divergences, r̂, bulk ESS of the densities and the nuisances, and the time
per effective sample (wall time / the smallest bulk ESS over every latent element);
``--dense-nuisances`` gives the nuisance sites a dense mass-matrix block.

Run: ``python benchmarks/bench_volcano.py`` (``--grid 16``, ``--nuts 500``; ``--quick`` for a smoke
run).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import numpy as np
from jax.flatten_util import ravel_pytree
from numpyro.infer import init_to_median
from numpyro.infer.util import initialize_model

import ppl_bmc
from ppl_bmc import infer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models"))
import volcano_3d as vm  # noqa: E402


def potential_and_grad(model, kw):
    info = initialize_model(jax.random.key(0), model, init_strategy=init_to_median, model_kwargs=kw)
    flat, unravel = ravel_pytree(info.param_info.z)
    return jax.jit(jax.value_and_grad(lambda f: info.potential_fn(unravel(f)))), flat


def timed(fn, x, repeat):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(x))
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(repeat):
        jax.block_until_ready(fn(x))
    return first, (time.perf_counter() - t0) / repeat


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=int, default=16)
    parser.add_argument("--particles", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--map-steps", type=int, default=3000)
    parser.add_argument("--nuts", type=int, default=0, help="also NUTS: this many warmup and draws per chain")
    parser.add_argument("--dense-nuisances", action="store_true",
                        help="NUTS with a dense mass-matrix block over the nuisance sites (diagonal over the voxels)")
    parser.add_argument("--quick", action="store_true", help="a small smoke run (grid 4, few pixels)")
    args = parser.parse_args(argv)
    over = {"grid": args.grid}
    if args.quick:
        over = {"grid": 4, "truth_grid": 8, "n_pixels": 3, "n_stations": 8, "dem_cells": 17, "n_directions": 2}
        args.repeat, args.map_steps, args.particles = 2, 50, 8
    cfg = vm._cfg(over)
    print(f"ppl_bmc {ppl_bmc.__version__}, jax {jax.__version__} on {jax.default_backend()} "
          f"({jax.device_count()} device(s)); volcano grid {cfg['grid']}³, {len(vm.telescopes(cfg))} telescopes × "
          f"{vm.telescopes(cfg)[0].n_bins} lines of sight, {cfg['n_stations']} gravity stations")
    t0 = time.perf_counter()
    data, _ = vm.simulate(cfg, key=jax.random.key(0))
    print(f"simulate (truth {cfg['truth_grid']}³): {time.perf_counter() - t0:.1f} s")
    out = {}
    model, kw = vm.build(cfg, data, key=None)
    vg, x = potential_and_grad(model, kw)
    first, per = timed(vg, x, args.repeat)
    out["quadrature"] = per
    print(f"quadrature value+gradient ({x.size} unconstrained dims): first call {first:.1f} s, then {per * 1e3:.2f} ms")

    # BMC: the same model with the quadrature swapped for backward Monte-Carlo
    import numpyro

    sc, tels, opens, sy = vm.scene(cfg), vm.telescopes(cfg), vm.open_sky(cfg), vm.systematics(cfg)
    method = ppl_bmc.BMC(key=jax.random.key(1), n_particles=args.particles)
    prior = ppl_bmc.nppl.log_density_prior((cfg["grid"],) * 3, mean_density=cfg["density"], sd_log=cfg["sd_log"])

    def bmc_model(counts=None, open_sky_counts=None, gravity=None):
        rho = prior()
        ppl_bmc.nppl.survey_counts(sc, rho, tels, sy, observed=counts, open_sky=opens, open_observed=open_sky_counts,
                                   method=method)
        offset = numpyro.sample("gravity_offset", numpyro.distributions.Normal(0.0, 20.0))
        ppl_bmc.nppl.gravity_site(vm._gravity_survey(cfg, cfg["grid"])(rho) + offset, gravity,
                                  noise_mgal=cfg["gravity_noise_mgal"])

    vg_b, xb = potential_and_grad(bmc_model, kw)
    first, per = timed(vg_b, xb, max(1, args.repeat // 5))
    out["bmc"] = per
    print(f"BMC value+gradient ({args.particles} particles per line of sight): first call {first:.1f} s, "
          f"then {per * 1e3:.1f} ms")

    t0 = time.perf_counter()
    fit = infer.fit_map(model, rng_key=jax.random.key(2), num_steps=args.map_steps, learning_rate=0.05, **kw)
    out["map_s"] = time.perf_counter() - t0
    loc = vm.locate(vm.map_log_density(fit, cfg), cfg)
    print(f"MAP ({args.map_steps} steps, quadrature, converged={fit.converged}): {out['map_s']:.1f} s; conduit {loc['conduit_distance']} and "
          f"low-density zone {loc['zone_distance']} voxel(s) from the true bodies")
    if args.nuts:
        out.update(nuts(model, kw, 20 if args.quick else args.nuts, args.dense_nuisances))
    return out


#: The volcano model's nuisance sites (background and efficiency per telescope, sky normalisation,
#: gravity offset): a dense mass-matrix block over them with ``--dense-nuisances``.
NUISANCES = ("background", "efficiency", "sky_norm", "gravity_offset")


def nuts(model, kw, draws, dense_nuisances=False):
    """NUTS on the quadrature model: time per effective sample (the smallest bulk ESS over every
    latent element, in the unconstrained space NUTS moves in)."""
    from numpyro.diagnostics import effective_sample_size, split_gelman_rubin

    t0 = time.perf_counter()
    dense = [NUISANCES] if dense_nuisances else False
    fit = infer.run_nuts(model, rng_key=jax.random.key(3), num_warmup=draws, num_samples=draws, num_chains=2,
                         dense_mass=dense, **kw)
    wall = time.perf_counter() - t0
    z = {k: np.asarray(v) for k, v in fit.z.items()}
    ess = {k: np.asarray(effective_sample_size(v)).ravel() for k, v in z.items()}
    rhat = max(float(np.max(split_gelman_rubin(v))) for v in z.values())
    low = min(ess, key=lambda k: ess[k].min())
    per = wall / ess[low].min()
    steps = fit.get_extra_fields()["num_steps"]
    print(f"NUTS (quadrature, 2 chains × {draws} warmup + {draws} draws, mass matrix "
          f"{'dense over the nuisances' if dense_nuisances else 'diagonal'}): {wall:.0f} s incl. compilation, "
          f"{steps.mean():.0f} leapfrog steps per draw (max {steps.max()}), {int(fit.stats['diverging'].sum())} divergences, "
          f"max r̂ {rhat:.3f}")
    print("  bulk ESS (min / median per site): " + ", ".join(
        f"{k} {v.min():.0f}/{np.median(v):.0f}" for k, v in ess.items()))
    print(f"  time per effective sample: {per:.2f} s (smallest ESS: {low}, {ess[low].min():.0f})")
    return {"nuts_s": wall, "nuts_s_per_ess": per, "nuts_min_ess": float(ess[low].min()), "nuts_rhat": rhat}


if __name__ == "__main__":
    main()
    sys.exit(0)
