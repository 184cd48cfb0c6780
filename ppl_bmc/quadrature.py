"""The deterministic straight-ray quadrature of ``expected_counts(method=Quadrature())``.

Straight rays on a Gauss-Legendre grid of directions within each bin and the exact opacity X
of each ray through the field; the integrated flux F(X) behind it (:func:`~ppl_bmc.transport.csda.straight_line_flux`:
the muon kernel's physics on 512 nodes in ln K) is tabulated once per (zenith, threshold) on 256
opacities and interpolated (cubic Hermite in log F and log(1 + X/1 m.w.e.), relative error
< 1e-5), so fits pay for the ray integrals only.  The decay weight assumes the material's
nominal density along the ray (the decay is < 1e-3 in rock).

A scene of several materials (a :class:`~ppl_bmc.geometry.composition.Composition`): each ray's
threshold energy is carried backward through its pieces in order, each material by its own
tables, and the ray counts as the reference material's opacity that needs the same energy at the
sky (:func:`_ray_equivalent_opacity`) — the integrated CSDA flux depends on nothing else.
"""

from __future__ import annotations

import math
from functools import lru_cache, partial

import jax
import jax.numpy as jnp
import numpy as np

from ppl_bmc.detectors import readings
from ppl_bmc.geometry.rays import box_interval, line_direction
from ppl_bmc.physics.constants import MWE
from ppl_bmc.physics.materials import Blend
from ppl_bmc.telescope import tent_nodes
from ppl_bmc.transport.csda import straight_line_flux
from ppl_bmc.transport.muon import csda_advance, energy_at

__all__ = ["directions", "flux_table", "interpolate_flux", "geometry", "path_lengths", "counts"]


def directions(lo, hi, omega, n, tent=None, frame=None):
    """Gauss-Legendre directions within each bin: coordinates (C, Q, A) and weights (C, Q)
    summing to Ω.  Where ``tent`` (C,) is set (telescope lines of sight), the nodes and weights
    are those of the tent density on the slope box (:func:`ppl_bmc.telescope.tent_nodes`; the
    weights sum to ``omega``, before the cos⁴ϑ factor of each direction).  With the telescopes'
    ``frame`` (C, 3, 3), a line of sight that the horizon cuts keeps its nodes above it: the
    integrand (zero below, the sky's flux above) jumps there, which nodes spread over the whole
    box integrate poorly (tests/test_telescope.py: up to 27 standard errors of a 10⁶-pair
    Monte-Carlo off); the weights then sum to Ω times the tent's mass above the horizon."""
    n_axes = lo.shape[1]

    def grid(f, wf, f2=None, wf2=None):
        f2, wf2 = (f, wf) if f2 is None else (f2, wf2)
        axes = [f] * (n_axes - 1) + [f2]
        g = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, n_axes)
        w = np.stack(np.meshgrid(*([wf] * (n_axes - 1) + [wf2]), indexing="ij"), axis=-1).reshape(-1, n_axes)
        return g, np.prod(w, axis=-1)

    x, w = np.polynomial.legendre.leggauss(n)
    g, weights = grid(0.5 * (x + 1), 0.5 * w)
    g, weights = np.broadcast_to(g, (len(lo),) + g.shape), np.broadcast_to(weights, (len(lo),) + weights.shape)
    if tent is not None and np.any(tent > 0):
        gt, wt = grid(*tent_nodes(n))
        sel = tent > 0
        g, weights = np.where(sel[:, None, None], gt[None], g), np.where(sel[:, None], wt[None], weights)
        if frame is not None:
            g, weights = np.array(g), np.array(weights)
            for c, cut in _horizon_cuts(lo, hi, frame, sel):
                g[c], weights[c] = grid(*tent_nodes(n), *tent_nodes(n, cut))
    coords = lo[:, None, :] + g * (hi - lo)[:, None, :]
    return coords, omega[:, None] * weights


def _horizon_cuts(lo, hi, frame, tent):
    """``(row, x)`` for each telescope line of sight whose slope box the horizon cuts: its
    directions ``s_u·u + s_v·v + w`` (frame columns) point up where ``s_v`` exceeds the horizon's
    slope (u is horizontal), i.e. above the fraction ``x`` of the box's v side."""
    out = []
    for c in np.flatnonzero(tent):
        fz = frame[c][2]  # z components of u, v, w
        if abs(fz[0]) > 1e-12:
            raise ValueError("a telescope frame's u axis must be horizontal (no roll)")
        if fz[1] <= 1e-12:  # the axis is vertical (or beyond): the horizon does not cut the box
            continue
        x = (-fz[2] / fz[1] - lo[c, 1]) / (hi[c, 1] - lo[c, 1])
        if 0.0 < x < 1.0:
            out.append((c, float(x)))
    return out


#: Opacity grid of the quadrature's flux tables: u = log(1 + X/X0), X in kg/m², up to X_MAX
#: (10 km w.e., where the flux is ~1e-13 of the open sky's); beyond it the flux is taken as 0.
_X0, _X_MAX, _N_OPACITY = 1000.0, 1.0e7, 256


