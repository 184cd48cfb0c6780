"""Straight rays through axis-aligned boxes and piecewise-smooth density fields.

A ray is ``p + t·d`` with ``p`` a position (m), ``d`` a unit direction and ``t ≥ 0`` the
distance (m).  Fields integrate their density along a ray by splitting ``[t0, t1]`` at the
*breakpoints* where the density may jump (voxel faces, a surface crossing) and applying a
Gauss-Legendre rule between them: exact for piecewise-constant fields with one node.
Everything here is a pure function of one ray (``vmap`` for many) with static shapes.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.custom_derivatives import SymbolicZero

#: Direction components smaller than this are treated as parallel to a face.
_PARALLEL = 1e-12
#: Walks of at most this many steps add each piece to its step by a one-hot mask (elementwise,
#: vectorised over particles) rather than a scatter (one element at a time on the CPU).
_ONE_HOT_STEPS = 64


def direction(coords, ndim):
    """Unit direction (D,) from sampling coordinates: α (2-D) or (cos θ, φ) (3-D); works on
    numpy and JAX arrays (last axis = coordinates)."""
    xp = np if isinstance(coords, np.ndarray) else jnp
    if ndim == 2:
        a = coords[..., 0]
        return xp.stack([xp.sin(a), xp.cos(a)], axis=-1)
    c, phi = coords[..., 0], coords[..., 1]
    s = xp.sqrt(xp.clip(1 - c * c, 0.0, None))
    return xp.stack([s * xp.cos(phi), s * xp.sin(phi), c], axis=-1)


def _tent_quantile(u, xp):
    """Inverse CDF of the tent density on [−1, 1] at uniforms ``u``."""
    return xp.where(u < 0.5, xp.sqrt(2 * xp.clip(u, 0.0, 0.5)) - 1, 1 - xp.sqrt(2 * xp.clip(1 - u, 0.0, 0.5)))


def line_coords(u, lo, hi, tent):
    """Sampling coordinates (…, A) of a reading from uniforms ``u`` (…, A): uniform in the box
    ``[lo, hi]`` (a detector bin) or, where ``tent`` (…,) is set, tent-distributed on it (a
    telescope line of sight: slopes).  numpy or JAX arrays."""
    xp = np if isinstance(u, np.ndarray) else jnp
    f = xp.where(xp.asarray(tent)[..., None] > 0, 0.5 * (1 + _tent_quantile(u, xp)), u)
    return lo + f * (hi - lo)


def line_direction(coords, frame, tent, ndim):
    """``(direction (…, D), factor (…,))`` of sampling coordinates: a detector bin's α (2-D) or
    (cos θ, φ) (3-D), factor 1; or, where ``tent`` is set, a telescope's slopes (s_u, s_v) along
    the columns u, v of ``frame`` (…, 3, 3) around its axis w, factor cos⁴ϑ = |(s_u, s_v, 1)|⁻⁴
    (the étendue's projection of both planes).  numpy or JAX arrays."""
    xp = np if isinstance(coords, np.ndarray) else jnp
    d = direction(coords, ndim)
    if ndim == 2:
        return d, xp.ones(coords.shape[:-1], coords.dtype)
    frame = xp.asarray(frame, coords.dtype)
    v = coords[..., 0:1] * frame[..., :, 0] + coords[..., 1:2] * frame[..., :, 1] + frame[..., :, 2]
    n2 = xp.sum(v * v, axis=-1)
    tent = xp.asarray(tent)[...] > 0
    return xp.where(tent[..., None], v / xp.sqrt(n2)[..., None], d), xp.where(tent, 1.0 / (n2 * n2), 1.0)


def _safe_inverse(d, xp=jnp):
    """``1/d`` where ``|d|`` is not tiny, else 0 (with finite gradients)."""
    small = xp.abs(d) < _PARALLEL
    return xp.where(small, 0.0, 1.0 / xp.where(small, 1.0, d)), small


def box_interval(p, d, lower, upper):
    """``(t_in, t_out)`` with ``t_in ≤ t_out``: the part of ``t ≥ 0`` where ``p + t·d`` is inside the box.

    ``p``, ``d``: (..., D); ``lower``, ``upper``: (D,) in metres.  An empty intersection gives
    ``t_in = t_out``.  JAX arrays (one ray in kernels; differentiable), or numpy arrays of many
    rays (evaluated at once, also while a caller is being traced).
    """
    xp = np if isinstance(p, np.ndarray) and isinstance(d, np.ndarray) else jnp
    inv, parallel = _safe_inverse(d, xp)
    lower, upper = xp.asarray(lower, p.dtype), xp.asarray(upper, p.dtype)
    t1, t2 = (lower - p) * inv, (upper - p) * inv
    inside_slab = (p >= lower) & (p <= upper)
    big = xp.asarray(np.finfo(np.float32).max, p.dtype)
    lo = xp.where(parallel, xp.where(inside_slab, -big, big), xp.minimum(t1, t2))
    hi = xp.where(parallel, xp.where(inside_slab, big, -big), xp.maximum(t1, t2))
    t_in = xp.maximum(xp.max(lo, axis=-1), 0.0)
    t_out = xp.maximum(xp.min(hi, axis=-1), t_in)
    return t_in, t_out


def plane_crossings(p, d, edges, t_default):
    """Distances to the planes ``x_axis = e`` for every axis and edge.

    ``edges``: a tuple with one 1-D numpy array of plane coordinates per axis (m).  Rays
    parallel to an axis get ``t_default`` for its planes (a harmless extra breakpoint).
    Returns a 1-D array of length ``Σ len(edges[a])``.
    """
    out = []
    for axis, e in enumerate(edges):
        if e is None or len(e) == 0:
            continue
        inv, parallel = _safe_inverse(d[axis])
        t = (jnp.asarray(e, p.dtype) - p[axis]) * inv
        out.append(jnp.where(parallel, t_default, t))
    return jnp.concatenate(out) if out else jnp.zeros((0,), p.dtype)


def grid_crossings_near(p, d, t0, lower, size, counts, max_span, t_default):
    """Distances to the planes of a regular grid that ``p + t·d`` can cross for
    ``t ∈ [t0, t0 + max_span]``: per axis the ``⌊max_span/size⌋ + 2`` planes ahead of the point
    at ``t0`` (indices clipped to the grid, so extra candidates are harmless duplicates), or all
    the axis's ``counts + 1`` planes when that is fewer (a step longer than the grid).

    ``lower``, ``size``: (D,) m; ``counts``: cells per axis; ``max_span`` static (m).
    """
    out = []
    for axis in range(len(counts)):
        k = int(math.floor(max_span / size[axis])) + 2
        inv, parallel = _safe_inverse(d[axis])
        if k >= counts[axis] + 1:
            plane = lower[axis] + jnp.arange(counts[axis] + 1, dtype=p.dtype) * size[axis]
            out.append(jnp.where(parallel, t_default, (plane - p[axis]) * inv))
            continue
        c = (p[axis] + t0 * d[axis] - lower[axis]) / size[axis]
        i0 = jnp.floor(c).astype(jnp.int32)
        ahead = jnp.arange(k, dtype=jnp.int32)
        j = jnp.clip(jnp.where(d[axis] >= 0, i0 + 1 + ahead, i0 - ahead), 0, counts[axis])
        plane = lower[axis] + j.astype(p.dtype) * size[axis]
        out.append(jnp.where(parallel, t_default, (plane - p[axis]) * inv))
    return jnp.concatenate(out)


def _pieces(density_at, t, n_nodes: int, n_sub: int):
    """``(integrals, midpoints)`` of the pieces between consecutive sorted distances ``t`` (each
    cut into ``n_sub`` equal parts, ``n_nodes`` Gauss-Legendre nodes per part): ``(n,)`` and, for
    a density with trailing axes (several partial densities at once), ``(n, ...)``."""
    a, b = t[:-1], t[1:]
    if n_sub > 1:
        f = jnp.linspace(0.0, 1.0, n_sub + 1, dtype=t.dtype)
        a, b = (a[:, None] + (b - a)[:, None] * f[:-1]).ravel(), (a[:, None] + (b - a)[:, None] * f[1:]).ravel()
    x, w = np.polynomial.legendre.leggauss(n_nodes)
    half, mid = 0.5 * (b - a), 0.5 * (a + b)
    nodes = mid[:, None] + half[:, None] * jnp.asarray(x, t.dtype)
    values = density_at(nodes)
    weights = half[:, None] * jnp.asarray(w, t.dtype)
    weights = weights.reshape(weights.shape + (1,) * (values.ndim - 2))
    return jnp.sum(weights * values, axis=1), mid


def integrate_pieces(density_at, breaks, t0, t1, n_nodes: int, n_sub: int = 1):
    """∫_{t0}^{t1} ρ(t) dt for ρ smooth between ``breaks`` (a 1-D array of distances).

    The interval is cut at the breakpoints that fall inside it, each piece into ``n_sub``
    equal parts, and each part integrated with ``n_nodes`` Gauss-Legendre nodes.
    ``density_at`` maps distances of any shape to densities of the same shape (or with trailing
    axes: several densities integrated at once, an integral per trailing entry).
    """
    t = jnp.sort(jnp.concatenate([jnp.stack([t0, t1]), jnp.clip(breaks, t0, t1)]))
    return jnp.sum(_pieces(density_at, t, n_nodes, n_sub)[0], axis=0)


def integrate_steps(density_at, breaks, step, n_steps: int, n_nodes: int, n_sub: int = 1):
    """``(n_steps,)`` integrals of ρ over the consecutive steps ``[k·step, (k+1)·step]`` of a ray
    (k = 0 … n_steps − 1), from one sort of its ``breaks`` and the step boundaries: each piece
    between sorted distances lies in one step and is summed into it (no differences of large
    running sums).  Same rule as :func:`integrate_pieces` within each step (trailing axes of
    the density too: ``(n_steps, ...)``).  ``step`` in m, ``n_steps`` static."""
    dt = jnp.result_type(breaks, step)
    end = step * n_steps
    bounds = step * jnp.arange(n_steps + 1, dtype=dt)
    t = jnp.sort(jnp.concatenate([bounds, jnp.clip(breaks, 0.0, end)]))
    pieces, mid = _pieces(density_at, t, n_nodes, n_sub)
    which = jnp.clip(jnp.floor(mid / step), 0, n_steps - 1).astype(jnp.int32)
    return jnp.zeros((n_steps,) + pieces.shape[1:], pieces.dtype).at[which].add(pieces)


def voxel_walk_steps(values, p, d, lower, size, step, n_steps: int, extra=None, factor=None):
    """``(n_steps,)`` integrals of a piecewise-constant voxel density over the consecutive steps
    ``[k·step, (k+1)·step]`` of the ray ``p + t·d``, by walking it voxel face by voxel face (a
    fixed-bound DDA walk: no sort of the grid's planes).  Same numbers as
    :func:`integrate_steps` over the grid's planes, to float rounding.

    ``values``: densities (kg/m³), z first (``(n_z, n_x)`` or ``(n_z, n_y, n_x)``), or with
    trailing axes (several densities walked at once: ``(n_steps, ...)`` integrals); ``lower``,
    ``size``: the grid's corner and voxel edge lengths per position axis (m, static sequences);
    ``step`` m; ``n_steps`` static.  ``extra``: optional sorted 1-D array ``(m,)`` of more
    distances (m) where the walk must cut (e.g. where the ray crosses a terrain surface), and
    ``factor`` ``(m + 1,)``: the density's multiplier between consecutive cuts (before the
    first, between each pair, after the last; e.g. 1 below the surface, 0 above).

    Each event of the walk ends the current piece at the nearest voxel face, extra cut, step
    boundary or the grid's exit, adds ``value × factor × length`` to its step and moves past
    that one cut (a corner costs one zero-length event); the walk has a static number of
    events, enough for every face, cut and step boundary a ray can meet.  Differentiable: with
    respect to ``values`` alone (a straight walk that does not move with the parameters), the
    derivative is the walk's pieces (voxel, step, length) summed linearly, without
    differentiating the walk; with respect to the ray too, through the walk.
    """
    dt = jnp.result_type(p, d, step)
    extra = jnp.zeros((0,), dt) if extra is None else jnp.asarray(extra, dt)
    factor = jnp.ones((extra.shape[0] + 1,), dt) if factor is None else jnp.asarray(factor, dt)
    values = jnp.asarray(values)
    values = values.astype(jnp.result_type(values, dt))
    grid = (tuple(float(v) for v in lower), tuple(float(v) for v in size), int(n_steps))
    return _walk_sum(grid, values, p, d, jnp.asarray(step, dt), extra, factor)


def _walk(grid, values, p, d, step, extra, factor, accumulate: bool):
    """The walk of :func:`voxel_walk_steps`: the step sums (``accumulate``) or the pieces
    ``(voxel, step, factor × length)``, each ``(n_events,)``."""
    lower, size, n_steps = grid
    dt = jnp.result_type(p, d, step)
    channels = values.shape[len(lower):]  # several densities walked at once (trailing axes)
    counts = np.asarray(values.shape[:len(lower)][::-1])
    lo, size = jnp.asarray(lower, dt), jnp.asarray(size, dt)
    hi = lo + size * jnp.asarray(counts, dt)
    inv, parallel = _safe_inverse(d)
    big, end = jnp.asarray(np.inf, dt), step * n_steps
    t1, t2 = (lo - p) * inv, (hi - p) * inv
    inside = (p >= lo) & (p <= hi)
    t_in = jnp.clip(jnp.max(jnp.where(parallel, jnp.where(inside, -big, big), jnp.minimum(t1, t2))), 0.0, end)
    t_out = jnp.clip(jnp.min(jnp.where(parallel, jnp.where(inside, big, -big), jnp.maximum(t1, t2))), t_in, end)
    last = jnp.asarray(counts - 1)
    cell = jnp.clip(jnp.floor((p + t_in * d - lo) / size).astype(jnp.int32), 0, last)
    up = d >= 0
    move = jnp.where(up, 1, -1)
    flat = jnp.reshape(values, (-1,) + channels)
    strides = jnp.asarray([int(np.prod(counts[:a])) for a in range(len(counts))], jnp.int32)
    n_extra = extra.shape[0]

    def event(carry, _):
        t, cell, k, j, acc = carry
        t_face = jnp.where(parallel, big, (lo + (cell + up).astype(dt) * size - p) * inv)  # next face per axis
        t_cross = jnp.min(t_face)
        t_cut = jnp.where(j < n_extra, extra[jnp.minimum(j, n_extra - 1)], big) if n_extra else big
        t_step = (k + 1).astype(dt) * step
        nearest = jnp.minimum(jnp.minimum(t_cross, t_cut), t_step)
        t_stop = jnp.clip(nearest, t, t_out)
        length = (t_stop - t) * factor[j]
        voxel = jnp.sum(cell * strides)
        piece = None
        if accumulate:
            add = flat[voxel] * length
            if n_steps <= _ONE_HOT_STEPS:  # elementwise (vectorises under vmap) instead of a scatter
                hit = (jnp.arange(n_steps) == k).reshape((n_steps,) + (1,) * len(channels))
                acc = acc + jnp.where(hit, add, jnp.zeros_like(add))
            else:
                acc = acc.at[k].add(add)
        else:
            piece = (voxel, k, length)
        cross = (t_face == t_cross) & (t_cross <= nearest)
        cross = cross & (jnp.cumsum(cross) == 1)  # one face per event, faces first on ties
        crossed = jnp.any(cross)
        cut = ~crossed & (t_cut <= nearest)
        cell = jnp.clip(cell + jnp.where(cross, move, 0), 0, last)
        k = jnp.minimum(k + (~crossed & ~cut), n_steps - 1)
        return (t_stop, cell, k, j + cut, acc), piece

    k0 = jnp.minimum(jnp.floor(t_in / step).astype(jnp.int32), n_steps - 1)
    # faces crossed + extra cuts + step boundaries + the last piece, with room for rounding
    n_events = int(counts.sum()) + n_extra + n_steps + 1
    carry = (t_in, cell, k0, jnp.zeros((), jnp.int32), jnp.zeros((n_steps,) + channels, values.dtype))
    (*_, acc), pieces = lax.scan(event, carry, None, length=n_events)
    return acc if accumulate else pieces


def _sum_pieces(grid, values, pieces):
    voxel, k, length = pieces
    channels = values.shape[len(grid[0]):]
    length = length.reshape(length.shape + (1,) * len(channels))
    return jnp.zeros((grid[2],) + channels, values.dtype).at[k].add(jnp.reshape(values, (-1,) + channels)[voxel] * length)


@partial(jax.custom_jvp, nondiff_argnums=(0,))
def _walk_sum(grid, values, p, d, step, extra, factor):
    return _walk(grid, values, p, d, step, extra, factor, accumulate=True)  # the fastest forward


def _walk_sum_jvp(grid, primals, tangents):
    values, p, d, step, extra, factor = primals
    if all(type(t) is SymbolicZero for t in tangents[1:]):  # only the values move: linear in them
        pieces = _walk(grid, *primals, accumulate=False)
        dv = tangents[0]
        dv = jnp.zeros_like(values) if type(dv) is SymbolicZero else dv
        return _sum_pieces(grid, values, pieces), _sum_pieces(grid, dv, pieces)
    tangents = tuple(jnp.zeros_like(x) if type(t) is SymbolicZero else t for x, t in zip(primals, tangents))
    through = lambda *a: _sum_pieces(grid, a[0], _walk(grid, *a, accumulate=False))
    return jax.jvp(through, primals, tangents)


_walk_sum.defjvp(_walk_sum_jvp, symbolic_zeros=True)


__all__ = ["box_interval", "direction", "grid_crossings_near", "integrate_pieces", "integrate_steps", "line_coords", "line_direction",
           "plane_crossings", "voxel_walk_steps"]
