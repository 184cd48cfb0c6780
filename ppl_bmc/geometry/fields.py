"""Density fields: voxel grids, Gaussian blobs, horizontal layers, height maps, composites.

Coordinates are metres: ``(x, z)`` in 2-D (a vertical cross-section, z up) and ``(x, y, z)``
in 3-D.  A field is a small immutable object (static under ``jit``, hashed by identity)
whose numbers to infer are a separate pytree ``params``; ``density(position, params)``
returns kg/m³ and is 0 outside the field's box ``[lower, upper]``.
``integrate(p, d, t0, t1, params)`` is the opacity ∫ρ dl (kg/m²) of the straight segment
``p + t·d``, ``t ∈ [t0, t1]``: exact for voxel grids, layers and height maps (the segment is
cut where the density jumps), Gauss-Legendre for smooth fields.

Voxel values are stored image-like, z first: ``values[iz, ix]`` in 2-D, ``values[iz, iy, ix]``
in 3-D, with ``iz = 0`` at the bottom.
"""

from __future__ import annotations

from dataclasses import dataclass, field as dc_field

import jax
import jax.numpy as jnp
import numpy as np

from ppl_bmc import _checks
from ppl_bmc.geometry.rays import grid_crossings_near, integrate_pieces, plane_crossings

__all__ = ["Field", "VoxelGrid", "Layers", "GaussianBlobs", "HeightMap", "Composite", "Mixture"]


def _box(lower, upper, name="field"):
    lower, upper = tuple(float(v) for v in np.ravel(lower)), tuple(float(v) for v in np.ravel(upper))
    if len(lower) not in (2, 3) or len(upper) != len(lower):
        raise ValueError(f"{name}: lower and upper must both have 2 (x, z) or 3 (x, y, z) coordinates (m), "
                         f"got {lower} and {upper}")
    if not all(np.isfinite(lower + upper)) or not all(u > l for l, u in zip(lower, upper)):
        raise ValueError(f"{name}: need finite lower < upper on every axis (m), got lower={lower}, upper={upper}")
    return lower, upper


def _nonnegative(x, name):
    if _checks.is_concrete(x) and np.any(np.asarray(x) < 0):
        raise ValueError(f"{name} must be >= 0 kg/m³ (densities), got minimum {float(np.min(np.asarray(x)))}")
    return x


class Field:
    """Base class.  Subclasses set ``lower``, ``upper`` (tuples, m) and implement
    :meth:`value` (density inside the box), :meth:`check_params` and, when the density jumps,
    :meth:`breakpoints`.

    Attributes
    ----------
    n_nodes : int
        Gauss-Legendre nodes per piece between breakpoints (1 for piecewise-constant fields).
    n_sub : int
        Equal sub-pieces per piece (for smooth fields without breakpoints).
    """

    n_nodes: int = 1
    n_sub: int = 1

    @property
    def ndim(self) -> int:
        """2 (x, z) or 3 (x, y, z)."""
        return len(self.lower)

    def inside(self, position):
        """Whether positions ``(..., D)`` (m) are inside the box (boolean ``(...)``)."""
        lo, hi = jnp.asarray(self.lower, position.dtype), jnp.asarray(self.upper, position.dtype)
        return jnp.all((position >= lo) & (position <= hi), axis=-1)

    def value(self, position, params):
        """Density (kg/m³) at positions ``(..., D)`` assumed inside the box."""
        raise NotImplementedError

    def density(self, position, params):
        """Density (kg/m³) at positions ``(..., D)`` in metres; 0 outside the box."""
        position = jnp.asarray(position)
        return jnp.where(self.inside(position), self.value(position, params), 0.0)

    def breakpoints(self, p, d, t0, t1, params, max_span=None):
        """Distances along ``p + t·d`` where the density may jump (1-D array, static length).

        ``max_span`` (static, m): an upper bound of ``t1 − t0`` that lets grids return only the
        planes within reach (fewer breakpoints to sort in short BMC steps)."""
        return plane_crossings(p, d, tuple(np.array([lo, hi]) for lo, hi in zip(self.lower, self.upper)), t1)

    def integrate(self, p, d, t0, t1, params, max_span=None):
        """Opacity ∫ρ dl (kg/m²) of the segment ``p + t·d``, ``t ∈ [t0, t1]`` (m); one ray.

        ``max_span``: optional static bound of ``t1 − t0`` (m), see :meth:`breakpoints`."""
        at = lambda t: self.density(p + t[..., None] * d, params)
        breaks = self.breakpoints(p, d, t0, t1, params, max_span)
        return integrate_pieces(at, breaks, t0, t1, self.n_nodes, self.n_sub)

    def check_params(self, params, name: str = "params"):
        """Validate and convert ``params`` (shapes; concrete values non-negative); returns them."""
        raise NotImplementedError

    def params_shape(self):
        """The pytree of shapes ``check_params`` expects (for error messages and priors)."""
        raise NotImplementedError