@partial(jax.jit, static_argnames=("material", "sky", "k_max", "decay"))
def _flux_rows(x, cos, k_min, material, sky, k_max, decay):
    """F and dF/dX at opacities ``x`` (n,) kg/m² for each row (cos zenith, k_min): (M, n) each."""

    def row(args):
        c, k = args
        flux = lambda g: straight_line_flux(material, sky, g, None, c, k, k_max, decay=decay)
        return jax.jvp(flux, (x,), (jnp.ones_like(x),))

    return jax.lax.map(row, (cos, k_min))


@lru_cache(maxsize=32)
def flux_table(material, sky, rows, k_max, decay, dtype):
    """log F(u) and d log F/du on the opacity grid for each ``(cos zenith, k_min)`` row, where
    F(X) is the integrated flux (m⁻² s⁻¹ sr⁻¹) behind X kg/m² of ``material`` (nominal density
    sets the decay length).  Computed once, eagerly, and cached: ``(u (n,), y (M, n), dy (M, n))``."""
    u = np.linspace(0.0, math.log1p(_X_MAX / _X0), _N_OPACITY)
    cos, k_min = (np.array(c, dtype=float) for c in zip(*rows))
    with jax.ensure_compile_time_eval():  # concrete even when called while tracing a model
        f, df_dx = _flux_rows(jnp.asarray(_X0 * np.expm1(u), dtype), jnp.asarray(cos, dtype),
                              jnp.asarray(k_min, dtype), material, sky, k_max, decay)
        f, df_dx = np.asarray(f, dtype=float), np.asarray(df_dx, dtype=float)
    tiny = np.finfo(np.float32).tiny
    y = np.log(np.maximum(f, tiny))
    dy = np.where(f > tiny, df_dx / np.maximum(f, tiny), 0.0) * (_X0 * np.exp(u))[None, :]
    return u, y, dy


def interpolate_flux(table, row, opacity):
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


def geometry(detectors, ndim, n_directions):
    """numpy rays of the quadrature: ``(arrays, rows)`` with arrays origin/dirs (C, Q, D),
    weights (C, Q) (sr for bins, m² sr for telescope lines of sight), table row index (C, Q), scale (C,) m²·s; rows the distinct
    (cos zenith, threshold) pairs (a hashable tuple)."""
    r = readings(detectors)
    coords, weights = directions(r["lo"], r["hi"], r["omega"], n_directions, r["tent"], r["frame"])
    frame = np.broadcast_to(r["frame"][:, None], coords.shape[:2] + r["frame"].shape[1:])
    dirs, factor = line_direction(coords, frame, np.broadcast_to(r["tent"][:, None], coords.shape[:2]), ndim)
    weights = weights * factor
    keys = np.stack([np.round(dirs[..., -1], 12), np.broadcast_to(r["k_min"][:, None], dirs.shape[:2])], -1)
    rows, index = np.unique(keys.reshape(-1, 2), axis=0, return_inverse=True)
    arrays = {"origin": np.broadcast_to(r["origin"][:, None, :], dirs.shape), "dirs": dirs, "weights": weights,
              "index": index.reshape(dirs.shape[:2]), "scale": r["scale"]}
    return arrays, tuple(map(tuple, rows.tolist()))


def _ray_opacity(field, p, d, params):
    t_in, t_out = box_interval(p, d, field.lower, field.upper)
    return field.integrate(p, d, t_in, t_out, params)


#: Parts each piece of a ray through a Composition is cut into for the deterministic transport:
#: within a piece the materials are crossed by symmetric splitting, second order in the piece's
#: energy loss (measured on 25 m × 8 m voxels of rock-water mixtures: 5e-4 off the converged
#: counts with whole pieces, 3e-5 with 4 parts).
BLEND_PIECE_PARTS = 4


def _ray_equivalent_opacity(field, blend, p, d, params, k_min):
    """The opacity (kg/m²) of the blend's reference material that a ray through a
    :class:`~ppl_bmc.geometry.composition.Composition` is worth: the threshold ``k_min`` (GeV)
    carried backward through the ray's pieces in order, each material by its own tables, gives
    the least energy a muon needs at the sky; the reference material's range to it, less its
    range at ``k_min``.  Exact for the flux (the integral of the sky flux above that energy)
    up to the decay weight, which the tables take at the reference's nominal density."""
    t_in, t_out = box_interval(p, d, field.lower, field.upper)
    start = energy_at(blend, k_min)
    step = lambda energy, grammages: (csda_advance(blend, energy, grammages, None, decay=False)[0], None)
    end, _ = jax.lax.scan(step, start, field.part_pieces(p, d, t_in, t_out, params, BLEND_PIECE_PARTS))
    return end.csda_range - start.csda_range


