"""A hidden void in a limestone pyramid, found from muon counts (2-D cross-section).

The pyramid (base 200 m, height 130 m, bulk density 2600 kg/m³, limestone energy loss) hides
a 10 m × 5 m void.  Three detectors in galleries at the base (z = 0) count muons in 24 bins of
5° from −60° to +60° with a 5° out-of-plane acceptance, 1 m² and 30 days each.  The data are
Poisson counts drawn from the exact straight-ray (quadrature) expectation of the *true*
geometry on a fine 0.5 m grid.  The model infers the log-density on a coarse voxel grid filling
the pyramid, with a Gaussian-Markov-random-field smoothness prior around log(2600 kg/m³).

Likelihood: ``method="quadrature"`` by default (exact straight rays, no Monte-Carlo noise,
~2 ms per gradient on a 16 × 16 grid), which is what makes NUTS on 256 voxels take minutes on
a laptop CPU.  ``method="bmc"`` draws ``n_particles`` per bin; 0 (the default) lets
:func:`ppl_bmc.particle_budget` pick the fewest that keep every bin's Monte-Carlo error below
``mc_target`` = 0.1 of its Poisson sd at the prior-mean density: at 0.3 (the package default) the
posterior mean still moves by ≈ 0.2 posterior sd between likelihood keys, at 0.1 by less than 0.1
(``benchmarks/bench_bmc_keys.py``; ``benchmarks/bench_bmc_precision.py`` for the error itself).
``devices`` splits the BMC likelihood's bins over devices (``"all"``: every device of every host
in a several-host ``ppl-bmc fit``; :mod:`ppl_bmc.transport.sharding`).

``python models/hidden_void.py --help``.  The CLI protocol (DEFAULTS, simulate, build,
OBSERVED, VAR_NAMES, MAPS) lets ``ppl-bmc simulate/fit/summarize`` drive it too.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from functools import lru_cache

import jax
import jax.numpy as jnp
import numpy as np

import ppl_bmc
from ppl_bmc import infer, nppl
from ppl_bmc.geometry import HeightMap, Scene, VoxelGrid

DAY = 86400.0
DEFAULTS = {
    "base_m": 200.0,
    "height_m": 130.0,
    "density": 2600.0,  # kg/m³, bulk limestone masonry
    "material": "limestone",
    "void_center_m": [18.0, 52.0],  # (x, z)
    "void_size_m": [10.0, 5.0],
    "detector_x_m": [-30.0, 0.0, 30.0],
    "angle_min_deg": -60.0,
    "angle_max_deg": 60.0,
    "n_bins": 24,
    "width_deg": 5.0,
    "area_m2": 1.0,
    "exposure_days": 30.0,
    "grid": 16,  # voxels per axis of the inference grid
    "sd_log": 0.3,  # prior sd of log-density per voxel
    "length_voxels": 2.0,  # prior correlation length
    "method": "quadrature",
    "n_particles": 0,  # BMC particles per bin; 0: ppl_bmc.particle_budget at the prior mean
    "mc_target": 0.1,  # the budget's largest MC error per bin, in Poisson sd of the bin
    "n_steps": 0,  # 0: the fewest steps that take every ray out of the pyramid
    "devices": 0,  # BMC: split the bins over devices; 0: one, n, or "all" (every host's in a several-host fit)
}
OBSERVED = ("counts",)
VAR_NAMES = ["log_density"]
UNITS = {"log_density": "ln(kg/m³)"}
#: Axis names of the sites in posterior.nc (``counts`` gets ``(detector, bin)`` from its plates).
DIMS = {"log_density": ("z", "x"), "log_density_white": ("z", "x")}
#: Resolution of the true geometry (m).
TRUTH_RESOLUTION_M = 0.5


def _cfg(config=None):
    cfg = dict(DEFAULTS)
    for k, v in (config or {}).items():
        if k not in DEFAULTS:
            raise ValueError(f"unknown hidden_void option {k!r}; valid: {', '.join(sorted(DEFAULTS))}")
        cfg[k] = v
    return cfg


def box(cfg):
    """The pyramid's box ``(lower, upper)`` in metres (x, z)."""
    half = 0.5 * cfg["base_m"]
    return (-half, 0.0), (half, cfg["height_m"])


