"""The differentiable likelihood primitive of muography: expected counts per detector bin.

``expected_counts(scene, params, detectors, ...)`` is ``area × exposure × efficiency ×
∫_bin flux dΩ`` for every detector and bin, as a JAX function of the field's ``params``:

* ``method="quadrature"`` — straight rays on a Gauss-Legendre grid of directions within each
  bin and the exact opacity X of each ray through the field; the integrated flux F(X) behind
  it (CSDA energy integral, 512 nodes in ln K) is tabulated once per (zenith, threshold) on
  256 opacities and interpolated (cubic Hermite in log F and log(1 + X/1 m.w.e.), relative
  error < 1e-5), so fits pay for the ray integrals only.  The decay weight assumes the
  material's nominal density along the ray (the decay is < 1e-3 in rock).  Deterministic,
  no scattering: the fast path for fits.
* ``method="bmc"`` — backward Monte-Carlo (:class:`ppl_bmc.transport.field.FieldKernel`):
  directions sampled uniformly within each bin, energies log-uniformly, ``n_steps`` steps of
  ``scene.step_m``; gradients through the ``adjoint`` strategy (the replay adjoint keeps memory
  flat in ``n_steps``).  Same key → bit-identical counts (common random numbers).
"""

from __future__ import annotations

import math
from functools import lru_cache, partial

import jax
import jax.numpy as jnp
import numpy as np

from ppl_bmc import _checks
from ppl_bmc.adjoint import Adjoint, ReplayAdjoint, check_run_args, mean_weight
from ppl_bmc.detectors import check_detectors, direction
from ppl_bmc.geometry.rays import box_interval
from ppl_bmc.geometry.scene import Scene
from ppl_bmc.transport.csda import straight_line_flux
from ppl_bmc.transport.field import FieldKernel

__all__ = ["expected_counts", "readings", "exit_lengths"]

METHODS = ("bmc", "quadrature")
#: Directions per bin axis used to check that every ray leaves the scene within n_steps.
_EXIT_GRID = 16


def readings(detectors):
    """Per reading (detector-major, then bin): ``origin (C, D)``, ``lo``/``hi`` (C, A) sampling
    coordinates, ``omega (C,)`` sr, ``k_min (C,)`` GeV and ``scale (C,)`` m²·s, as numpy arrays."""
    out = {k: [] for k in ("origin", "lo", "hi", "omega", "k_min", "scale")}
    for det in detectors:
        lo, hi, omega = det.bins()
        n = len(omega)
        out["origin"].append(np.tile(det.position, (n, 1)))
        out["lo"].append(lo)
        out["hi"].append(hi)
        out["omega"].append(omega)
        out["k_min"].append(np.full(n, det.threshold_gev))
        out["scale"].append(np.full(n, det.scale))
    return {k: np.concatenate(v) for k, v in out.items()}