@dataclass(frozen=True, eq=False)
class VoxelGrid(Field):
    """Piecewise-constant densities on a regular grid filling the box ``[lower, upper]``.

    Parameters
    ----------
    lower, upper : sequence of 2 or 3 floats
        Corners of the grid (m): ``(x, z)`` or ``(x, y, z)``.
    shape : tuple of ints
        Voxels, z first: ``(n_z, n_x)`` or ``(n_z, n_y, n_x)``.
    smooth : bool
        ``False``: the density is constant in each voxel and ray integrals are exact.
        ``True``: multilinear interpolation between voxel centres (constant beyond the outer
        centres), a continuous field whose ray integrals are also exact (two Gauss nodes per
        piece between centre planes).
    scale : array of ``shape`` or None
        Fixed per-voxel multiplier (e.g. the fraction of each voxel inside a shape).

    ``params``: densities (kg/m³), array of ``shape``; ``density = scale · params``.
    """

    lower: tuple
    upper: tuple
    shape: tuple
    smooth: bool = False
    scale: np.ndarray | None = None

    def __post_init__(self):
        lower, upper = _box(self.lower, self.upper, "VoxelGrid")
        object.__setattr__(self, "lower", lower)
        object.__setattr__(self, "upper", upper)
        shape = tuple(int(n) for n in self.shape)
        if len(shape) != len(lower) or any(n < 1 for n in shape):
            raise ValueError(f"VoxelGrid: shape must have {len(lower)} positive sizes (z first), got {self.shape}")
        object.__setattr__(self, "shape", shape)
        if self.scale is not None:
            scale = np.asarray(self.scale, dtype=float)
            if scale.shape != shape or np.any(~np.isfinite(scale)) or np.any(scale < 0):
                raise ValueError(f"VoxelGrid: scale must be a finite non-negative array of shape {shape}")
            object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "n_nodes", 2 if self.smooth else 1)

    @property
    def counts(self):
        """Voxels per position axis, ``(n_x, n_z)`` or ``(n_x, n_y, n_z)``."""
        return self.shape[::-1]

    @property
    def voxel_size(self):
        """Voxel edge lengths per position axis (m)."""
        return tuple((u - l) / n for l, u, n in zip(self.lower, self.upper, self.counts))

    def edges(self, axis: int):
        """Voxel boundaries along position axis ``axis`` (m), length ``n + 1``."""
        return np.linspace(self.lower[axis], self.upper[axis], self.counts[axis] + 1)

    def centres(self, axis: int):
        """Voxel centres along position axis ``axis`` (m)."""
        e = self.edges(axis)
        return 0.5 * (e[1:] + e[:-1])

    def _values(self, params):
        v = jnp.asarray(params)
        return v if self.scale is None else v * jnp.asarray(self.scale, v.dtype)

    def value(self, position, params):
        v = self._values(params)
        dt = position.dtype
        lo, size = jnp.asarray(self.lower, dt), jnp.asarray(self.voxel_size, dt)
        n = jnp.asarray(self.counts)
        c = (position - lo) / size
        if not self.smooth:
            idx = jnp.clip(jnp.floor(c).astype(jnp.int32), 0, n - 1)
            return v[tuple(idx[..., a] for a in reversed(range(self.ndim)))]
        c = c - 0.5
        i0 = jnp.clip(jnp.floor(c).astype(jnp.int32), 0, jnp.maximum(n - 2, 0))
        frac = jnp.clip(c - i0, 0.0, 1.0)
        out = 0.0
        for corner in np.ndindex(*(2,) * self.ndim):
            w, idx = 1.0, []
            for a, bit in enumerate(corner):
                w = w * (frac[..., a] if bit else 1.0 - frac[..., a])
                idx.append(jnp.minimum(i0[..., a] + bit, n[a] - 1))
            out = out + w * v[tuple(reversed(idx))]
        return out

    def breakpoints(self, p, d, t0, t1, params, max_span=None):
        if self.smooth:
            planes = tuple(np.concatenate([[l, u], self.centres(a)]) for a, (l, u) in enumerate(zip(self.lower, self.upper)))
        elif max_span is not None:
            return grid_crossings_near(p, d, t0, self.lower, self.voxel_size, self.counts, max_span, t1)
        else:
            planes = tuple(self.edges(a) for a in range(self.ndim))
        return plane_crossings(p, d, planes, t1)

    def params_shape(self):
        return self.shape

    def check_params(self, params, name="params"):
        arr = _checks.float_array(params, name, shape=self.shape)
        return _nonnegative(arr, f"{name} (voxel densities)")