def detectors(cfg=None):
    """The detectors (:class:`ppl_bmc.Detector`) of the configuration."""
    cfg = _cfg(cfg)
    edges = np.linspace(cfg["angle_min_deg"], cfg["angle_max_deg"], int(cfg["n_bins"]) + 1)
    return tuple(ppl_bmc.Detector((float(x), 0.0), edges, area_m2=cfg["area_m2"], exposure_s=cfg["exposure_days"] * DAY,
                                  width_deg=cfg["width_deg"]) for x in cfg["detector_x_m"])


def scene(cfg=None, grid=None):
    """The inference scene: the pyramid filled by a ``grid × grid`` voxel grid of densities.

    Cached per geometry, so repeated calls return the same object (and reuse compiled code)."""
    cfg = _cfg(cfg)
    return _scene(cfg["base_m"], cfg["height_m"], cfg["material"], int(grid or cfg["grid"]))


@lru_cache(maxsize=16)
def _scene(base_m, height_m, material, n, resolution_m=None):
    """Pyramid scene with ``n × n`` voxels, or voxels of ``resolution_m`` metres when n is None."""
    lower, upper = box({"base_m": base_m, "height_m": height_m})
    if n is None:
        n_x, n_z = (int(round((u - l) / resolution_m)) for l, u in zip(lower, upper))
        voxels = VoxelGrid(lower, upper, (n_z, n_x))
    else:
        voxels = VoxelGrid(lower, upper, (n, n))
    return Scene(HeightMap.pyramid(base_m, height_m, fill=voxels), material=material)


def true_density(cfg=None, resolution_m=TRUTH_RESOLUTION_M):
    """The true geometry on a fine grid: ``(scene, densities (nz, nx) kg/m³)``."""
    cfg = _cfg(cfg)
    sc = _scene(cfg["base_m"], cfg["height_m"], cfg["material"], None, resolution_m)
    fine = sc.field.fill
    xc, zc = fine.centres(0), fine.centres(1)
    (cx, cz), (sx, sz) = cfg["void_center_m"], cfg["void_size_m"]
    void = (np.abs(xc[None, :] - cx) < 0.5 * sx) & (np.abs(zc[:, None] - cz) < 0.5 * sz)
    return sc, np.where(void, 0.0, cfg["density"])


def inside_pyramid(cfg, x, z):
    """Whether points (m) are inside the pyramid (arrays broadcast)."""
    half = 0.5 * cfg["base_m"]
    return z < cfg["height_m"] * (1 - np.abs(x) / half)


