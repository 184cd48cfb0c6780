"""The base of density fields, :class:`Field` (one field family per module: ``voxels``,
``layers``, ``blobs``, ``terrain``, ``combine``).

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

from abc import ABC, abstractmethod

import jax.numpy as jnp
import numpy as np

from ppl_bmc import _checks
from ppl_bmc.geometry.rays import integrate_pieces, integrate_steps, plane_crossings

__all__ = ["Field"]


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


class Field(ABC):
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
    def affine(self) -> bool:
        """Whether every ray integral is an affine function of ``params`` (``c + J·params``):
        then fits precompute ``c`` and the sparse ``J`` (path lengths per parameter) once
        (:func:`ppl_bmc.quadrature.path_lengths`).  False unless a field says so."""
        return False

    @property
    def ndim(self) -> int:
        """2 (x, z) or 3 (x, y, z)."""
        return len(self.lower)

    def inside(self, position):
        """Whether positions ``(..., D)`` (m) are inside the box (boolean ``(...)``)."""
        lo, hi = jnp.asarray(self.lower, position.dtype), jnp.asarray(self.upper, position.dtype)
        return jnp.all((position >= lo) & (position <= hi), axis=-1)

    @abstractmethod
    def value(self, position, params):
        """Density (kg/m³) at positions ``(..., D)`` assumed inside the box."""

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

    def step_integrals(self, p, d, step_m, n_steps: int, params):
        """Opacities (kg/m², shape ``(n_steps,)``) of the consecutive segments
        ``t ∈ [k·step_m, (k+1)·step_m]`` of the ray ``p + t·d``, k = 0 … n_steps − 1: one
        traversal of the whole ray (one sort of its breakpoints) instead of one per step; each
        equals ``integrate(p, d, k·step_m, (k+1)·step_m, params)`` to float rounding."""
        at = lambda t: self.density(p + t[..., None] * d, params)
        breaks = self.breakpoints(p, d, 0.0, step_m * n_steps, params)
        return integrate_steps(at, breaks, step_m, n_steps, self.n_nodes, self.n_sub)

    @abstractmethod
    def check_params(self, params, name: str = "params"):
        """Validate and convert ``params`` (shapes; concrete values non-negative); returns them."""

    @abstractmethod
    def params_shape(self):
        """The pytree of shapes ``check_params`` expects (for error messages and priors)."""
