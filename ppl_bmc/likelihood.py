"""The differentiable likelihood primitive of muography: expected counts per detector bin.

``expected_counts(scene, params, detectors, ...)`` is ``area × exposure × efficiency ×
∫_bin flux dΩ`` for every detector and bin, as a JAX function of the field's ``params``:

* ``method="quadrature"`` — straight rays on a Gauss-Legendre grid of directions within each
  bin, the exact opacity of each ray through the field and the CSDA energy integral (512 nodes
  in ln K).  Deterministic, no scattering: the fast path for fits.
* ``method="bmc"`` — backward Monte-Carlo (:class:`ppl_bmc.transport.field.FieldKernel`):
  directions sampled uniformly within each bin, energies log-uniformly, ``n_steps`` steps of
  ``scene.step_m``; gradients through the ``adjoint`` strategy (the replay adjoint keeps memory
  flat in ``n_steps``).  Same key → bit-identical counts (common random numbers).
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ppl_bmc import _checks
from ppl_bmc.adjoint import Adjoint, ReplayAdjoint, check_run_args, mean_weight
from ppl_bmc.detectors import check_detectors, direction
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


def _quadrature(scene, params, detectors, n_directions, dtype):
    r = readings(detectors)
    coords, weights = _quadrature_directions(r["lo"], r["hi"], r["omega"], n_directions)
    dirs = jnp.asarray(direction(coords, scene.ndim), dtype)
    origin = jnp.broadcast_to(jnp.asarray(r["origin"], dtype)[:, None, :], dirs.shape)
    field = scene.field

    def ray(p, d):
        from ppl_bmc.geometry.rays import box_interval

        t_in, t_out = box_interval(p, d, field.lower, field.upper)
        return field.integrate(p, d, t_in, t_out, params), t_out - t_in

    opacity, length = jax.vmap(jax.vmap(ray))(origin, dirs)
    flux = straight_line_flux(scene.get_material(), scene.get_sky_flux(), opacity, length, dirs[..., -1],
                              jnp.asarray(r["k_min"], dtype)[:, None], scene.k_max, decay=scene.decay)
    return jnp.sum(jnp.asarray(weights, dtype) * flux, axis=1) * jnp.asarray(r["scale"], dtype)


def _bmc(scene, params, detectors, key, n_particles, n_steps, adjoint, dtype):
    r = readings(detectors)
    kernel = FieldKernel(scene.field, scene.get_material(), scene.get_sky_flux(), scene.k_max, scene.step_m,
                         scene.decay)
    ctx = {k: jnp.asarray(r[k], dtype) for k in ("origin", "lo", "hi", "omega", "k_min")}
    w = mean_weight(kernel, params, ctx, key, n_particles=n_particles, n_steps=n_steps, adjoint=adjoint)
    return w * jnp.asarray(r["scale"], dtype)


@partial(jax.jit, static_argnames=("scene", "detectors", "method", "n_particles", "n_steps", "adjoint", "n_directions"))
def _expected(params, key, scene, detectors, method, n_particles, n_steps, adjoint, n_directions):
    dtype = jnp.result_type(*jax.tree_util.tree_leaves(params))
    if method == "quadrature":
        counts = _quadrature(scene, params, detectors, n_directions, dtype)
    else:
        counts = _bmc(scene, params, detectors, key, n_particles, n_steps, adjoint, dtype)
    return counts.reshape(len(detectors), -1)


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
    counts = _expected(params, key, scene, dets, method, int(n_particles), int(n_steps), adjoint, int(n_directions))
    if _checks.is_concrete(counts):
        c = np.asarray(counts)
        for i in np.flatnonzero(np.all(c <= 0, axis=1)):
            raise ValueError(f"detector {i} at {dets[i].position} m receives no muons in any bin: no ray can pass "
                             f"(is it buried inside a wall thicker than muons above {scene.k_max:g} GeV can cross?)")
    return counts
