"""A 3-D volcano from an elevation raster, three muon telescopes, background, efficiency and gravity.

The volcano (a cone of radius 600 m and height 300 m on a 41 × 41 elevation raster — or any
GeoTIFF given as ``dem``, read through rasterio) has a bulk density of 2000 kg/m³, a dense
vertical conduit (radius 70 m, 2600 kg/m³) under its summit and a low-density zone (a sphere of
radius 70 m, 1300 kg/m³) in its western flank.  Three telescopes (8 × 8 pixels of 5 cm, planes
1 m apart, 90 days) stand at its foot 700 m from the axis at azimuths 0°, 120° and 240°, looking
up the flank 22° above the horizon; each has a background flux floor (soft particles,
accidentals) and an efficiency that the fit infers, with a 5-day open-sky calibration run
pointed at the zenith.  A gravity survey (stations on the flanks, 0.1 mGal noise, an unknown
offset) sees the same densities.

The data are drawn from the exact quadrature expectation of the true geometry on a 32³ grid;
the model infers the log-density on a ``grid³`` voxel grid under the terrain (GMRF prior around
log 2000 kg/m³) with the nuisances as latent sites (:class:`ppl_bmc.nppl.Systematics`).  Set
``model_background = false`` to fit as if there were no background, ``use_gravity = false`` for
muons alone.  ``python models/volcano_3d.py --help``; the CLI protocol lets ``ppl-bmc
simulate/fit/summarize`` drive it.
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
import numpyro
import numpyro.distributions as dist

import ppl_bmc
from ppl_bmc import infer, nppl
from ppl_bmc.geometry import Elevation, HeightMap, Scene, VoxelGrid, read_elevation
from ppl_bmc.gravity import GravitySurvey

DAY = 86400.0
DEFAULTS = {
    "dem": "",  # a GeoTIFF of heights (m, projected CRS); "" → the synthetic cone below
    "radius_m": 600.0,
    "height_m": 300.0,
    "extent_m": 800.0,  # the raster covers [−extent, extent]² around the summit
    "dem_cells": 41,
    "density": 2000.0,  # kg/m³, bulk
    "conduit_radius_m": 70.0,
    "conduit_density": 2600.0,
    "zone_center_m": [-200.0, 0.0, 100.0],
    "zone_radius_m": 70.0,
    "zone_density": 1300.0,
    "telescope_distance_m": 700.0,
    "telescope_azimuths_deg": [0.0, 120.0, 240.0],
    "elevation_deg": 22.0,  # the lowest rays (21.8° below the axis) stay above the horizon
    "n_pixels": 8,
    "pixel_m": 0.05,
    "separation_m": 1.0,
    "exposure_days": 90.0,
    "open_sky_days": 5.0,
    "true_background": [0.004, 0.008, 0.006],  # m⁻² s⁻¹ sr⁻¹
    "true_efficiency": [0.9, 0.8, 0.95],
    "n_stations": 36,
    "gravity_noise_mgal": 0.1,  # total station error (reading, drift, terrain correction)
    "grid": 16,  # voxels per axis of the inference grid
    "sd_log": 0.3,
    "length_voxels": 2.0,
    "model_background": True,
    "use_gravity": True,
    "n_directions": 4,  # quadrature directions per line-of-sight axis
    "truth_grid": 32,  # voxels per axis of the true geometry (a multiple of grid)
}
OBSERVED = ("counts", "open_sky_counts", "gravity")
VAR_NAMES = ["log_density", "background", "efficiency", "sky_norm", "gravity_offset"]
UNITS = {"log_density": "ln(kg/m³)", "background": "m⁻² s⁻¹ sr⁻¹", "gravity_offset": "mGal"}
DIMS = {"log_density": ("z", "y", "x"), "log_density_white": ("z", "y", "x"), "background": ("telescope",),
        "efficiency": ("telescope",)}


def _cfg(config=None):
    cfg = dict(DEFAULTS)
    for k, v in (config or {}).items():
        if k not in DEFAULTS:
            raise ValueError(f"unknown volcano_3d option {k!r}; valid: {', '.join(sorted(DEFAULTS))}")
        cfg[k] = v
    for k in ("telescope_azimuths_deg", "true_background", "true_efficiency"):
        if len(cfg[k]) != len(cfg["telescope_azimuths_deg"]):
            raise ValueError(f"{k} needs one value per telescope ({len(cfg['telescope_azimuths_deg'])})")
    return cfg


def elevation(cfg=None):
    """The elevation grid (:class:`ppl_bmc.geometry.Elevation`, local metres)."""
    cfg = _cfg(cfg)
    return _elevation(cfg["dem"], cfg["radius_m"], cfg["height_m"], cfg["extent_m"], int(cfg["dem_cells"]))


@lru_cache(maxsize=4)
def _elevation(path, radius, height, extent, cells):
    if path:
        e = read_elevation(path)
        i, j = np.unravel_index(np.argmax(e.heights), e.heights.shape)
        return e.shifted((e.x[j], e.y[i], float(e.heights.min())))  # summit above (0, 0), foot at z = 0
    c = np.linspace(-extent, extent, cells)
    gx, gy = np.meshgrid(c, c)
    return Elevation(c, c, height * np.clip(1 - np.hypot(gx, gy) / radius, 0, None) ** 1.3)


def scene(cfg=None, grid=None):
    """The inference scene: the terrain filled by a ``grid³`` voxel grid (cached per geometry)."""
    cfg = _cfg(cfg)
    return _scene(elevation(cfg), int(grid or cfg["grid"]))


@lru_cache(maxsize=8)
def _scene(elev, n):
    hm = elev.height_map(floor_m=float(elev.heights.min()))
    return Scene(HeightMap(hm.lower, hm.upper, hm.knots, hm.heights, VoxelGrid(hm.lower, hm.upper, (n, n, n))))


def telescopes(cfg=None):
    """The telescopes (:class:`ppl_bmc.Telescope`) looking at the summit."""
    cfg = _cfg(cfg)
    e = elevation(cfg)
    out = []
    for az in cfg["telescope_azimuths_deg"]:
        a = math.radians(az)
        x, y = cfg["telescope_distance_m"] * math.cos(a), cfg["telescope_distance_m"] * math.sin(a)
        z = float(e.surface(np.array(x), np.array(y))) + 1.0
        out.append(ppl_bmc.Telescope((x, y, z), (az + 180.0) % 360.0, cfg["elevation_deg"], n_pixels=cfg["n_pixels"],
                                     pixel_m=cfg["pixel_m"], separation_m=cfg["separation_m"],
                                     exposure_s=cfg["exposure_days"] * DAY))
    return tuple(out)


def open_sky(cfg=None):
    """The calibration runs: each telescope at its place, pointed at the zenith."""
    cfg = _cfg(cfg)
    return tuple(ppl_bmc.Telescope(t.position, 0.0, 90.0, n_pixels=t.n_pixels, pixel_m=t.pixel_m,
                                   separation_m=t.separation_m, exposure_s=cfg["open_sky_days"] * DAY)
                 for t in telescopes(cfg))


def stations(cfg=None):
    """Gravity stations (m), ``(n_stations, 3)``: a sunflower pattern over the flanks, 1 m above
    the surface."""
    cfg = _cfg(cfg)
    n = int(cfg["n_stations"])
    k = np.arange(n) + 0.5
    r = 0.85 * cfg["radius_m"] * np.sqrt(k / n)
    phi = k * math.pi * (3 - math.sqrt(5))
    x, y = r * np.cos(phi), r * np.sin(phi)
    return np.stack([x, y, elevation(cfg).surface(x, y) + 1.0], axis=1)


def systematics(cfg=None):
    """Priors of the nuisances (:class:`ppl_bmc.nppl.Systematics`)."""
    cfg = _cfg(cfg)
    # efficiency and sky normalisation: log-normal (Gaussian where MAP, Laplace and NUTS work);
    # the open-sky runs measure only their product, the priors split it
    return nppl.Systematics(
        background=dist.LogNormal(math.log(0.005), 1.0) if cfg["model_background"] else None,
        efficiency=dist.LogNormal(math.log(0.9), 0.1), sky_norm=dist.LogNormal(0.0, 0.05))


def true_density(cfg=None, n=None, *, parts=False):
    """The true geometry on an ``n³`` grid (default ``truth_grid``): ``(scene, densities (n, n, n)
    kg/m³)`` — each voxel the mean over 4³ sub-points of the conduit, the zone and the bulk.
    ``parts=True`` adds the fraction of each voxel's sub-points in the conduit and in the zone."""
    cfg = _cfg(cfg)
    n = int(n or cfg["truth_grid"])
    sc = scene(cfg, n)
    vox = sc.field.fill
    sub = (np.arange(4) + 0.5) / 4
    axes = [np.ravel(lo + (np.arange(k)[:, None] + sub[None, :]) * (hi - lo) / k)
            for lo, hi, k in zip(vox.lower, vox.upper, vox.shape[::-1])]
    z, y, x = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    conduit = np.hypot(x, y) < cfg["conduit_radius_m"]
    cx, cy, cz = cfg["zone_center_m"]
    zone = (x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2 < cfg["zone_radius_m"] ** 2
    rho = np.where(zone, cfg["zone_density"], np.where(conduit, cfg["conduit_density"], float(cfg["density"])))
    mean = lambda a: a.reshape(n, 4, n, 4, n, 4).mean(axis=(1, 3, 5))
    if parts:
        return sc, mean(rho), mean(conduit & ~zone), mean(zone)
    return sc, mean(rho)


def under_terrain(cfg=None, grid=None):
    """Voxels whose centre lies below the surface (bool ``(grid, grid, grid)``)."""
    cfg = _cfg(cfg)
    vox = scene(cfg, grid).field.fill
    z, y, x = np.meshgrid(vox.centres(2), vox.centres(1), vox.centres(0), indexing="ij")
    return z < elevation(cfg).surface(x, y)


def _blocks(cfg, n, values):
    """Mean over each ``n³`` inference voxel's part under the terrain of a truth-grid array
    (NaN where a voxel holds no terrain)."""
    sc, _ = true_density(cfg)
    fine = sc.field.fill
    z, y, x = np.meshgrid(fine.centres(2), fine.centres(1), fine.centres(0), indexing="ij")
    inside = z < elevation(cfg).surface(x, y)
    big = int(cfg["truth_grid"])
    if big % n:
        raise ValueError(f"grid must divide truth_grid = {big}, got {n}")
    f = big // n
    block = lambda a: a.reshape(n, f, n, f, n, f).sum(axis=(1, 3, 5))
    with np.errstate(invalid="ignore"):
        return np.where(block(inside) > 0, block(np.where(inside, values, 0.0)) / np.maximum(block(inside), 1), np.nan)


def voxel_truth(cfg=None, grid=None):
    """True mean density (kg/m³) of each inference voxel's part under the terrain (NaN above)."""
    cfg = _cfg(cfg)
    return _blocks(cfg, int(grid or cfg["grid"]), true_density(cfg)[1])


def bodies(cfg=None, grid=None, min_fraction=0.05):
    """The true conduit and low-density zone on the inference grid: bool ``(grid, grid, grid)``
    masks of the voxels at least ``min_fraction`` of whose volume under the terrain is that body."""
    cfg = _cfg(cfg)
    n = int(grid or cfg["grid"])
    _, _, in_conduit, in_zone = true_density(cfg, parts=True)
    conduit, zone = _blocks(cfg, n, in_conduit), _blocks(cfg, n, in_zone)
    with np.errstate(invalid="ignore"):
        return conduit >= min_fraction, zone >= min_fraction


def _gravity_survey(cfg, grid):
    return _survey(elevation(cfg), int(grid), tuple(map(tuple, stations(cfg))))


@lru_cache(maxsize=4)
def _survey(elev, grid, st):
    return GravitySurvey(_scene(elev, grid).field, np.asarray(st), sub=2 if grid > 16 else 4)


def _record_truth(cfg):
    sc, rho = true_density(cfg)
    return sc, jnp.asarray(rho, jnp.float32)


def simulate(config=None, *, key):
    """Synthetic data: telescope and open-sky counts and gravity anomalies from the true
    geometry and nuisances.  Returns ``(data, truth)`` dicts of numpy arrays."""
    cfg = _cfg(config)
    sc, rho = _record_truth(cfg)
    tels, opens = telescopes(cfg), open_sky(cfg)
    truth_sys = {"background": jnp.asarray(cfg["true_background"]), "efficiency": jnp.asarray(cfg["true_efficiency"]),
                 "sky_norm": jnp.asarray(1.0)}
    sy = nppl.Systematics(background=dist.LogNormal(0.0, 1.0), efficiency=dist.Uniform(0.5, 1.0),
                          sky_norm=dist.Normal(1.0, 0.05))
    gen = lambda: nppl.survey_counts(sc, rho, tels, sy, open_sky=opens,
                                     method=ppl_bmc.Quadrature(n_directions=int(cfg["n_directions"])))
    k_mu, k_g = jax.random.split(key)
    tr = numpyro.handlers.trace(numpyro.handlers.substitute(numpyro.handlers.seed(gen, k_mu), data=truth_sys)
                                ).get_trace()
    g_true = np.asarray(_survey(elevation(cfg), int(cfg["truth_grid"]), tuple(map(tuple, stations(cfg))))(rho),
                        dtype=float)
    noise = cfg["gravity_noise_mgal"] * np.asarray(jax.random.normal(k_g, g_true.shape))
    data = {"counts": np.asarray(tr["counts"]["value"], np.int64),
            "open_sky_counts": np.asarray(tr["open_sky_counts"]["value"], np.int64),
            "gravity": g_true - g_true.mean() + noise}  # relative anomalies: the mean is unknown
    grid = voxel_truth(cfg)
    section = _section(cfg, true_density(cfg)[1], int(cfg["truth_grid"]))
    truth = {"expected": np.asarray(tr["counts"]["fn"].rate), "density_grid": grid, "log_density": np.log(grid),
             "background": np.asarray(cfg["true_background"]), "efficiency": np.asarray(cfg["true_efficiency"]),
             "sky_norm": np.asarray(1.0), "gravity_offset": np.asarray(-g_true.mean()),
             "density_section": section}
    return data, truth


def _section(cfg, rho, n):
    """The vertical (z, x) section through the summit (y = 0) of a ``(n, n, n)`` density, NaN above
    the terrain."""
    vox = scene(cfg, n).field.fill
    j = int(np.clip(np.searchsorted(vox.centres(1), 0.0), 0, n - 1))
    x, z = np.meshgrid(vox.centres(0), vox.centres(2))
    above = z >= elevation(cfg).surface(x, np.full_like(x, vox.centres(1)[j]))
    return np.where(above, np.nan, np.asarray(rho)[:, j, :]).astype(np.float32)


def validate_data(data):
    for k in ("counts", "open_sky_counts"):
        c = np.asarray(data[k])
        if c.ndim != 2:
            raise ValueError(f"{k} must be (telescope, line of sight), got shape {c.shape}")
    if np.asarray(data["gravity"]).ndim != 1:
        raise ValueError("gravity must be (station,) in mGal")


def build(config, data, *, key, grid=None):
    """The NumPyro model and its keyword arguments (observed sites from ``data``)."""
    del key  # the quadrature is deterministic
    cfg = _cfg(config)
    n = int(grid or cfg["grid"])
    sc, tels, opens = scene(cfg, n), telescopes(cfg), open_sky(cfg)
    sy = systematics(cfg)
    survey = _gravity_survey(cfg, n) if cfg["use_gravity"] else None
    prior = nppl.log_density_prior((n, n, n), mean_density=cfg["density"], sd_log=cfg["sd_log"],
                                   length=cfg["length_voxels"])
    method = ppl_bmc.Quadrature(n_directions=int(cfg["n_directions"]))
    noise = float(cfg["gravity_noise_mgal"])

    def model(counts=None, open_sky_counts=None, gravity=None):
        rho = prior()
        nppl.survey_counts(sc, rho, tels, sy, observed=counts, open_sky=opens, open_observed=open_sky_counts,
                           method=method)
        if survey is not None:
            offset = numpyro.sample("gravity_offset", dist.Normal(0.0, 20.0))
            nppl.gravity_site(survey(rho) + offset, gravity, noise_mgal=noise)

    if data is None:
        return model, {}
    kw = {"counts": jnp.asarray(data["counts"]), "open_sky_counts": jnp.asarray(data["open_sky_counts"])}
    if survey is not None:
        kw["gravity"] = jnp.asarray(data["gravity"], jnp.float32)
    return model, kw


def map_log_density(fit, cfg=None, grid=None):
    """log-density field ``(grid, grid, grid)`` at the MAP."""
    cfg = _cfg(cfg)
    n = int(grid or cfg["grid"])
    gm = nppl.GMRF((n, n, n), cfg["length_voxels"])
    return np.log(cfg["density"]) + cfg["sd_log"] * np.asarray(gm.transform(fit.params["log_density_white"]))


def locate(log_density, cfg=None, grid=None):
    """Where a log-density ``(grid, grid, grid)`` puts the conduit (its densest voxel under the
    terrain) and the low-density zone (its lightest), and how far (Chebyshev distance, voxels)
    each lies from the true body (0: inside it; None when no voxel of the grid is mostly the
    body).  Returns a dict."""
    cfg = _cfg(cfg)
    n = int(grid or cfg["grid"])
    rho = np.exp(np.asarray(log_density).reshape(n, n, n))
    mask = under_terrain(cfg, n)
    dense = np.unravel_index(np.argmax(np.where(mask, rho, -np.inf)), rho.shape)
    light = np.unravel_index(np.argmin(np.where(mask, rho, np.inf)), rho.shape)
    conduit, zone = bodies(cfg, n)

    def distance(at, body):  # None when the grid is too coarse to hold the body
        cells = np.argwhere(body)
        return int(np.min(np.max(np.abs(cells - np.asarray(at)[None, :]), axis=1))) if len(cells) else None

    return {"conduit": tuple(map(int, dense)), "conduit_distance": distance(dense, conduit),
            "zone": tuple(map(int, light)), "zone_distance": distance(light, zone)}


def map_mask(config, shape):
    """Voxels under the terrain (bool, ``shape = (grid, grid, grid)``)."""
    return under_terrain(config, shape[-1])


#: ``ppl-bmc summarize`` draws the vertical section through the summit (y = 0) of the 3-D
#: log-density, in kg/m³, with the true section's outline.
MAPS = {"log_density": {"extent": [-800.0, 800.0, 0.0, 300.0], "xlabel": "x (m)", "ylabel": "z (m)",
                        "transform": "exp", "label": "density", "unit": "kg/m³", "truth": "density_section",
                        "mask": map_mask, "section": {"axis": 1, "at": 0.5},
                        "title": "density, vertical section y = 0"}}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=int, default=DEFAULTS["grid"])
    parser.add_argument("--map-steps", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join("results", "volcano_3d"))
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    cfg = _cfg({"grid": args.grid})
    k_data, k_map = jax.random.split(jax.random.key(args.seed))
    data, truth = simulate(cfg, key=k_data)
    print(f"ppl_bmc {ppl_bmc.__version__}, jax {jax.__version__} on {jax.default_backend()}")
    print(f"counts per telescope: {data['counts'].sum(1)}; gravity {len(data['gravity'])} stations")
    for label, over in (("muons + gravity", {}), ("muons alone", {"use_gravity": False}),
                        ("background ignored", {"model_background": False})):
        c = dict(cfg, **over)
        t0 = time.perf_counter()
        model, kw = build(c, data, key=None)
        fit = infer.fit_map(model, rng_key=k_map, num_steps=args.map_steps, learning_rate=0.05, **kw)
        loc = locate(map_log_density(fit, c), c)
        print(f"MAP, {label} ({time.perf_counter() - t0:.1f} s): conduit {loc['conduit_distance']} voxel(s) from "
              f"its column, low-density zone {loc['zone_distance']} voxel(s) from its centre")
    return 0


if __name__ == "__main__":
    sys.exit(main())