def voxel_truth(cfg=None, grid=None, resolution_m=TRUTH_RESOLUTION_M):
    """The true mean density (kg/m³) of the pyramid's part of each inference voxel,
    ``(grid, grid)``, NaN where a voxel holds no pyramid."""
    cfg = _cfg(cfg)
    n = int(grid or cfg["grid"])
    sc, rho = true_density(cfg, resolution_m)
    fine = sc.field.fill
    xc, zc = np.meshgrid(fine.centres(0), fine.centres(1))
    inside = inside_pyramid(cfg, xc, zc)
    (x0, z0), (x1, z1) = box(cfg)
    ix = np.clip(((xc - x0) / (x1 - x0) * n).astype(int), 0, n - 1)
    iz = np.clip(((zc - z0) / (z1 - z0) * n).astype(int), 0, n - 1)
    total, count = np.zeros((n, n)), np.zeros((n, n))
    np.add.at(total, (iz[inside], ix[inside]), rho[inside])
    np.add.at(count, (iz[inside], ix[inside]), 1.0)
    with np.errstate(invalid="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def void_voxel(cfg=None, grid=None):
    """``(iz, ix)`` of the inference voxel holding the void's centre."""
    cfg = _cfg(cfg)
    n = int(grid or cfg["grid"])
    (x0, z0), (x1, z1) = box(cfg)
    cx, cz = cfg["void_center_m"]
    return int((cz - z0) / (z1 - z0) * n), int((cx - x0) / (x1 - x0) * n)


def pyramid_mask(cfg=None, grid=None, min_fraction=0.5):
    """Voxels whose centre lies inside the pyramid and at least ``min_fraction`` of whose
    area does (bool ``(grid, grid)``): where the data can place a void."""
    truth = voxel_truth(cfg, grid)
    cfg = _cfg(cfg)
    n = int(grid or cfg["grid"])
    sc = scene(cfg, n).field.fill
    xc, zc = np.meshgrid(sc.centres(0), sc.centres(1))
    return np.isfinite(truth) & inside_pyramid(cfg, xc, zc - 0.25 * (1 - min_fraction) * sc.voxel_size[1])


def simulate(config=None, *, key):
    """Synthetic data: Poisson counts ``(n_detectors, n_bins)`` drawn from the exact expectation
    of the true geometry.  Returns ``(data, truth)`` dicts of numpy arrays."""
    cfg = _cfg(config)
    sc, rho = true_density(cfg)
    dets = detectors(cfg)
    expected = np.asarray(ppl_bmc.expected_counts(sc, jnp.asarray(rho), dets, method="quadrature"))
    counts = np.asarray(jax.random.poisson(key, jnp.asarray(expected)), dtype=np.int64)
    grid = voxel_truth(cfg)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_grid = np.where(grid > 0, np.log(np.where(grid > 0, grid, 1.0)), np.nan)
    fine = np.where(inside_pyramid(cfg, *np.meshgrid(sc.field.fill.centres(0), sc.field.fill.centres(1))), rho, np.nan)
    truth = {"expected": expected, "density_grid": grid, "log_density": log_grid,
             "density_fine": fine.astype(np.float32), "void_center_m": np.asarray(cfg["void_center_m"]),
             "void_voxel": np.asarray(void_voxel(cfg))}
    return {"counts": counts}, truth


def validate_data(data):
    c = np.asarray(data["counts"])
    if not np.all(np.isfinite(c)) or np.any(c < 0):
        raise ValueError("counts must be finite and >= 0")


def build(config, data, *, key, grid=None):
    """The NumPyro model and its keyword arguments (``counts`` observed)."""
    cfg = _cfg(config)
    n = int(grid or cfg["grid"])
    prior = nppl.log_density_prior((n, n), mean_density=cfg["density"], sd_log=cfg["sd_log"],
                                   length=cfg["length_voxels"])
    # BMC: common random numbers, one fixed key for the whole fit; the quadrature takes no options
    method = cfg["method"]
    if method == "bmc":
        method = ppl_bmc.BMC(key, n_particles=n_particles(cfg, n, key), n_steps=int(cfg["n_steps"]) or None,
                             devices=_devices(cfg["devices"]))
    model = nppl.field_model(scene(cfg, n), detectors(cfg), prior, method=method, record_expected=False)
    counts = None if data is None else jnp.asarray(data["counts"])
    return model, {"counts": counts}


def _devices(value):
    """The ``devices`` option as :class:`ppl_bmc.BMC` takes it (0 → one device)."""
    if value == "all":
        return "all"
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"devices must be 0 (one device), an integer >= 1 or 'all', got {value!r}")
    return value or None


def n_particles(cfg, grid, key):
    """BMC particles per bin: ``cfg["n_particles"]``, or when it is 0 the
    :func:`ppl_bmc.particle_budget` (MC error ≤ ``cfg["mc_target"]`` Poisson sd in every bin) at
    the prior-mean density, from a pilot keyed apart from the fit's ``key``."""
    n = cfg["n_particles"]
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n_particles must be an integer >= 0 (0: the particle budget), got {n!r}")
    if n:
        return int(n)
    sc = scene(cfg, grid)
    n_steps = int(cfg["n_steps"]) or None
    budget = ppl_bmc.particle_budget(sc, np.full(sc.field.fill.shape, float(cfg["density"])), detectors(cfg),
                                     key=jax.random.fold_in(key, 1), method=ppl_bmc.BMC(key, n_steps=n_steps),
                                     target=float(cfg["mc_target"]))
    return budget.n_particles