@dataclass(frozen=True, eq=False)
class Layers(Field):
    """Horizontal layers between the heights ``z_edges`` (m, increasing), over the box's
    horizontal extent ``[lower, upper]`` (``(x,)`` or ``(x, y)``).

    ``params``: the density of each layer (kg/m³), shape ``(len(z_edges) - 1,)``, bottom first.
    """

    lower: tuple
    upper: tuple
    z_edges: np.ndarray = dc_field(default=None)

    def __post_init__(self):
        z = np.asarray(self.z_edges, dtype=float)
        if z.ndim != 1 or len(z) < 2 or np.any(np.diff(z) <= 0) or not np.all(np.isfinite(z)):
            raise ValueError(f"Layers: z_edges must be >= 2 increasing finite heights (m), got {self.z_edges}")
        lo, hi = tuple(np.ravel(self.lower)) + (z[0],), tuple(np.ravel(self.upper)) + (z[-1],)
        lower, upper = _box(lo, hi, "Layers (lower/upper give the horizontal extent)")
        object.__setattr__(self, "lower", lower)
        object.__setattr__(self, "upper", upper)
        object.__setattr__(self, "z_edges", z)

    def value(self, position, params):
        rho = jnp.asarray(params)
        inner = jnp.asarray(self.z_edges[1:-1], position.dtype)
        return rho[jnp.searchsorted(inner, position[..., -1], side="right")]

    def breakpoints(self, p, d, t0, t1, params, max_span=None):
        planes = [np.array([l, u]) for l, u in zip(self.lower[:-1], self.upper[:-1])] + [self.z_edges]
        return plane_crossings(p, d, tuple(planes), t1)

    def params_shape(self):
        return (len(self.z_edges) - 1,)

    def check_params(self, params, name="params"):
        return _nonnegative(_checks.float_array(params, name, shape=self.params_shape()), f"{name} (layer densities)")