def _box_exit_np(p, d, lower, upper):
    """numpy ``t_out`` (m) of rays ``p + t·d`` (arrays (..., D)) leaving the box."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t1, t2 = (np.asarray(lower) - p) / d, (np.asarray(upper) - p) / d
    hi = np.where(d == 0, np.inf, np.maximum(t1, t2))
    return np.clip(np.min(hi, axis=-1), 0.0, None)


def exit_lengths(scene, detectors, n_grid: int = _EXIT_GRID):
    """Straight-line lengths (m) from each detector to the scene's boundary on a grid of
    ``n_grid`` directions per bin axis (cell centres, uniform in the sampling measure):
    array ``(C, n_grid**A)``."""
    r = readings(detectors)
    f = (np.arange(n_grid) + 0.5) / n_grid
    grids = np.stack(np.meshgrid(*([f] * r["lo"].shape[1]), indexing="ij"), axis=-1).reshape(-1, r["lo"].shape[1])
    coords = r["lo"][:, None, :] + grids[None] * (r["hi"] - r["lo"])[:, None, :]
    d = direction(coords, scene.ndim)
    return _box_exit_np(r["origin"][:, None, :], d, scene.lower, scene.upper)


def _quadrature_directions(lo, hi, omega, n):
    """Gauss-Legendre directions within each bin: coordinates (C, Q, A) and weights (C, Q) summing to Ω."""
    x, w = np.polynomial.legendre.leggauss(n)
    f, wf = 0.5 * (x + 1), 0.5 * w
    n_axes = lo.shape[1]
    grid = np.stack(np.meshgrid(*([f] * n_axes), indexing="ij"), axis=-1).reshape(-1, n_axes)
    weights = np.prod(np.stack(np.meshgrid(*([wf] * n_axes), indexing="ij"), axis=-1).reshape(-1, n_axes), axis=-1)
    coords = lo[:, None, :] + grid[None] * (hi - lo)[:, None, :]
    return coords, omega[:, None] * weights[None, :]


#: Opacity grid of the quadrature's flux tables: u = log(1 + X/X0), X in kg/m², up to X_MAX
#: (10 km w.e., where the flux is ~1e-13 of the open sky's); beyond it the flux is taken as 0.
_X0, _X_MAX, _N_OPACITY = 1000.0, 1.0e7, 256


@partial(jax.jit, static_argnames=("material", "model", "k_max", "decay"))
def _flux_rows(x, cos, k_min, material, model, k_max, decay):
    """F and dF/dX at opacities ``x`` (n,) kg/m² for each row (cos zenith, k_min): (M, n) each."""
    from ppl_bmc.physics import flux as sky
    from ppl_bmc.physics import materials

    mat, sky_flux = materials.get(material), sky.MODELS[model]

    def row(args):
        c, k = args
        flux = lambda g: straight_line_flux(mat, sky_flux, g, g / mat.density, c, k, k_max, decay=decay)
        return jax.jvp(flux, (x,), (jnp.ones_like(x),))

    return jax.lax.map(row, (cos, k_min))


@lru_cache(maxsize=32)
def _flux_table(material, model, rows, k_max, decay, dtype):
    """log F(u) and d log F/du on the opacity grid for each ``(cos zenith, k_min)`` row, where
    F(X) is the integrated flux (m⁻² s⁻¹ sr⁻¹) behind X kg/m² of ``material`` (nominal density
    sets the decay length).  Computed once, eagerly, and cached: ``(u (n,), y (M, n), dy (M, n))``."""
    u = np.linspace(0.0, math.log1p(_X_MAX / _X0), _N_OPACITY)
    cos, k_min = (np.array(c, dtype=float) for c in zip(*rows))
    with jax.ensure_compile_time_eval():  # concrete even when called while tracing a model
        f, df_dx = _flux_rows(jnp.asarray(_X0 * np.expm1(u), dtype), jnp.asarray(cos, dtype),
                              jnp.asarray(k_min, dtype), material, model, k_max, decay)
        f, df_dx = np.asarray(f, dtype=float), np.asarray(df_dx, dtype=float)
    tiny = np.finfo(np.float32).tiny
    y = np.log(np.maximum(f, tiny))
    dy = np.where(f > tiny, df_dx / np.maximum(f, tiny), 0.0) * (_X0 * np.exp(u))[None, :]
    return u, y, dy


def _interpolate_flux(table, row, opacity):
    """F(opacity) by cubic Hermite interpolation of log F in u = log(1 + X/X0), per ray."""
    u_grid, y, dy = table
    dt = opacity.dtype
    h = float(u_grid[1] - u_grid[0])
    u = jnp.clip(jnp.log1p(opacity / _X0), 0.0, float(u_grid[-1]))
    i = jnp.clip(jnp.floor(u / h).astype(jnp.int32), 0, len(u_grid) - 2)
    t = u / h - i
    y, dy = jnp.asarray(y, dt), jnp.asarray(dy, dt) * h
    y0, y1, m0, m1 = y[row, i], y[row, i + 1], dy[row, i], dy[row, i + 1]
    t2, t3 = t * t, t * t * t
    log_f = (2 * t3 - 3 * t2 + 1) * y0 + (t3 - 2 * t2 + t) * m0 + (-2 * t3 + 3 * t2) * y1 + (t3 - t2) * m1
    # beyond X_MAX (10 km w.e.) the flux is < 1e-13 of the open sky's: zero
    return jnp.where(opacity <= _X_MAX, jnp.exp(log_f), 0.0)


def _quadrature_geometry(detectors, ndim, n_directions):
    """numpy rays of the quadrature: ``(arrays, rows)`` with arrays origin/dirs (C, Q, D),
    weights (C, Q) sr, table row index (C, Q), scale (C,) m²·s; rows the distinct
    (cos zenith, threshold) pairs (a hashable tuple)."""
    r = readings(detectors)
    coords, weights = _quadrature_directions(r["lo"], r["hi"], r["omega"], n_directions)
    dirs = direction(coords, ndim)
    keys = np.stack([np.round(dirs[..., -1], 12), np.broadcast_to(r["k_min"][:, None], dirs.shape[:2])], -1)
    rows, index = np.unique(keys.reshape(-1, 2), axis=0, return_inverse=True)
    arrays = {"origin": np.broadcast_to(r["origin"][:, None, :], dirs.shape), "dirs": dirs, "weights": weights,
              "index": index.reshape(dirs.shape[:2]), "scale": r["scale"]}
    return arrays, tuple(map(tuple, rows.tolist()))


def _quadrature(scene, params, geom, rows, dtype):
    field = scene.field

    def ray(p, d):
        t_in, t_out = box_interval(p, d, field.lower, field.upper)
        return field.integrate(p, d, t_in, t_out, params)

    opacity = jax.vmap(jax.vmap(ray))(geom["origin"], geom["dirs"])
    # one flux table per distinct (cos zenith, threshold): rays share them
    table = _flux_table(scene.material, scene.model, rows, scene.k_max, scene.decay, jnp.dtype(dtype).name)
    flux = _interpolate_flux(table, geom["index"], opacity)
    return jnp.sum(geom["weights"] * flux, axis=1) * geom["scale"]


def _bmc(scene, params, ctx, key, n_particles, n_steps, adjoint):
    kernel = FieldKernel(scene.field, scene.get_material(), scene.get_sky_flux(), scene.k_max, scene.step_m,
                         scene.decay)
    reading = {k: ctx[k] for k in ("origin", "lo", "hi", "omega", "k_min")}
    w = mean_weight(kernel, params, reading, key, n_particles=n_particles, n_steps=n_steps, adjoint=adjoint)
    return w * ctx["scale"]


@partial(jax.jit, static_argnames=("scene", "n_detectors", "method", "rows", "n_particles", "n_steps", "adjoint"))
def _expected(params, key, geom, scene, n_detectors, method, rows, n_particles, n_steps, adjoint):
    # the geometry arrays are arguments, not constants: XLA would otherwise constant-fold the
    # (parameter-free) ray set-up, slowly
    dtype = jnp.result_type(*jax.tree_util.tree_leaves(params))
    geom = {k: v if k == "index" else v.astype(dtype) for k, v in geom.items()}
    if method == "quadrature":
        counts = _quadrature(scene, params, geom, rows, dtype)
    else:
        counts = _bmc(scene, params, geom, key, n_particles, n_steps, adjoint)
    return counts.reshape(n_detectors, -1)


def _check_positions(scene, detectors):
    lo, hi = np.asarray(scene.lower), np.asarray(scene.upper)
    tol = 1e-6 * scene.diagonal
    for i, det in enumerate(detectors):
        p = np.asarray(det.position)
        if np.any(p < lo - tol) or np.any(p > hi + tol):
            raise ValueError(f"detector {i} at {det.position} m is outside the scene's box "
                             f"[{scene.lower}, {scene.upper}] m: place detectors inside it or on its boundary")


def expected_counts(
    scene: Scene,
    params,
    detectors,
    *,
    key=None,
    n_particles: int = 4096,
    n_steps: int | None = None,
    method: str = "bmc",
    adjoint: Adjoint = ReplayAdjoint(),
    n_directions: int = 8,
):
    """Expected muon counts of every detector bin, differentiable in ``params``.

    Parameters
    ----------
    scene : Scene
        The density field, energy-loss material and sky model.
    params : pytree of float arrays
        The field's parameters (see the field's docstring; e.g. voxel densities in kg/m³ of
        shape ``field.shape``).  Concrete values are checked: shapes, finite, densities ≥ 0.
    detectors : Detector or sequence of Detector
        All with the same number of bins, inside the scene's box (or on its boundary).
    key : jax PRNG key
        BMC only: common random numbers (same key → bit-identical counts).
    n_particles : int
        BMC particles per bin.
    n_steps : int or None
        BMC steps of ``scene.step_m`` metres; ``None`` picks the fewest that take every ray out
        of the scene.  Too few → ``ValueError`` with the fraction of particles left inside.
    method : {"bmc", "quadrature"}
        Backward Monte-Carlo, or the deterministic straight-ray quadrature.
    adjoint : Adjoint
        BMC gradient strategy (``ReplayAdjoint()``, ``ForwardSensitivity()``, ``AutodiffAdjoint()``).
    n_directions : int
        Quadrature only: Gauss-Legendre directions per bin axis.

    Returns
    -------
    Array ``(n_detectors, n_bins)``: expected counts (dimensionless) over each detector's
    exposure; bins in the detector's flattened order (zenith-major in 3-D).
    """
    if not isinstance(scene, Scene):
        raise ValueError(f"scene must be a ppl_bmc.geometry.Scene, got {type(scene).__name__}")
    dets = check_detectors(detectors, scene.ndim)
    _check_positions(scene, dets)
    params = scene.field.check_params(params)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "bmc":
        exits = exit_lengths(scene, dets)
        if n_steps is None:
            n_steps = max(1, math.ceil(float(exits.max()) * (1 + 1e-6) / scene.step_m))
        key, n_particles, n_steps = check_run_args(key, n_particles, n_steps, adjoint)
        reach = n_steps * scene.step_m
        inside = float(np.mean(exits > reach - 1e-3))
        if inside > 0:
            need = math.ceil(float(exits.max()) / scene.step_m) + 1
            raise ValueError(f"n_steps={n_steps} is too small: {inside:.1%} of the particles would still be inside "
                             f"the scene after n_steps × step_m = {reach:g} m (the longest ray is "
                             f"{float(exits.max()):g} m); use n_steps >= {need} or n_steps=None")
    else:
        n_directions = _checks.positive_int(n_directions, "n_directions")
        key = jax.random.key(0)  # unused by the quadrature
        n_particles, n_steps = 1, 1
    if method == "quadrature":
        geom, rows = _quadrature_geometry(dets, scene.ndim, n_directions)
    else:
        geom, rows = readings(dets), ()
    counts = _expected(params, key, geom, scene, len(dets), method, rows, int(n_particles), int(n_steps), adjoint)
    if _checks.is_concrete(counts):
        c = np.asarray(counts)
        for i in np.flatnonzero(np.all(c <= 0, axis=1)):
            raise ValueError(f"detector {i} at {dets[i].position} m receives no muons in any bin: no ray can pass "
                             f"(is it buried inside a wall thicker than muons above {scene.k_max:g} GeV can cross?)")
    return counts