def find_void(log_density_draws, cfg=None, grid=None):
    """The void's location and significance from log-density draws ``(..., grid, grid)``.

    Location: the voxel (inside the pyramid) with the lowest posterior-mean density.
    Significance: how many posterior standard deviations its log-density lies below the
    median log-density of the pyramid's voxels.  Returns a dict.
    """
    cfg = _cfg(cfg)
    n = int(grid or cfg["grid"])
    draws = np.asarray(log_density_draws).reshape(-1, n, n)
    mask = pyramid_mask(cfg, n)
    mean, sd = draws.mean(0), draws.std(0)
    iz, ix = np.unravel_index(np.argmin(np.where(mask, mean, np.inf)), mean.shape)
    vox = scene(cfg, n).field.fill
    bulk = np.median(mean[mask])
    return {"voxel": (int(iz), int(ix)), "position_m": (float(vox.centres(0)[ix]), float(vox.centres(1)[iz])),
            "deficit_sd": float((bulk - mean[iz, ix]) / max(sd[iz, ix], 1e-12)),
            "density": float(np.exp(mean[iz, ix])), "true_voxel": void_voxel(cfg, n)}


def uniform_fit(data, cfg=None, grid=8):
    """How strongly the counts reject a void-free pyramid: fit one uniform density by Newton's
    method on the Poisson deviance D (quadrature), then turn D (≈ χ² with n_bins − 1 degrees of
    freedom) into a one-sided Gaussian significance.  Returns a dict."""
    from scipy import stats

    cfg = _cfg(cfg)
    sc, dets = scene(cfg, grid), detectors(cfg)
    n = jnp.asarray(data["counts"], jnp.float32)

    def deviance(log_rho):
        mu = ppl_bmc.expected_counts(sc, jnp.full((grid, grid), jnp.exp(log_rho)), dets, method="quadrature")
        return 2.0 * jnp.sum(jnp.where(n > 0, n * jnp.log(jnp.where(n > 0, n, 1.0) / mu), 0.0) - (n - mu))

    grad, hess = jax.jit(jax.grad(deviance)), jax.jit(jax.grad(jax.grad(deviance)))
    x = jnp.asarray(math.log(cfg["density"]), jnp.float32)
    for _ in range(12):
        x = x - grad(x) / hess(x)
    d = float(deviance(x))
    dof = int(np.asarray(data["counts"]).size) - 1
    p = float(stats.chi2.sf(d, dof))
    z = float(stats.norm.isf(p)) if p > 0 else math.inf
    return {"density": float(jnp.exp(x)), "deviance": d, "dof": dof, "p_value": p, "significance_sigma": z}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=int, default=16, help="NUTS grid (voxels per axis)")
    parser.add_argument("--map-grid", type=int, default=32, help="MAP grid (voxels per axis)")
    parser.add_argument("--exposure-days", type=float, default=DEFAULTS["exposure_days"])
    parser.add_argument("--method", choices=("quadrature", "bmc"), default="quadrature")
    parser.add_argument("--n-particles", type=int, default=DEFAULTS["n_particles"])
    parser.add_argument("--num-warmup", type=int, default=500)
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--num-chains", type=int, default=2)
    parser.add_argument("--map-steps", type=int, default=3000)
    parser.add_argument("--skip-nuts", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join("results", "hidden_void"))
    parser.add_argument("--progress-bar", action="store_true")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import numpyro

    numpyro.set_host_device_count(max(args.num_chains, 1))
    cfg = _cfg({"exposure_days": args.exposure_days, "method": args.method, "n_particles": args.n_particles})
    k_data, k_lik, k_map, k_nuts = jax.random.split(jax.random.key(args.seed), 4)
    data, truth = simulate(cfg, key=k_data)
    print(f"ppl_bmc {ppl_bmc.__version__}, jax {jax.__version__} on {jax.default_backend()}")
    print(f"counts per bin: {data['counts'].min()}..{data['counts'].max()} (total {data['counts'].sum()}); "
          f"true void at {tuple(cfg['void_center_m'])} m")
    uni = uniform_fit(data, cfg)
    sig = "> 37" if math.isinf(uni["significance_sigma"]) else f"{uni['significance_sigma']:.1f}"
    print(f"best uniform pyramid: {uni['density']:.0f} kg/m³, deviance {uni['deviance']:.0f} for {uni['dof']} "
          f"degrees of freedom: the counts reject a void-free uniform pyramid at {sig} sigma")

    t0 = time.perf_counter()
    model, kw = build(cfg, data, key=k_lik, grid=args.map_grid)
    fit = infer.fit_map(model, rng_key=k_map, num_steps=args.map_steps, learning_rate=0.05, **kw)
    found = find_void(map_log_density(fit, cfg, args.map_grid), cfg, args.map_grid)
    print(f"MAP on {args.map_grid}×{args.map_grid} ({time.perf_counter() - t0:.1f} s, converged={fit.converged}): "
          f"lowest density {found['density']:.0f} kg/m³ in voxel {found['voxel']} at {found['position_m']} m; "
          f"void's voxel {found['true_voxel']}")
    if args.skip_nuts:
        return 0

    t0 = time.perf_counter()
    model, kw = build(cfg, data, key=k_lik, grid=args.grid)
    mcmc = infer.run_nuts(model, rng_key=k_nuts, num_warmup=args.num_warmup, num_samples=args.num_samples,
                          num_chains=args.num_chains, progress_bar=args.progress_bar, **kw)
    post = mcmc.get_samples(group_by_chain=True)
    found = find_void(post["log_density"], cfg, args.grid)
    idata = infer.to_inference_data(mcmc)
    table = infer.summary(idata, var_names=["log_density"])
    n_div = int(np.asarray(mcmc.get_extra_fields()["diverging"]).sum())
    print(f"NUTS on {args.grid}×{args.grid} ({time.perf_counter() - t0:.1f} s, {args.num_chains} chains × "
          f"{args.num_samples} draws, {n_div} divergences): max r_hat {table['r_hat'].max():.3f}, "
          f"min ess_bulk {table['ess_bulk'].min():.0f}")
    print(f"void: voxel {found['voxel']} at {found['position_m']} m (true voxel {found['true_voxel']}), "
          f"{found['deficit_sd']:.1f} posterior sd below the pyramid's median density")
    os.makedirs(args.out, exist_ok=True)
    infer.to_netcdf(idata, os.path.join(args.out, "posterior.nc"))
    write_maps(post["log_density"], cfg, args.grid, os.path.join(args.out, "maps.png"))
    print(f"wrote {args.out}/posterior.nc and maps.png")
    return 0


