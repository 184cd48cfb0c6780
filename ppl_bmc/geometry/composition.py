"""Scenes of several materials: :class:`Composition`, a field whose matter is a mix of materials.

Each material m has a partial density ρ_m(x) (kg/m³; their sum is the density).  A ray
crosses the grammage ``X_m = ∫ρ_m dl`` of each (:meth:`Composition.part_integrals`), and the
transport kernel loses energy in each material by its own tables (Bragg additivity by mass:
``dK = Σ S_m dX_m``).  Two ways to give the partial densities:

* fractions by volume of the materials at their nominal densities (no ``density`` field):
  ``ρ_m = f_m·ρ_m⁰`` — rock with a void filled with water (``f = 0``) or air;
* fractions by mass of a density field (``density`` given): ``ρ_m = w_m·ρ`` — a density to infer
  and the share of each material in it.

The last material's fraction is one minus the others' (so two materials need one fraction
field).  Fractions outside [0, 1] are refused.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from ppl_bmc import _checks
from ppl_bmc.geometry.field import Field
from ppl_bmc.geometry.rays import _pieces, integrate_pieces, integrate_steps, voxel_walk_steps
from ppl_bmc.geometry.voxels import VoxelGrid
from ppl_bmc.physics.materials import Blend

__all__ = ["Composition"]


@dataclass(frozen=True, eq=False)
class Composition(Field):
    """Matter made of several ``materials`` mixed by ``fractions`` fields.

    Parameters
    ----------
    materials : sequence of Material or str
        M ≥ 2 materials (:class:`ppl_bmc.materials.Material` or names from
        :func:`ppl_bmc.materials.names`); the first is the reference of the walk's energies.
    fractions : Field or sequence of Field
        M − 1 fields whose values (in [0, 1]) are the fractions of the first M − 1 materials;
        the last material takes the rest.  By volume without ``density``, by mass with it.
    density : Field or None
        ``None``: ``ρ_m = f_m·ρ_m⁰`` with each material's nominal density ρ_m⁰ (volume fractions).
        A field: its density (kg/m³) split by mass, ``ρ_m = w_m·ρ``.

    ``params``: without ``density``, a tuple of the M − 1 fraction fields' params; with it,
    ``(density params, (fraction params, ...))``.  Units: kg/m³, m.
    """

    materials: tuple = ()
    fractions: tuple = ()
    density_field: Field | None = None

    def __init__(self, materials, fractions, density=None):
        blend = Blend(materials, "materials")
        fractions = (fractions,) if isinstance(fractions, Field) else tuple(fractions)
        if len(fractions) != len(blend) - 1 or not all(isinstance(f, Field) for f in fractions):
            raise ValueError(f"fractions must be {len(blend) - 1} Field(s) (one per material but the last), got "
                             f"{fractions!r}")
        if density is not None and not isinstance(density, Field):
            raise ValueError(f"density must be a Field or None, got {density!r}")
        parts = fractions + (() if density is None else (density,))
        if len({f.ndim for f in parts}) != 1:
            raise ValueError("Composition: the fraction and density fields must have the same dimension")
        object.__setattr__(self, "materials", blend.materials)
        object.__setattr__(self, "fractions", fractions)
        object.__setattr__(self, "density_field", density)
        object.__setattr__(self, "n_nodes", max(f.n_nodes for f in parts))
        object.__setattr__(self, "n_sub", max(f.n_sub for f in parts))

    @property
    def blend(self) -> Blend:
        """The materials as a :class:`ppl_bmc.materials.Blend` (what the transport kernel uses)."""
        return Blend(self.materials)

    @property
    def _fields(self):
        return self.fractions + (() if self.density_field is None else (self.density_field,))

    @property
    def lower(self):
        return tuple(np.min([f.lower for f in self._fields], axis=0))

    @property
    def upper(self):
        return tuple(np.max([f.upper for f in self._fields], axis=0))

    def _split(self, params):
        if self.density_field is None:
            return None, params
        return params

    def partials(self, position, params):
        """Partial densities (kg/m³) of the materials at positions ``(..., D)``: ``(..., M)``;
        0 outside the box."""
        position = jnp.asarray(position)
        grid = self._one_grid
        if grid is not None:  # one voxel look-up for every material
            parts = grid.value(position, self._voxel_partials(params))
            return jnp.where(self.inside(position)[..., None], parts, 0.0)
        rho, fractions = self._split(params)
        f = [field.density(position, q) for field, q in zip(self.fractions, fractions)]
        f = f + [1.0 - sum(f)]
        if self.density_field is None:
            parts = [fm * m.density for fm, m in zip(f, self.materials)]
        else:
            total = self.density_field.density(position, rho)
            parts = [fm * total for fm in f]
        return jnp.where(self.inside(position)[..., None], jnp.stack(parts, axis=-1), 0.0)

    def value(self, position, params):
        return jnp.sum(self.partials(position, params), axis=-1)

    def breakpoints(self, p, d, t0, t1, params, max_span=None):
        grid = self._one_grid
        if grid is not None:  # the fields share their voxel faces
            return grid.breakpoints(p, d, t0, t1, None, max_span)
        rho, fractions = self._split(params)
        cuts = [f.breakpoints(p, d, t0, t1, q, max_span) for f, q in zip(self.fractions, fractions)]
        if self.density_field is not None:
            cuts.append(self.density_field.breakpoints(p, d, t0, t1, rho, max_span))
        return jnp.concatenate(cuts)

    def part_integrals(self, p, d, t0, t1, params, max_span=None):
        """Grammages (kg/m², ``(M,)``) of each material along the segment ``p + t·d``,
        ``t ∈ [t0, t1]`` (m): the ray integrals of the partial densities (exact for
        piecewise-constant fractions and densities, as :meth:`Field.integrate`)."""
        breaks = self.breakpoints(p, d, t0, t1, params, max_span)
        return integrate_pieces(self._parts_at(p, d, params), breaks, t0, t1, self.n_nodes, self.n_sub)

    def part_pieces(self, p, d, t0, t1, params, n_sub: int = 1):
        """Grammages (kg/m², ``(n_pieces, M)``) of each material on the consecutive pieces of the
        segment ``p + t·d``, ``t ∈ [t0, t1]``, in order of distance from ``p`` (cut at every
        breakpoint, each piece into ``n_sub`` equal parts at least; a static number of pieces,
        those outside the segment empty): what a deterministic transport crosses in turn."""
        breaks = self.breakpoints(p, d, t0, t1, params)
        t = jnp.sort(jnp.concatenate([jnp.stack([t0, t1]), jnp.clip(breaks, t0, t1)]))
        return _pieces(self._parts_at(p, d, params), t, self.n_nodes, max(self.n_sub, n_sub))[0]

    def part_step_integrals(self, p, d, step_m, n_steps: int, params):
        """Grammages (kg/m², ``(n_steps, M)``) of each material over the consecutive steps
        ``[k·step_m, (k+1)·step_m]`` of the ray (see :meth:`Field.step_integrals`)."""
        grid = self._one_grid
        if grid is not None:  # piecewise constant on one grid: walk its faces once for every material
            return voxel_walk_steps(self._voxel_partials(params), p, d, grid.lower, grid.voxel_size, step_m, n_steps)
        breaks = self.breakpoints(p, d, 0.0, step_m * n_steps, params)
        return integrate_steps(self._parts_at(p, d, params), breaks, step_m, n_steps, self.n_nodes, self.n_sub)

    @property
    def _one_grid(self):
        """The common grid when every field is a piecewise-constant :class:`VoxelGrid` on the same
        voxels, without a fixed scale (the fast path: one walk, one look-up), else ``None``."""
        grids = self._fields
        first = grids[0]
        same = all(isinstance(g, VoxelGrid) and not g.smooth and g.scale is None and g.lower == first.lower
                   and g.upper == first.upper and g.shape == first.shape for g in grids)
        return first if same else None

    def _voxel_partials(self, params):
        """Partial densities per voxel, ``grid.shape + (M,)`` (kg/m³), on the common grid."""
        rho, fractions = self._split(params)
        f = [field._values(q) for field, q in zip(self.fractions, fractions)]
        f = f + [1.0 - sum(f)]
        if self.density_field is None:
            return jnp.stack([fm * m.density for fm, m in zip(f, self.materials)], axis=-1)
        total = self.density_field._values(rho)
        return jnp.stack([fm * total for fm in f], axis=-1)

    def _parts_at(self, p, d, params):
        """The partial densities (..., M) at distances (...) along ``p + t·d``: one pass over
        the pieces of a ray serves every material."""
        return lambda t: self.partials(p + t[..., None] * d, params)

    def params_shape(self):
        shapes = tuple(f.params_shape() for f in self.fractions)
        return shapes if self.density_field is None else (self.density_field.params_shape(), shapes)

    def check_params(self, params, name="params"):
        n = len(self.fractions)
        if self.density_field is None:
            rho, fractions, fname = None, params, name
        else:
            if not isinstance(params, (tuple, list)) or len(params) != 2:
                raise ValueError(f"{name} must be (density params, (fraction params, ...)) for a Composition with "
                                 f"a density field, got {type(params).__name__}")
            rho, fractions, fname = self.density_field.check_params(params[0], f"{name}[0]"), params[1], f"{name}[1]"
        if not isinstance(fractions, (tuple, list)) or len(fractions) != n:
            raise ValueError(f"{fname} must be a tuple of {n} fraction field params (one per material but the last), "
                             f"got {type(fractions).__name__}")
        fractions = tuple(f.check_params(q, f"{fname}[{i}]") for i, (f, q) in enumerate(zip(self.fractions, fractions)))
        leaves = jax.tree_util.tree_leaves(fractions)
        if all(_checks.is_concrete(x) for x in leaves):
            for i, q in enumerate(fractions):
                top = max((float(np.max(np.asarray(x))) for x in jax.tree_util.tree_leaves(q)), default=0.0)
                if top > 1:
                    raise ValueError(f"{fname}[{i}] (fractions of {self.materials[i].name}) must be in [0, 1], got "
                                     f"values up to {top:g}")
            shapes = {np.shape(x) for x in leaves}
            if len(leaves) > 1 and len(shapes) == 1 and np.any(sum(np.asarray(x) for x in leaves) > 1 + 1e-6):
                raise ValueError(f"{fname} (material fractions) must sum to at most 1 where they overlap")
        return fractions if self.density_field is None else (rho, fractions)