@dataclass(frozen=True, eq=False)
class GaussianBlobs(Field):
    """Two materials mixed by ``K`` Gaussian blobs (the paper's toy, generalised).

    The fraction of material "inside" at ``x`` is ``f = 1 − Π_k (1 − exp(−|x − c_k|² / σ²_k))``
    and the density ``ρ_out + f·(ρ_in − ρ_out)`` (kg/m³) within the box.  With one blob this
    is the paper's ``exp(−|x − μ|²/σ²)`` mixture.

    ``params``: ``{"center": (K, D) m, "sigma2": (K,) m²}``.
    """

    lower: tuple
    upper: tuple
    n_blobs: int = 1
    density_inside: float = 0.0
    density_outside: float = 2650.0
    n_nodes: int = 4
    n_sub: int = 16

    def __post_init__(self):
        lower, upper = _box(self.lower, self.upper, "GaussianBlobs")
        object.__setattr__(self, "lower", lower)
        object.__setattr__(self, "upper", upper)
        _checks.positive_int(self.n_blobs, "n_blobs")
        for nm in ("density_inside", "density_outside"):
            v = getattr(self, nm)
            if not (np.isfinite(v) and v >= 0):
                raise ValueError(f"GaussianBlobs: {nm} must be a finite density >= 0 kg/m³, got {v}")

    def fraction(self, position, params):
        """Fraction of the inside material at positions ``(..., D)`` (in [0, 1])."""
        c, s2 = params["center"], params["sigma2"]
        r2 = jnp.sum((position[..., None, :] - c) ** 2, axis=-1)  # (..., K)
        return 1.0 - jnp.prod(1.0 - jnp.exp(-r2 / s2), axis=-1)

    def value(self, position, params):
        return self.density_outside + self.fraction(position, params) * (self.density_inside - self.density_outside)

    def params_shape(self):
        return {"center": (self.n_blobs, self.ndim), "sigma2": (self.n_blobs,)}

    def check_params(self, params, name="params"):
        if not isinstance(params, dict) or set(params) != {"center", "sigma2"}:
            raise ValueError(f"{name} must be a dict with keys 'center' ({self.n_blobs}, {self.ndim}) m and "
                             f"'sigma2' ({self.n_blobs},) m², got {params!r}")
        c = _checks.float_array(params["center"], f"{name}['center']", shape=(self.n_blobs, self.ndim))
        s2 = _checks.float_array(params["sigma2"], f"{name}['sigma2']", shape=(self.n_blobs,))
        if _checks.is_concrete(s2) and np.any(np.asarray(s2) <= 0):
            raise ValueError(f"{name}['sigma2'] must be > 0 m², got {np.asarray(s2)}")
        return {"center": c, "sigma2": s2}


