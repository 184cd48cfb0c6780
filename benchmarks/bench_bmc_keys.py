"""Benchmark: does the BMC likelihood's key move the hidden-void posterior?  The Laplace
posterior mean with BMC (two likelihood keys) against the quadrature's, in posterior sd.

The hidden-void model (models/hidden_void.py) on a ``grid × grid`` voxel grid and one simulated
data set.  The reference is the exact straight-ray quadrature: its mode θ_q (SVI, then Newton)
and Hessian H of the potential U_q (Laplace approximation; posterior sd of each voxel's
log-density from its draws).  BMC at the model's default particle budget
(:func:`ppl_bmc.particle_budget`, MC error ≤ 0.3 Poisson sd per bin at the prior mean) changes
the potential to U_b; its mode — the Laplace posterior mean — moves by the Newton step
Δθ = −H⁻¹ (∇U_b − ∇U_q)(θ_q) (linear response: exact to first order in the MC error, one BMC
gradient per key instead of an SVI run).

Printed: the budget, the per-bin MC error of the expected counts at the quadrature mode (RMS and
worst bin, in Poisson sd, 8 keys), the RMS over the pyramid's voxels of the shift between two
BMC keys and of each from the quadrature, in posterior sd, and the wall times.

``--nuts N``: also NUTS (2 chains × N draws after N warmup, the same sampler key for every run,
started at the quadrature Laplace mode with its covariance as mass matrix) with the quadrature
and with BMC at the two keys; the posterior means' RMS shifts in posterior sd (the
quadrature run's sd), next to the shift that NUTS's own Monte-Carlo error alone would give
(√(Σ se²) from each voxel's bulk ESS), so the likelihood key's share can be read off.

``--reweight N``: the posterior means under BMC at the two keys from NUTS draws of the quadrature
posterior (2 chains × N draws after N warmup, diagonal mass matrix adapted) reweighted by
exp(−(U_b − U_q)) per draw: self-normalised importance sampling from the quadrature posterior to
each BMC posterior (consistent, bias O(1/draws); one BMC potential per draw and key, no BMC
gradient), its weight ESS printed.  Both keys reweight the same draws, so their difference
carries little of NUTS's own error; the shift that error alone would give is estimated by a
bootstrap over blocks of consecutive draws.

Run: ``python benchmarks/bench_bmc_keys.py`` (``--grid 8``, ``--nuts 1000``, ``--reweight 1000``,
``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import ppl_bmc
from ppl_bmc import infer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models"))
import hidden_void as hv  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3000, help="SVI steps of each MAP")
    parser.add_argument("--nuts", type=int, default=0, help="also NUTS with this many warmup and draws per chain")
    parser.add_argument("--reweight", type=int, default=0,
                        help="also quadrature NUTS (this many warmup and draws per chain) reweighted to each BMC key")
    parser.add_argument("--quick", action="store_true", help="4 × 4 grid, 300 steps (smoke run)")
    args = parser.parse_args(argv)
    grid, steps = (4, 300) if args.quick else (args.grid, args.steps)
    print(f"devices: {jax.devices()}; hidden void on {grid}×{grid}; quadrature mode by {steps} Adam + Newton steps")
    data, _ = hv.simulate({}, key=jax.random.key(0))
    inside = hv.pyramid_mask(hv._cfg(), grid)

    t0 = time.perf_counter()
    cfg_q = {"method": "quadrature"}
    model, kw = hv.build(cfg_q, data, key=jax.random.key(1), grid=grid)
    lap = infer.laplace(model, rng_key=jax.random.key(2), num_samples=2000, num_steps=steps, learning_rate=0.05,
                        newton_steps=10, **kw)
    sd = np.asarray(lap.samples["log_density"]).std(0)
    t_q = time.perf_counter() - t0

    cfg_b = {"method": "bmc"}
    t0 = time.perf_counter()
    n = hv.n_particles(hv._cfg(cfg_b), grid, jax.random.key(11))
    t_budget = time.perf_counter() - t0
    scene, dets = hv.scene({}, grid), hv.detectors()
    mode_q0 = np.log(hv.DEFAULTS["density"]) + hv.DEFAULTS["sd_log"] * np.asarray(
        ppl_bmc.nppl.GMRF((grid, grid), hv.DEFAULTS["length_voxels"]).transform(lap.mode["log_density_white"]))
    rho = jnp.exp(jnp.asarray(mode_q0, jnp.float32))
    quad = np.asarray(ppl_bmc.expected_counts(scene, rho, dets, method="quadrature"), dtype=float)
    est = np.stack([np.asarray(ppl_bmc.expected_counts(scene, rho, dets, method=ppl_bmc.BMC(jax.random.key(50 + i), n)),
                               dtype=float) for i in range(8)])
    err = (est - quad[None]) / np.sqrt(quad[None])
    per_bin = np.sqrt(np.mean(err**2, axis=0))
    print(f"particle budget: {n} particles per bin ({t_budget:.1f} s); MC error at the quadrature mode over 8 keys: "
          f"RMS {np.sqrt(np.mean(per_bin**2)):.3f}, worst bin {per_bin.max():.3f} Poisson sd")

    from numpyro.infer.util import initialize_model, init_to_value
    from jax.flatten_util import ravel_pytree

    def gradient(model, kw):
        info = initialize_model(jax.random.key(0), model, init_strategy=init_to_value(values=lap.map.params),
                                model_kwargs=kw)
        flat, unravel = ravel_pytree(lap.mode)
        return np.asarray(jax.grad(lambda f: info.potential_fn(unravel(f)))(flat), dtype=float), unravel, flat

    model, kw = hv.build(cfg_q, data, key=jax.random.key(1), grid=grid)
    g_q, unravel, flat = gradient(model, kw)
    gm = ppl_bmc.nppl.GMRF((grid, grid), hv.DEFAULTS["length_voxels"])
    modes, times = [], []
    for k in (21, 22):
        t0 = time.perf_counter()
        model, kw = hv.build({"method": "bmc", "n_particles": n}, data, key=jax.random.key(k), grid=grid)
        g_b, _, _ = gradient(model, kw)
        white = unravel(jnp.asarray(flat - np.linalg.solve(lap.hessian, g_b - g_q), flat.dtype))["log_density_white"]
        modes.append(np.log(hv.DEFAULTS["density"]) + hv.DEFAULTS["sd_log"] * np.asarray(gm.transform(white)))
        times.append(time.perf_counter() - t0)
    mode_q = np.log(hv.DEFAULTS["density"]) + hv.DEFAULTS["sd_log"] * np.asarray(
        gm.transform(lap.mode["log_density_white"]))

    def rms(a, b):
        return float(np.sqrt(np.mean(((a - b) / sd)[inside] ** 2)))

    print(f"quadrature Laplace: {t_q:.1f} s; posterior sd of log-density inside the pyramid "
          f"{sd[inside].min():.3f}–{sd[inside].max():.3f}")
    print(f"BMC gradient at the quadrature mode ({n} particles, incl. compilation): {times[0]:.1f} s and "
          f"{times[1]:.1f} s; |∇U_q| = {np.linalg.norm(g_q):.2e} at the quadrature point (subtracted)")
    out = {"n_particles": n, "bin_error_rms": float(np.sqrt(np.mean(per_bin**2))), "bin_error_max": float(per_bin.max()),
           "shift_keys": rms(modes[0], modes[1]), "shift_quadrature": max(rms(m, mode_q) for m in modes)}
    print(f"mode shift between the two BMC keys: {out['shift_keys']:.3f} posterior sd (RMS over "
          f"{int(inside.sum())} voxels; want <= 0.1)")
    print(f"mode shift BMC - quadrature: {rms(modes[0], mode_q):.3f} and {rms(modes[1], mode_q):.3f} posterior sd "
          f"(want <= 0.2)")
    if args.nuts:
        out.update(nuts_shifts(data, grid, n, inside, lap, 20 if args.quick else args.nuts))
    if args.reweight:
        out.update(reweighted_shifts(data, grid, n, inside, lap, 50 if args.quick else args.reweight))
    return out


def reweighted_shifts(data, grid, n, inside, lap, draws, boot=400):
    """Posterior means of the log-density under BMC at keys 21 and 22 by importance-reweighting
    NUTS draws of the quadrature posterior; their RMS shifts (between keys, and from the
    quadrature's mean) in the quadrature's posterior sd, each next to the RMS shift that NUTS's
    own error alone would give (each voxel's block-bootstrap standard error, RMS over voxels)."""
    from numpyro.infer import init_to_value
    from numpyro.infer.util import initialize_model

    t0 = time.perf_counter()
    model, kw = hv.build({"method": "quadrature"}, data, key=jax.random.key(1), grid=grid)
    fit = infer.run_nuts(model, rng_key=jax.random.key(7), num_warmup=draws, num_samples=draws, num_chains=2,
                         target_accept_prob=0.9, init_strategy=init_to_value(values=lap.map.params), **kw)
    white = np.asarray(fit.z["log_density_white"]).reshape((-1, grid, grid))  # chains in order
    field = np.asarray(fit.samples["log_density"]).reshape((-1, grid, grid))
    steps = float(np.mean(fit.stats["num_steps"]))
    print(f"quadrature NUTS: {time.perf_counter() - t0:.0f} s, 2 × {draws} draws, "
          f"{int(np.sum(fit.stats['diverging']))} divergences, {steps:.0f} leapfrog steps per draw")

    def potentials(cfg, key):
        model, kw = hv.build(cfg, data, key=jax.random.key(key), grid=grid)
        info = initialize_model(jax.random.key(0), model, init_strategy=init_to_value(values=lap.map.params),
                                model_kwargs=kw)
        pe = jax.jit(jax.vmap(lambda w: info.potential_fn({"log_density_white": w})))
        z = jnp.asarray(white, jnp.float32)
        return np.concatenate([np.asarray(pe(z[i:i + 16]), dtype=float) for i in range(0, len(z), 16)])

    t0 = time.perf_counter()
    u_q = potentials({"method": "quadrature"}, 1)
    means, ess = {"quadrature": field.mean(0)}, {}
    weights = {"quadrature": np.full(len(field), 1.0 / len(field))}
    for k in (21, 22):
        log_w = -(potentials({"method": "bmc", "n_particles": n}, k) - u_q)
        w = np.exp(log_w - log_w.max())
        weights[k] = w / w.sum()
        means[k] = np.tensordot(weights[k], field, axes=1)
        ess[k] = 1.0 / np.sum(weights[k] ** 2)
    sd = field.std(0)
    print(f"BMC potentials at {len(field)} draws × 2 keys ({n} particles per bin): {time.perf_counter() - t0:.0f} s; "
          f"weight ESS {ess[21]:.0f} and {ess[22]:.0f} of {len(field)}")
    rng = np.random.default_rng(0)
    blocks = int(np.clip(len(field) // 30, 4, 20))  # blocks of ≥ 30 draws: longer than NUTS's autocorrelation
    blocks -= blocks % 2  # whole blocks within each of the two chains
    edges = np.linspace(0, len(field), blocks + 1).astype(int)

    def shift(a, b):
        observed = np.sqrt(np.mean(((means[a] - means[b]) / sd)[inside] ** 2))
        reps = []
        for _ in range(boot):  # resample blocks of consecutive draws (autocorrelation kept)
            pick = np.concatenate([np.arange(edges[j], edges[j + 1]) for j in rng.integers(0, blocks, blocks)])
            mean = lambda key: np.tensordot(weights[key][pick] / weights[key][pick].sum(), field[pick], axes=1)
            reps.append((mean(a) - mean(b)) / sd)
        noise = np.sqrt(np.mean(np.var(np.asarray(reps), axis=0)[inside]))
        print(f"reweighted posterior-mean shift {a} - {b}: {observed:.3f} posterior sd RMS over {int(inside.sum())} "
              f"voxels (NUTS's own error alone: {noise:.3f}; key share ≈ {np.sqrt(max(observed**2 - noise**2, 0.0)):.3f})")
        return float(observed), float(noise)

    out = {"reweight_ess": (float(ess[21]), float(ess[22]))}
    out["reweight_shift_keys"] = shift(21, 22)
    for k in (21, 22):
        out[f"reweight_shift_quadrature_{k}"] = shift(k, "quadrature")
    return out


def nuts_shifts(data, grid, n, inside, lap, draws):
    """NUTS posterior means of the log-density with the quadrature and with BMC at keys 21 and 22
    (the same sampler key for all three), their RMS shifts in posterior sd, and the RMS shift
    NUTS's own Monte-Carlo error would give alone.

    Every run starts at the quadrature Laplace mode with the Laplace covariance as its (dense,
    fixed) inverse mass matrix and adapts only the step size: the posterior is narrow (log-density
    sd ~0.01-0.05), and a mass matrix learnt from scratch costs ~1000 leapfrog steps per warmup
    iteration, hours with a BMC gradient on this CPU.
    """
    from numpyro.diagnostics import effective_sample_size
    from numpyro.infer import MCMC, NUTS, init_to_value

    gm = ppl_bmc.nppl.GMRF((grid, grid), hv.DEFAULTS["length_voxels"])
    runs = {}
    for name, cfg, key in (("quadrature", {"method": "quadrature"}, 1), ("bmc21", {"method": "bmc", "n_particles": n}, 21),
                           ("bmc22", {"method": "bmc", "n_particles": n}, 22)):
        t0 = time.perf_counter()
        model, kw = hv.build(cfg, data, key=jax.random.key(key), grid=grid)
        kernel = NUTS(model, dense_mass=True, inverse_mass_matrix=jnp.asarray(lap.cov), adapt_mass_matrix=False,
                      init_strategy=init_to_value(values=lap.map.params))
        mcmc = MCMC(kernel, num_warmup=draws, num_samples=draws, num_chains=2, chain_method="sequential",
                    progress_bar=False)
        mcmc.run(jax.random.key(7), extra_fields=("diverging", "num_steps"), **kw)
        white = np.asarray(mcmc.get_samples(group_by_chain=True)["log_density_white"])
        post = np.log(hv.DEFAULTS["density"]) + hv.DEFAULTS["sd_log"] * np.asarray(
            jax.vmap(jax.vmap(gm.transform))(jnp.asarray(white)))
        ess = np.asarray(effective_sample_size(post))
        flat = post.reshape((-1,) + post.shape[2:])
        runs[name] = (flat.mean(0), flat.std(0), ess)
        extra = mcmc.get_extra_fields()
        print(f"NUTS {name}: {time.perf_counter() - t0:.0f} s, 2 × {draws} draws, "
              f"{int(np.sum(extra['diverging']))} divergences, {np.mean(extra['num_steps']):.1f} leapfrog steps per draw, "
              f"bulk ESS inside {ess[inside].min():.0f}-{ess[inside].max():.0f}")
    sd = runs["quadrature"][1]

    def shift(a, b):
        (ma, sa, ea), (mb, sb, eb) = runs[a], runs[b]
        observed = float(np.sqrt(np.mean(((ma - mb) / sd)[inside] ** 2)))
        noise = float(np.sqrt(np.mean(((sa**2 / ea + sb**2 / eb) / sd**2)[inside])))
        print(f"NUTS posterior-mean shift {a} - {b}: {observed:.3f} posterior sd RMS over voxels "
              f"(NUTS's own error alone: {noise:.3f}; key share ≈ {np.sqrt(max(observed**2 - noise**2, 0.0)):.3f})")
        return observed, noise

    out = {}
    out["nuts_shift_keys"], out["nuts_noise_keys"] = shift("bmc21", "bmc22")
    for k in ("bmc21", "bmc22"):
        out[f"nuts_shift_quadrature_{k}"], out[f"nuts_noise_quadrature_{k}"] = shift(k, "quadrature")
    return out


if __name__ == "__main__":
    main()
