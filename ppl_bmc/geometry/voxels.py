"""Voxel grids: piecewise-constant or multilinear densities (kg/m³) on a regular grid."""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from ppl_bmc import _checks
from ppl_bmc.geometry.field import Field, _box, _nonnegative
from ppl_bmc.geometry.rays import grid_crossings_near, plane_crossings, voxel_walk_steps

__all__ = ["VoxelGrid"]


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

    def step_integrals(self, p, d, step_m, n_steps: int, params):
        if self.smooth:
            return super().step_integrals(p, d, step_m, n_steps, params)
        values = self._values(params)  # piecewise constant: walk the faces instead of sorting them
        return voxel_walk_steps(values, p, d, self.lower, self.voxel_size, step_m, n_steps)

    @property
    def affine(self) -> bool:
        return True  # density = scale · (values, or their multilinear interpolation)

    def params_shape(self):
        return self.shape

    def check_params(self, params, name="params"):
        arr = _checks.float_array(params, name, shape=self.shape)
        return _nonnegative(arr, f"{name} (voxel densities)")