@dataclass(frozen=True, eq=False)
class HeightMap(Field):
    """Matter below a surface ``z = h(x)`` (2-D, piecewise linear) or ``z = h(x, y)`` (3-D,
    bilinear), from the box bottom up; air (density 0) above.

    Parameters
    ----------
    lower, upper : box corners (m); the surface is clipped to it.
    knots : tuple of 1-D arrays
        ``(x_knots,)`` in 2-D or ``(x_knots, y_knots)`` in 3-D (m, increasing).
    heights : array
        ``h`` at the knots (m): ``(n_x,)`` in 2-D, ``(n_y, n_x)`` in 3-D.
    fill : Field or None
        The density below the surface: ``None`` → one uniform density (``params`` a scalar,
        kg/m³); a field → its density (``params`` are the fill field's params), e.g. a voxel
        grid for "a shape + voxel perturbation".

    Ray integrals are exact: the segment is cut at the knot planes and where it crosses the
    surface (a linear equation per piece in 2-D, a quadratic per cell in 3-D).
    """

    lower: tuple
    upper: tuple
    knots: tuple = ()
    heights: np.ndarray = dc_field(default=None)
    fill: Field | None = None

    def __post_init__(self):
        lower, upper = _box(self.lower, self.upper, "HeightMap")
        object.__setattr__(self, "lower", lower)
        object.__setattr__(self, "upper", upper)
        knots = tuple(np.asarray(k, dtype=float) for k in self.knots)
        h = np.asarray(self.heights, dtype=float)
        want = tuple(len(k) for k in knots[::-1])
        if (len(knots) != len(lower) - 1 or any(k.ndim != 1 or len(k) < 2 or np.any(np.diff(k) <= 0) for k in knots)
                or h.shape != want or not np.all(np.isfinite(h))):
            raise ValueError(f"HeightMap: need {len(lower) - 1} increasing knot arrays (m) and finite heights of "
                             f"shape (n_y, n_x) / (n_x,), got knots {[k.shape for k in knots]}, heights {h.shape}")
        object.__setattr__(self, "knots", knots)
        object.__setattr__(self, "heights", h)
        if self.fill is not None:
            if not isinstance(self.fill, Field) or self.fill.ndim != len(lower):
                raise ValueError(f"HeightMap: fill must be a {len(lower)}-D Field or None, got {self.fill!r}")
            object.__setattr__(self, "n_nodes", self.fill.n_nodes)
            object.__setattr__(self, "n_sub", self.fill.n_sub)

    @classmethod
    def pyramid(cls, base_m: float, height_m: float, *, ndim: int = 2, center=0.0, ground_m: float = 0.0,
                margin_m: float = 0.0, fill=None):
        """A pyramid (2-D: a triangle) of base ``base_m`` and height ``height_m`` (m) standing on
        ``z = ground_m`` centred at ``center`` (x, or (x, y)); the box adds ``margin_m`` around."""
        if not (base_m > 0 and height_m > 0 and margin_m >= 0):
            raise ValueError(f"pyramid: need base_m > 0, height_m > 0 and margin_m >= 0 (m), got "
                             f"{base_m}, {height_m}, {margin_m}")
        half = 0.5 * base_m
        c = np.broadcast_to(np.asarray(center, dtype=float), (ndim - 1,))
        knots = tuple(np.unique([ci - half - margin_m, ci - half, ci, ci + half, ci + half + margin_m]) for ci in c)
        tent = lambda k, ci: np.clip(height_m * (1 - np.abs(k - ci) / half), 0.0, None)
        if ndim == 2:
            h = ground_m + tent(knots[0], c[0])
        else:
            h = ground_m + np.minimum.outer(tent(knots[1], c[1]), tent(knots[0], c[0]))
        lower = tuple(k[0] for k in knots) + (ground_m,)
        upper = tuple(k[-1] for k in knots) + (ground_m + height_m,)
        return cls(lower, upper, knots, h, fill)

    @classmethod
    def volcano(cls, radius_m: float, height_m: float, *, crater_radius_m: float = 0.0, ndim: int = 2,
                center=0.0, ground_m: float = 0.0, n_knots: int = 33, fill=None):
        """A volcano: a cone of base radius ``radius_m`` with a Gaussian-rounded summit and an
        optional crater of radius ``crater_radius_m`` (m), tabulated on ``n_knots`` per axis."""
        if not (radius_m > 0 and height_m > 0 and 0 <= crater_radius_m < radius_m):
            raise ValueError("volcano: need radius_m > 0, height_m > 0, 0 <= crater_radius_m < radius_m (m)")
        c = np.broadcast_to(np.asarray(center, dtype=float), (ndim - 1,))
        knots = tuple(np.linspace(ci - radius_m, ci + radius_m, n_knots) for ci in c)
        grids = np.meshgrid(*knots[::-1], indexing="ij") if ndim == 3 else [knots[0]]
        r = np.sqrt(sum((g - ci) ** 2 for g, ci in zip(grids[::-1], c)))
        cone = height_m * np.clip(1 - r / radius_m, 0, None) ** 1.5
        if crater_radius_m > 0:
            cone = np.where(r < crater_radius_m, cone - 0.3 * height_m * (1 - (r / crater_radius_m) ** 2), cone)
        h = ground_m + np.clip(cone, 0, None)
        lower = tuple(k[0] for k in knots) + (ground_m,)
        upper = tuple(k[-1] for k in knots) + (ground_m + float(h.max()),)
        return cls(lower, upper, knots, h, fill)

    def surface(self, horizontal):
        """Surface height (m) at horizontal positions ``(..., D-1)``."""
        dt = horizontal.dtype
        if self.ndim == 2:
            return jnp.interp(horizontal[..., 0], jnp.asarray(self.knots[0], dt), jnp.asarray(self.heights, dt))
        (i, u), (j, v) = (self._cell(horizontal[..., a], a) for a in range(2))
        h = jnp.asarray(self.heights, dt)
        return (h[j, i] * (1 - u) * (1 - v) + h[j, i + 1] * u * (1 - v) + h[j + 1, i] * (1 - u) * v
                + h[j + 1, i + 1] * u * v)

    def _cell(self, x, axis):
        k = jnp.asarray(self.knots[axis], x.dtype)
        i = jnp.clip(jnp.searchsorted(k, x, side="right") - 1, 0, len(self.knots[axis]) - 2)
        return i, jnp.clip((x - k[i]) / (k[i + 1] - k[i]), 0.0, 1.0)

    def value(self, position, params):
        below = position[..., -1] < self.surface(position[..., :-1])
        rho = jnp.asarray(params) if self.fill is None else self.fill.density(position, params)
        return jnp.where(below, rho, 0.0)

    def _surface_crossings(self, p, d, t0, t1, base):
        if self.ndim == 2:
            k, h = jnp.asarray(self.knots[0], p.dtype), jnp.asarray(self.heights, p.dtype)
            slope = (h[1:] - h[:-1]) / (k[1:] - k[:-1])
            den = d[1] - slope * d[0]
            ok = jnp.abs(den) > 1e-12
            t = (h[:-1] + slope * (p[0] - k[:-1]) - p[1]) / jnp.where(ok, den, 1.0)
            return jnp.where(ok, t, t1)
        # 3-D: within each piece between knot planes the ray is in one bilinear cell: h(t) − z(t)
        # is a quadratic in t, solved for its (up to) two roots.
        tp = jnp.sort(jnp.concatenate([jnp.stack([t0, t1]), jnp.clip(base, t0, t1)]))
        mid = 0.5 * (tp[1:] + tp[:-1])
        x = p[None, :] + mid[:, None] * d
        (i, _), (j, _) = (self._cell(x[:, a], a) for a in range(2))
        kx, ky = (jnp.asarray(k, p.dtype) for k in self.knots)
        hh = jnp.asarray(self.heights, p.dtype)
        wx, wy = kx[i + 1] - kx[i], ky[j + 1] - ky[j]
        u0, v0 = (p[0] - kx[i]) / wx, (p[1] - ky[j]) / wy
        du, dv = d[0] / wx, d[1] / wy
        A, B, C = hh[j, i], hh[j, i + 1] - hh[j, i], hh[j + 1, i] - hh[j, i]
        E = hh[j + 1, i + 1] - hh[j, i + 1] - hh[j + 1, i] + hh[j, i]
        a2 = E * du * dv
        a1 = B * du + C * dv + E * (u0 * dv + v0 * du) - d[2]
        a0 = A + B * u0 + C * v0 + E * u0 * v0 - p[2]
        disc = a1 * a1 - 4 * a2 * a0
        quad = jnp.abs(a2) > 1e-12
        sq = jnp.sqrt(jnp.where(disc >= 0, disc, 0.0))
        # numerically stable roots: q = −(a1 + sign(a1)·√disc)/2; t = q/a2, a0/q
        q = -0.5 * (a1 + jnp.where(a1 >= 0, sq, -sq))
        q_ok = jnp.abs(q) > 1e-30
        r1 = jnp.where(quad & q_ok, q / jnp.where(quad, a2, 1.0), t1)
        r2 = jnp.where(q_ok, a0 / jnp.where(q_ok, q, 1.0), t1)
        lin_ok = jnp.abs(a1) > 1e-12
        r_lin = jnp.where(lin_ok, -a0 / jnp.where(lin_ok, a1, 1.0), t1)
        real = disc >= 0
        r1 = jnp.where(quad, jnp.where(real, r1, t1), r_lin)
        r2 = jnp.where(quad & real, r2, t1)
        return jnp.concatenate([r1, r2])

    def breakpoints(self, p, d, t0, t1, params, max_span=None):
        base = jnp.concatenate([super().breakpoints(p, d, t0, t1, params), plane_crossings(p, d, self.knots, t1)])
        out = [base, self._surface_crossings(p, d, t0, t1, base)]
        if self.fill is not None:
            out.append(self.fill.breakpoints(p, d, t0, t1, params, max_span))
        return jnp.concatenate(out)

    def params_shape(self):
        return () if self.fill is None else self.fill.params_shape()

    def check_params(self, params, name="params"):
        if self.fill is not None:
            return self.fill.check_params(params, name)
        return _nonnegative(_checks.float_array(params, name, shape=()), f"{name} (fill density)")