def _zeros(shape_tree, dtype):
    """Zero params from a field's ``params_shape()`` (a shape, or a tuple of them)."""
    if isinstance(shape_tree, tuple) and all(isinstance(n, (int, np.integer)) for n in shape_tree):
        return jnp.zeros(shape_tree, dtype)
    return tuple(_zeros(s, dtype) for s in shape_tree)


#: Rays per batch when tabulating path lengths: a dense (batch, n_params) block at a time, at
#: most ~2²⁴ entries (64 MiB in float32) however many parameters the field has.
_PATH_BATCH, _PATH_BLOCK = 512, 2**24


@lru_cache(maxsize=8)
def path_lengths(field, detectors, n_directions, dtype):
    """The quadrature's rays through an affine field (``field.affine``) as a sparse linear map:
    opacity = ``offset + Σ_k lengths[r, k] · flat_params[cols[r, k]]`` (kg/m², params flattened
    by ``jax.flatten_util.ravel_pytree``).  ``offset (C, Q)`` is the opacity at params 0,
    ``cols``/``lengths`` ``(C, Q, K)`` the non-zero entries of each ray's gradient (path lengths in
    m, times the field's fixed scale), K the most any ray has.  Exact (the integral is affine);
    computed once, eagerly, per (field, detectors, n_directions, dtype) and cached, so a fit pays
    a gather per ray instead of a sort of its breakpoints."""
    from jax.flatten_util import ravel_pytree

    geom, _ = geometry(detectors, field.ndim, n_directions)
    shape = geom["dirs"].shape[:2]
    origin, dirs = (geom[k].reshape(-1, field.ndim) for k in ("origin", "dirs"))
    with jax.ensure_compile_time_eval():
        flat0, unravel = ravel_pytree(_zeros(field.params_shape(), dtype))
        ray = lambda p, d, flat: _ray_opacity(field, p, d, unravel(flat))
        row = jax.jit(jax.vmap(jax.value_and_grad(ray, argnums=2), (0, 0, None)))
        offsets, rows, cols, vals = [], [], [], []
        batch = max(8, min(_PATH_BATCH, _PATH_BLOCK // max(int(flat0.size), 1)))
        for start in range(0, len(origin), batch):
            sl = slice(start, start + batch)
            value, jac = row(jnp.asarray(origin[sl], dtype), jnp.asarray(dirs[sl], dtype), flat0)
            jac = np.asarray(jac)
            r, c = np.nonzero(jac)
            offsets.append(np.asarray(value))
            rows.append(r + start)
            cols.append(c)
            vals.append(jac[r, c])
    rows, cols, vals = (np.concatenate(v) for v in (rows, cols, vals))
    n_rays = len(origin)
    per_row = np.bincount(rows, minlength=n_rays)
    k = max(int(per_row.max(initial=0)), 1)
    slot = np.arange(len(rows)) - np.repeat(np.cumsum(per_row) - per_row, per_row)
    c_out, v_out = np.zeros((n_rays, k), np.int32), np.zeros((n_rays, k), dtype)
    c_out[rows, slot], v_out[rows, slot] = cols, vals
    return {"offset": np.concatenate(offsets).reshape(shape), "cols": c_out.reshape(shape + (k,)),
            "lengths": v_out.reshape(shape + (k,))}


def counts(scene, params, geom, rows, dtype):
    """Expected counts ``(C,)`` of every reading: the weighted sum over its rays of the tabulated
    flux behind each ray's exact opacity through ``scene.field`` with ``params`` (from the
    :func:`path_lengths` map when ``geom`` carries one)."""
    field = scene.field
    if "lengths" in geom:
        from jax.flatten_util import ravel_pytree

        flat = ravel_pytree(params)[0]
        opacity = geom["offset"] + jnp.sum(geom["lengths"] * flat[geom["cols"]], axis=-1)
    elif isinstance(scene.material, Blend):  # several materials: the reference's equivalent opacity
        k_min = jnp.asarray(np.asarray(rows, dtype=float)[:, 1], dtype)[geom["index"]]
        ray = lambda p, d, k: _ray_equivalent_opacity(field, scene.material, p, d, params, k)
        opacity = jax.vmap(jax.vmap(ray))(geom["origin"], geom["dirs"], k_min)
    else:
        opacity = jax.vmap(jax.vmap(lambda p, d: _ray_opacity(field, p, d, params)))(geom["origin"], geom["dirs"])
    # one flux table per distinct (cos zenith, threshold): rays share them
    material = scene.material.reference if isinstance(scene.material, Blend) else scene.material
    table = flux_table(material, scene.sky, rows, scene.k_max, scene.decay, jnp.dtype(dtype).name)
    flux = interpolate_flux(table, geom["index"], opacity)
    mixed = scene.mixed_material
    if mixed is not None:  # the tabulated mixed/CSDA ratio of each ray
        cos, k_min = (jnp.asarray(c, dtype)[geom["index"]] for c in zip(*rows))
        flux = flux * jax.vmap(jax.vmap(mixed.flux_ratio))(opacity / MWE, cos, k_min)
    return jnp.sum(geom["weights"] * flux, axis=1) * geom["scale"]
