"""Terrain: matter below a surface ``z = h(x)`` or ``z = h(x, y)``; the pyramid and volcano presets."""

from __future__ import annotations

from dataclasses import dataclass, field as dc_field

import jax.numpy as jnp
import numpy as np

from ppl_bmc import _checks
from ppl_bmc.geometry.field import Field, _box, _nonnegative
from ppl_bmc.geometry.rays import plane_crossings, voxel_walk_steps
from ppl_bmc.geometry.voxels import VoxelGrid

__all__ = ["HeightMap"]


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
    free_heights : bool
        The heights are parameters too: ``params = (heights, fill params)`` with ``heights`` of
        the shape above (m; ``self.heights`` is then their nominal value, which sets nothing but
        :meth:`surface` without params).  Ray integrals are differentiable in the heights (the
        crossings move with them); they must stay within the box's z range.

    Ray integrals are exact: the segment is cut at the knot planes and where it crosses the
    surface (a linear equation per piece in 2-D, a quadratic per cell in 3-D).
    """

    lower: tuple
    upper: tuple
    knots: tuple = ()
    heights: np.ndarray = dc_field(default=None)
    fill: Field | None = None
    free_heights: bool = False

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

    def _split(self, params, dtype):
        """``(heights, fill params)`` of ``params``: the heights are ``self.heights`` unless free."""
        if self.free_heights:
            return jnp.asarray(params[0], dtype), params[1]
        return jnp.asarray(self.heights, dtype), params

    def surface(self, horizontal, heights=None):
        """Surface height (m) at horizontal positions ``(..., D-1)`` (``heights``: the knots'
        heights, default ``self.heights``)."""
        dt = horizontal.dtype
        h = jnp.asarray(self.heights if heights is None else heights, dt)
        if self.ndim == 2:
            return jnp.interp(horizontal[..., 0], jnp.asarray(self.knots[0], dt), h)
        (i, u), (j, v) = (self._cell(horizontal[..., a], a) for a in range(2))
        return (h[j, i] * (1 - u) * (1 - v) + h[j, i + 1] * u * (1 - v) + h[j + 1, i] * (1 - u) * v
                + h[j + 1, i + 1] * u * v)

    def _cell(self, x, axis):
        k = jnp.asarray(self.knots[axis], x.dtype)
        i = jnp.clip(jnp.searchsorted(k, x, side="right") - 1, 0, len(self.knots[axis]) - 2)
        return i, jnp.clip((x - k[i]) / (k[i + 1] - k[i]), 0.0, 1.0)

    def value(self, position, params):
        h, params = self._split(params, position.dtype)
        below = position[..., -1] < self.surface(position[..., :-1], h)
        rho = jnp.asarray(params) if self.fill is None else self.fill.density(position, params)
        return jnp.where(below, rho, 0.0)

    def _surface_crossings(self, p, d, t0, t1, base, h):
        if self.ndim == 2:
            k = jnp.asarray(self.knots[0], p.dtype)
            slope = (h[1:] - h[:-1]) / (k[1:] - k[:-1])
            den = d[1] - slope * d[0]
            ok = jnp.abs(den) > 1e-12
            t = (h[:-1] + slope * (p[0] - k[:-1]) - p[1]) / jnp.where(ok, den, 1.0)
            # only where the crossing lies on its own piece: a spurious root on a piece's
            # extension changes no integral, but could coincide with a real one (equal heights)
            # and give the heights a wrong derivative
            x = p[0] + t * d[0]
            tol = 1e-9 * (k[-1] - k[0])
            on = (x >= k[:-1] - tol) & (x <= k[1:] + tol)
            return jnp.where(ok & on, t, t1)
        # 3-D: within each piece between knot planes the ray is in one bilinear cell: h(t) − z(t)
        # is a quadratic in t, solved for its (up to) two roots.
        tp = jnp.sort(jnp.concatenate([jnp.stack([t0, t1]), jnp.clip(base, t0, t1)]))
        mid = 0.5 * (tp[1:] + tp[:-1])
        x = p[None, :] + mid[:, None] * d
        (i, _), (j, _) = (self._cell(x[:, a], a) for a in range(2))
        kx, ky = (jnp.asarray(k, p.dtype) for k in self.knots)
        hh = h
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
        # only roots inside their own piece (see the 2-D case)
        tol = 1e-9 * (tp[-1] - tp[0] + 1.0)
        own = lambda r: jnp.where((r >= tp[:-1] - tol) & (r <= tp[1:] + tol), r, t1)
        return jnp.concatenate([own(r1), own(r2)])

    def breakpoints(self, p, d, t0, t1, params, max_span=None):
        h, params = self._split(params, p.dtype)
        base = jnp.concatenate([super().breakpoints(p, d, t0, t1, params), plane_crossings(p, d, self.knots, t1)])
        out = [base, self._surface_crossings(p, d, t0, t1, base, h)]
        if self.fill is not None:
            out.append(self.fill.breakpoints(p, d, t0, t1, params, max_span))
        return jnp.concatenate(out)

    def _n_cuts(self):
        """How many cuts (box and knot planes, surface crossings) a ray's walk meets (static)."""
        n_base = 2 * self.ndim + sum(len(k) for k in self.knots)
        return n_base + (len(self.knots[0]) - 1 if self.ndim == 2 else 2 * (n_base + 1))

    def step_integrals(self, p, d, step_m, n_steps: int, params):
        fill = self.fill
        walkable = fill is None or (isinstance(fill, VoxelGrid) and not fill.smooth)
        # the walk pays one event per cut: worth it while the cuts are fewer than the voxel faces
        # (a 2-D profile; a 3-D map's bilinear cells give many more cuts, there one sort is cheaper)
        faces = self.ndim if fill is None else sum(fill.counts)
        if not walkable or self._n_cuts() > faces:
            return super().step_integrals(p, d, step_m, n_steps, params)
        return self._walk_steps(p, d, step_m, n_steps, params)

    def _walk_steps(self, p, d, step_m, n_steps: int, params):
        """:meth:`step_integrals` by walking a uniform or voxel fill's voxels, cut where the ray
        crosses the surface, the knot planes or this box (one small sort of those cuts)."""
        h, params = self._split(params, p.dtype)
        if self.fill is None:
            values, lower, size = jnp.reshape(jnp.asarray(params), (1,) * self.ndim), self.lower, np.subtract(self.upper, self.lower)
        else:
            values, lower, size = self.fill._values(params), self.fill.lower, self.fill.voxel_size
        end = step_m * n_steps
        base = jnp.concatenate([super().breakpoints(p, d, 0.0, end, params), plane_crossings(p, d, self.knots, end)])
        cuts = jnp.sort(jnp.concatenate([base, self._surface_crossings(p, d, 0.0, end, base, h)]))
        # matter or air is constant between consecutive cuts: decide it once per interval
        t = jnp.concatenate([cuts[:1] - 1.0, 0.5 * (cuts[1:] + cuts[:-1]), cuts[-1:] + 1.0])
        x = p + t[:, None] * d
        below = self.inside(x) & (x[:, -1] < self.surface(x[:, :-1], h))
        return voxel_walk_steps(values, p, d, lower, size, step_m, n_steps, extra=cuts, factor=below)

    @property
    def affine(self) -> bool:
        # fixed heights: the surface does not move with params; free ones do (not affine)
        return not self.free_heights and (self.fill is None or self.fill.affine)

    def params_shape(self):
        inner = () if self.fill is None else self.fill.params_shape()
        return (self.heights.shape, inner) if self.free_heights else inner

    def check_params(self, params, name="params"):
        if self.free_heights:
            if not isinstance(params, (tuple, list)) or len(params) != 2:
                raise ValueError(f"{name} must be (heights, fill params) for a HeightMap with free_heights, got "
                                 f"{type(params).__name__}")
            h = _checks.float_array(params[0], f"{name}[0] (heights)", shape=self.heights.shape)
            if _checks.is_concrete(h):
                lo, hi = self.lower[-1], self.upper[-1]
                v = np.asarray(h)
                if not np.all((v >= lo) & (v <= hi)):
                    raise ValueError(f"{name}[0] (heights) must be in the box's z range [{lo:g}, {hi:g}] m, got "
                                     f"values in [{v.min():g}, {v.max():g}]")
            return (h, self._check_fill(params[1], f"{name}[1]"))
        return self._check_fill(params, name)

    def _check_fill(self, params, name):
        if self.fill is not None:
            return self.fill.check_params(params, name)
        return _nonnegative(_checks.float_array(params, name, shape=()), f"{name} (fill density)")