@dataclass(frozen=True, eq=False)
class Composite(Field):
    """The sum of several fields' densities (e.g. a shape plus a voxel perturbation).

    ``params``: a tuple with each part's params, in order.  The box is the parts' hull.
    Concrete parameters whose total density would be negative are the caller's to avoid
    (each part checks its own params).
    """

    parts: tuple = ()

    def __post_init__(self):
        parts = tuple(self.parts)
        if not parts or not all(isinstance(f, Field) for f in parts) or len({f.ndim for f in parts}) != 1:
            raise ValueError("Composite: parts must be a non-empty sequence of Fields of the same dimension")
        object.__setattr__(self, "parts", parts)

    @property
    def lower(self):
        return tuple(np.min([f.lower for f in self.parts], axis=0))

    @property
    def upper(self):
        return tuple(np.max([f.upper for f in self.parts], axis=0))

    def value(self, position, params):
        return sum(f.density(position, q) for f, q in zip(self.parts, params))

    def integrate(self, p, d, t0, t1, params, max_span=None):
        return sum(f.integrate(p, d, t0, t1, q, max_span) for f, q in zip(self.parts, params))

    def breakpoints(self, p, d, t0, t1, params, max_span=None):
        return jnp.concatenate([f.breakpoints(p, d, t0, t1, q, max_span) for f, q in zip(self.parts, params)])

    def params_shape(self):
        return tuple(f.params_shape() for f in self.parts)

    def check_params(self, params, name="params"):
        if not isinstance(params, (tuple, list)) or len(params) != len(self.parts):
            raise ValueError(f"{name} must be a tuple of {len(self.parts)} parts' params, got {type(params).__name__}")
        return tuple(f.check_params(q, f"{name}[{i}]") for i, (f, q) in enumerate(zip(self.parts, params)))


