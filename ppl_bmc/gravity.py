"""Gravity from the same density field as the muons: the vertical attraction at stations.

The field is cut into right rectangular prisms of uniform density and each prism's downward
attraction at a station is the closed form of Nagy, Papp & Benedek (J. Geodesy 74, 2000, eq. 9;
also Plouff 1976):

    g_z = G ρ Σ_{i,j,k ∈ {1,2}} (−1)^{i+j+k} [ x ln(y + r) + y ln(x + r) − z atan(x y / (z r)) ]

with (x, y, z) the corner coordinates relative to the station (z measured downwards) and r the
corner's distance.  Since the attraction is linear in the densities, a :class:`GravitySurvey`
tabulates once (numpy, float64) the sensitivity ``K`` (mGal per kg/m³, stations × params) and
applies it in JAX: ``g = K @ params`` is differentiable and as cheap as a matrix product.

Units: metres, kg/m³, and the anomaly in mGal (1 mGal = 1e-5 m/s²), positive downwards (mass
below a station attracts it down).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from ppl_bmc.geometry.field import Field
from ppl_bmc.geometry.terrain import HeightMap
from ppl_bmc.geometry.voxels import VoxelGrid

__all__ = ["G", "MGAL", "GravitySurvey", "prism_gz"]

#: Newtonian constant of gravitation (m³ kg⁻¹ s⁻², CODATA 2018).
G = 6.67430e-11
#: One milligal in m/s².
MGAL = 1e-5


def _log_plus(a, r):
    """ln(a + r) for r = |(a, b, c)| ≥ |a|, stable where a ≈ −r: ln((r² − a²)/(r − a)); 0 on the
    axis itself (its factor vanishes there)."""
    rest = r * r - a * a
    pos = a >= 0
    out = np.zeros_like(r)
    np.log(a + r, out=out, where=pos & (a + r > 0))
    ok = ~pos & (rest > 0)
    out[ok] = np.log(rest[ok] / (r[ok] - a[ok]))
    return out


def prism_gz(prisms, stations):
    """Downward attraction (mGal per kg/m³) of unit-density prisms at stations.

    ``prisms``: ``(N, 6)`` bounds ``(x0, x1, y0, y1, z0, z1)`` (m, z up); ``stations``: ``(M, 3)``
    (m).  Returns ``(M, N)``; multiply by densities (kg/m³).  float64 numpy.
    """
    p = np.asarray(prisms, dtype=float)
    s = np.asarray(stations, dtype=float)
    if p.ndim != 2 or p.shape[1] != 6 or not np.all(np.isfinite(p)):
        raise ValueError(f"prisms must be a finite (N, 6) array of (x0, x1, y0, y1, z0, z1) in m, got {p.shape}")
    if s.ndim != 2 or s.shape[1] != 3 or not np.all(np.isfinite(s)):
        raise ValueError(f"stations must be a finite (M, 3) array of (x, y, z) in m, got {s.shape}")
    if np.any(p[:, 1] < p[:, 0]) or np.any(p[:, 3] < p[:, 2]) or np.any(p[:, 5] < p[:, 4]):
        raise ValueError("prisms need x0 <= x1, y0 <= y1 and z0 <= z1")
    out = np.zeros((len(s), len(p)))
    for i in (0, 1):
        x = p[None, :, i] - s[:, None, 0]
        for j in (2, 3):
            y = p[None, :, j] - s[:, None, 1]
            for k in (4, 5):
                z = s[:, None, 2] - p[None, :, k]  # downwards
                r = np.sqrt(x * x + y * y + z * z)
                zr = z * r
                at = np.zeros_like(r)
                nz = zr != 0
                at[nz] = np.arctan(x[nz] * y[nz] / zr[nz])
                term = x * _log_plus(y, r) + y * _log_plus(x, r) - z * at
                # (−1)^(i+j+k) with the upper bounds positive: sign of the box's corner
                sign = (1 if i else -1) * (1 if j == 3 else -1) * (1 if k == 5 else -1)
                out += sign * term
    return G * out / MGAL


def _voxel_prisms(grid: VoxelGrid):
    """Prisms (n_z·n_y·n_x, 6) of a 3-D grid in its params order (z first)."""
    edges = [np.linspace(lo, hi, n + 1) for lo, hi, n in zip(grid.lower, grid.upper, grid.shape[::-1])]
    ex, ey, ez = edges
    iz, iy, ix = np.meshgrid(*(np.arange(n) for n in grid.shape), indexing="ij")
    iz, iy, ix = iz.ravel(), iy.ravel(), ix.ravel()
    return np.stack([ex[ix], ex[ix + 1], ey[iy], ey[iy + 1], ez[iz], ez[iz + 1]], axis=1)


def _clipped_columns(prisms, terrain: HeightMap, sub: int):
    """Each prism split into ``sub × sub`` columns whose top is clipped to the terrain surface at
    the column's centre: ``(N·sub², 6)`` prisms and the index of the prism each came from."""
    f = (np.arange(sub) + 0.5) / sub
    fx, fy = np.meshgrid(f, f, indexing="ij")
    fx, fy = fx.ravel(), fy.ravel()
    w = 1.0 / sub
    x0 = prisms[:, None, 0] + (prisms[:, None, 1] - prisms[:, None, 0]) * (fx - 0.5 * w)
    x1 = x0 + (prisms[:, None, 1] - prisms[:, None, 0]) * w
    y0 = prisms[:, None, 2] + (prisms[:, None, 3] - prisms[:, None, 2]) * (fy - 0.5 * w)
    y1 = y0 + (prisms[:, None, 3] - prisms[:, None, 2]) * w
    h = np.asarray(terrain.surface(jnp.asarray(np.stack([0.5 * (x0 + x1), 0.5 * (y0 + y1)], -1))), dtype=float)
    z0 = np.broadcast_to(prisms[:, None, 4], x0.shape)
    z1 = np.clip(h, z0, prisms[:, None, 5])
    cols = np.stack([x0, x1, y0, y1, z0, z1], axis=-1).reshape(-1, 6)
    return cols, np.repeat(np.arange(len(prisms)), sub * sub)