def map_log_density(fit, cfg=None, grid=None):
    """log-density field (grid, grid) at the MAP (the white-noise latent mapped through the GMRF)."""
    cfg = _cfg(cfg)
    grid = int(grid or cfg["grid"])
    gm = nppl.GMRF((grid, grid), cfg["length_voxels"])
    return np.log(cfg["density"]) + cfg["sd_log"] * np.asarray(gm.transform(fit.params["log_density_white"]))


def write_maps(log_density_draws, cfg, grid, path):
    """Posterior mean and sd of the density (kg/m³) as a PNG (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ppl_bmc._io import atomic_write

    rho = np.exp(np.asarray(log_density_draws).reshape(-1, grid, grid))
    mask = np.isfinite(voxel_truth(cfg, grid))
    extent = MAPS["log_density"]["extent"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, img, title in ((axes[0], rho.mean(0), "posterior mean density (kg/m³)"),
                           (axes[1], rho.std(0), "posterior sd (kg/m³)")):
        im = ax.imshow(np.where(mask, img, np.nan), origin="lower", extent=extent, aspect="auto")
        ax.set_title(title)
        ax.set_xlabel("x (m)")
        fig.colorbar(im, ax=ax)
    axes[0].set_ylabel("z (m)")
    cx, cz = cfg["void_center_m"]
    sx, sz = cfg["void_size_m"]
    for ax in axes:
        ax.add_patch(plt.Rectangle((cx - sx / 2, cz - sz / 2), sx, sz, fill=False, color="red"))
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=80, format="png"))
    plt.close(fig)


def map_mask(config, shape):
    """Cells of the inference grid ``shape = (grid, grid)`` that hold pyramid (bool): the maps
    leave the others blank."""
    return np.isfinite(voxel_truth(config, shape[-1]))


#: The posterior site drawn as maps by ``ppl-bmc summarize``: density (kg/m³), masked outside the
#: pyramid, with the true void's outline (``density_fine`` of truth.npz, 0.5 m cells over the box).
MAPS = {"log_density": {"extent": [-100.0, 100.0, 0.0, 130.0], "xlabel": "x (m)", "ylabel": "z (m)",
                        "transform": "exp", "label": "density", "unit": "kg/m³", "truth": "density_fine",
                        "mask": map_mask}}


if __name__ == "__main__":
    sys.exit(main())