@dataclass(frozen=True, eq=False)
class Mixture(Field):
    """Two materials mixed by a fraction field: ``ρ = ρ_b + f·(ρ_a − ρ_b)`` (kg/m³), where the
    fraction ``f`` in [0, 1] is the density of ``fraction`` (e.g. a :class:`VoxelGrid` of
    fractions).  Rock vs void: ``density_b = 0``; rock vs water: ``density_b = 1000``.

    ``params``: the fraction field's params, values in [0, 1].
    """

    fraction: Field = None
    density_a: float = 2650.0
    density_b: float = 0.0

    def __post_init__(self):
        if not isinstance(self.fraction, Field):
            raise ValueError(f"Mixture: fraction must be a Field, got {self.fraction!r}")
        for nm in ("density_a", "density_b"):
            v = getattr(self, nm)
            if not (np.isfinite(v) and v >= 0):
                raise ValueError(f"Mixture: {nm} must be a finite density >= 0 kg/m³, got {v}")
        object.__setattr__(self, "n_nodes", self.fraction.n_nodes)
        object.__setattr__(self, "n_sub", self.fraction.n_sub)

    lower = property(lambda self: self.fraction.lower)
    upper = property(lambda self: self.fraction.upper)

    def value(self, position, params):
        return self.density_b + self.fraction.value(position, params) * (self.density_a - self.density_b)

    def breakpoints(self, p, d, t0, t1, params, max_span=None):
        return self.fraction.breakpoints(p, d, t0, t1, params, max_span)

    def params_shape(self):
        return self.fraction.params_shape()

    def check_params(self, params, name="params"):
        q = self.fraction.check_params(params, name)
        leaves = jax.tree_util.tree_leaves(q)
        if all(_checks.is_concrete(x) for x in leaves) and any(np.any(np.asarray(x) > 1) for x in leaves):
            raise ValueError(f"{name} (mixing fractions) must be in [0, 1]")
        return q