class GravitySurvey:
    """Vertical gravity anomaly at ``stations`` from a 3-D density field, linear in its params.

    Parameters
    ----------
    field : VoxelGrid (3-D), or HeightMap (3-D) with ``fill=None`` (one density) or a VoxelGrid fill
        The density field of the muon scene.  Terrain is cut at its surface: each voxel (or each
        cell of the height map) is split into ``sub × sub`` columns whose tops follow the surface.
    stations : array ``(M, 3)``
        Station positions (m), above the terrain's surface.
    sub : int
        Columns per voxel side under terrain (≥ 1); the surface error falls as 1/sub².

    ``survey(params)`` → ``(M,)`` mGal (JAX, differentiable); ``survey.sensitivity`` is the
    ``(M, n_params)`` matrix (mGal per kg/m³).
    """

    def __init__(self, field: Field, stations, *, sub: int = 4):
        s = np.asarray(stations, dtype=float)
        if s.ndim != 2 or s.shape[1] != 3 or not np.all(np.isfinite(s)) or len(s) < 1:
            raise ValueError(f"stations must be a finite (M, 3) array of (x, y, z) in m, got shape {s.shape}")
        if isinstance(sub, bool) or not isinstance(sub, (int, np.integer)) or sub < 1:
            raise ValueError(f"sub must be an integer >= 1, got {sub!r}")
        if not isinstance(field, Field) or field.ndim != 3:
            raise ValueError(f"field must be a 3-D ppl_bmc.geometry Field, got {field!r}")
        if isinstance(field, HeightMap):
            if field.free_heights:
                raise ValueError("field: gravity is linear in the densities of a fixed surface; a HeightMap with "
                                 "free_heights is not (make the survey from the terrain with free_heights=False)")
            h = np.asarray(field.surface(jnp.asarray(s[:, :2])), dtype=float)
            inside = field.inside(jnp.asarray(s))
            below = np.flatnonzero((s[:, 2] < h - 1e-6) & np.asarray(inside))
            if len(below):
                i = below[0]
                raise ValueError(f"stations: {len(below)} station(s) inside the terrain, e.g. station {i} at "
                                 f"{tuple(s[i])} m, {h[i] - s[i, 2]:.3g} m below the surface; gravity stations "
                                 "stand on or above it")
            if field.fill is None:
                kx, ky = field.knots
                cells = np.array([[kx[i], kx[i + 1], ky[j], ky[j + 1], field.lower[2], field.upper[2]]
                                  for j in range(len(ky) - 1) for i in range(len(kx) - 1)])
                cols, _ = _clipped_columns(cells, field, sub)
                k = prism_gz(cols, s).sum(axis=1, keepdims=True)
                self._shape = ()
            elif isinstance(field.fill, VoxelGrid) and not field.fill.smooth:
                cols, owner = _clipped_columns(_voxel_prisms(field.fill), field, sub)
                k = self._by_owner(prism_gz(cols, s), owner, field.fill)
                self._shape = field.fill.shape
            else:
                raise ValueError("gravity under terrain needs fill=None or a piecewise-constant VoxelGrid fill, "
                                 f"got {field.fill!r}")
        elif isinstance(field, VoxelGrid) and not field.smooth:
            k = self._by_owner(prism_gz(_voxel_prisms(field), s), np.arange(int(np.prod(field.shape))), field)
            self._shape = field.shape
        else:
            raise ValueError(f"gravity is available for a piecewise-constant VoxelGrid or a HeightMap, got "
                             f"{type(field).__name__}")
        self.field, self.stations, self.sub = field, s, sub
        self.sensitivity = k

    @staticmethod
    def _by_owner(k, owner, grid: VoxelGrid):
        n = int(np.prod(grid.shape))
        out = np.zeros((k.shape[0], n))
        np.add.at(out.T, owner, k.T)
        if grid.scale is not None:
            out = out * grid.scale.ravel()[None, :]
        return out

    def __call__(self, params):
        """Anomaly (mGal) at every station, ``(M,)``, for ``params`` (kg/m³) of the field."""
        p = self.field.check_params(params)
        p = jnp.asarray(p)
        return jnp.asarray(self.sensitivity, p.dtype) @ jnp.reshape(p, (-1,))
