"""Fields built from fields: sums (:class:`Composite`) and two-material mixtures (:class:`Mixture`)."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from ppl_bmc import _checks
from ppl_bmc.geometry.field import Field

__all__ = ["Composite", "Mixture"]


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

    def step_integrals(self, p, d, step_m, n_steps, params):
        return sum(f.step_integrals(p, d, step_m, n_steps, q) for f, q in zip(self.parts, params))

    def breakpoints(self, p, d, t0, t1, params, max_span=None):
        return jnp.concatenate([f.breakpoints(p, d, t0, t1, q, max_span) for f, q in zip(self.parts, params)])

    @property
    def affine(self) -> bool:
        return all(f.affine for f in self.parts)

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

    @property
    def affine(self) -> bool:
        return self.fraction.affine  # density_b + fraction · (density_a − density_b)

    def params_shape(self):
        return self.fraction.params_shape()

    def check_params(self, params, name="params"):
        q = self.fraction.check_params(params, name)
        leaves = jax.tree_util.tree_leaves(q)
        if all(_checks.is_concrete(x) for x in leaves) and any(np.any(np.asarray(x) > 1) for x in leaves):
            raise ValueError(f"{name} (mixing fractions) must be in [0, 1]")
        return q
