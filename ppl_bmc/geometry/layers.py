"""Horizontal layers of uniform density (kg/m³)."""

from __future__ import annotations

from dataclasses import dataclass, field as dc_field

import jax.numpy as jnp
import numpy as np

from ppl_bmc import _checks
from ppl_bmc.geometry.field import Field, _box, _nonnegative
from ppl_bmc.geometry.rays import plane_crossings

__all__ = ["Layers"]


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

    @property
    def affine(self) -> bool:
        return True  # density = the layer's param

    def params_shape(self):
        return (len(self.z_edges) - 1,)

    def check_params(self, params, name="params"):
        return _nonnegative(_checks.float_array(params, name, shape=self.params_shape()), f"{name} (layer densities)")
