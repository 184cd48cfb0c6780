"""Where a muon's steps go: the geometry side of the muon kernel.

A :class:`Path` tells :class:`ppl_bmc.transport.csda.MuonKernel` how a particle starts (its
position, direction and the solid angle it stands for), what each step crosses (its grammage
and length) and where it leaves for the sky; the kernel supplies the physics
(:mod:`ppl_bmc.transport.muon`).  Paths are small immutable values, static under ``jit``.

* :class:`LineOfSight` — a uniform slab along one zenith angle (``transmitted_flux``):
  ``params`` is the opacity in m.w.e., every step crosses the same axis grammage.
* :class:`FieldPath` — straight steps of ``step_m`` metres through a density field from a
  detector's bin (``expected_counts``): ``params`` are the field's.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from ppl_bmc import _checks
from ppl_bmc.geometry.composition import Composition
from ppl_bmc.geometry.field import Field
from ppl_bmc.geometry.rays import box_interval, line_coords, line_direction
from ppl_bmc.physics.constants import MWE
from ppl_bmc.transport.energy import Line

__all__ = ["Path", "LineOfSight", "FieldPath", "EXIT_TOLERANCE_M"]

#: A particle counts as out of the scene when less than this much of its line (m) is left inside.
EXIT_TOLERANCE_M = 1e-3


class Path(ABC):
    """The geometry of a backward walk (one particle; pure functions).

    ``ndim`` is the dimension of positions and directions; :meth:`start` reads ``ndim − 1``
    uniforms (the kernel draws one more, for the energy).
    """

    ndim: int = 2

    @abstractmethod
    def start(self, ctx, u):
        """``(position (D,) m, direction (D,), omega)`` of a particle of the reading ``ctx`` from
        ``ndim − 1`` uniforms; ``omega`` (sr, or 1) multiplies the initial weight."""

    def check_steps(self, n_steps: int):
        """Raise ``ValueError`` when a walk of ``n_steps`` steps cannot follow this path; any
        number by default."""
        del n_steps

    def trace(self, position, direction, params):
        """The opacity (kg/m², ``(n_steps,)``) of every step of a straight walk from ``position``
        along ``direction``, computed once at the start; ``None`` (the default) when each step
        integrates its own segment."""
        del position, direction, params
        return None

    @abstractmethod
    def segment(self, position, direction, params, grammages=None, k=None):
        """``(grammage kg/m², length m, ok)`` of step ``k`` (1-based) starting at ``position``
        along ``direction`` (``grammages``: what :meth:`trace` returned); length ``None`` when the
        step is in the energy-loss material at its nominal density; ``ok`` False gives the
        particle weight 0."""

    @abstractmethod
    def move(self, position, direction, sign=1.0):
        """The position after a step along ``direction`` (``sign=-1``: before it)."""

    @abstractmethod
    def exit(self, position, direction, ctx):
        """``(left, cos_zenith)``: whether the particle has left the matter for the sky, and
        the cosine of its zenith angle there."""

    @abstractmethod
    def line(self, position, direction, params, ctx, grammages=None):
        """The straight line from ``position`` along ``direction`` to the sky, a
        :class:`~ppl_bmc.transport.energy.Line` (its grammage, length and exit cos zenith): what
        a :class:`~ppl_bmc.transport.energy.LineOfSightEnergy` proposal is built from
        (``grammages``: what :meth:`trace` returned, if anything)."""

    #: Whether :meth:`turn` and :meth:`scattering_grammage` are implemented (multiple scattering).
    scatters: bool = False

    def turn(self, direction, angle, ctx):
        """``(direction, ok)`` after a multiple-scattering deflection by ``angle`` (rad; ``ndim − 1``
        projected angles, (D − 1,)) in the reading ``ctx``; ``turn(turn(d, a, c)[0], -a, c)[0] == d``
        to float rounding (the replay adjoint inverts it); ``ok`` False where the deflection left
        the region where that holds (the particle gets weight 0)."""
        raise ValueError(f"multiple scattering is not available on a {type(self).__name__}")

    def scattering_grammage(self, position, params):
        """The grammage (kg/m²) that sets the deflection at the end of a step ending at
        ``position``: a function of that position and ``params`` only, never of the step's
        direction (the replay adjoint inverts the deflection before the segment)."""
        raise ValueError(f"multiple scattering is not available on a {type(self).__name__}")


@dataclass(frozen=True)
class LineOfSight(Path):
    """A uniform slab crossed in ``n_steps`` equal steps of axis grammage along one line of sight.

    The direction is the angle (rad, a scalar) between a deflected particle and the line of
    sight, in the plane of view; its path grammage per step is the axis grammage over
    cos(angle), in the energy-loss material at its nominal density.  ``params``: the opacity along the line of sight (m.w.e., scalar).
    ``ctx``: ``{"zenith": rad, "k_min": GeV}``.
    """

    n_steps: int
    ndim: int = 2
    scatters = True

    def start(self, ctx, u):
        del u  # the direction is the line of sight
        dt = jnp.result_type(ctx["zenith"])
        return jnp.zeros(0, dt), jnp.zeros((), dt), 1.0  # no position (only grammage matters), angle 0

    def scattering_grammage(self, position, params):
        del position  # every step crosses the same axis grammage
        return MWE * params / self.n_steps

    def turn(self, direction, angle, ctx):
        return direction + angle[0], True  # sideways muons are stopped by segment()

    def segment(self, position, direction, params, grammages=None, k=None):
        cos_a = jnp.cos(direction)
        forward = cos_a > 0  # a muon turned sideways never crosses the slab
        grammage = self.scattering_grammage(position, params) / jnp.where(forward, cos_a, 1.0)
        return grammage, None, forward  # length None: the material at its nominal density

    def move(self, position, direction, sign=1.0):
        return position  # only the grammage matters along a line of sight

    def line(self, position, direction, params, ctx, grammages=None):
        return Line(MWE * params, None, jnp.cos(ctx["zenith"] + direction))

    def exit(self, position, direction, ctx):
        return True, jnp.cos(ctx["zenith"] + direction)


@dataclass(frozen=True)
class FieldPath(Path):
    """Straight steps of ``step_m`` metres from a detector through ``field`` to the sky.

    ``ctx`` per reading (:func:`ppl_bmc.detectors.readings`): ``origin`` (D,) m, bin ``lo``/``hi``
    (D − 1,) in sampling coordinates (α in 2-D; cos θ and φ in 3-D; a telescope line of sight's
    slopes), ``omega``, ``k_min`` (GeV), ``frame``, ``tent``.  Directions are uniform in solid
    angle within a bin; tent-distributed in slope for a telescope line of sight, with weight
    ``omega·cos⁴ϑ`` (its étendue).  A step's opacity is the field's exact ray integral; a particle
    leaves when less than :data:`EXIT_TOLERANCE_M` of its line is left inside the field's box.

    ``n_steps`` (static): when given, the walk is straight (no scattering), so each particle's
    line is traversed once at its start (:meth:`Field.step_integrals
    <ppl_bmc.geometry.field.Field.step_integrals>`: one sort of the whole ray's breakpoints)
    and step k reads its opacity from that (:meth:`trace`); the same numbers to float rounding
    as integrating every step, and the line-of-sight energy proposal reuses them.

    A :class:`~ppl_bmc.geometry.composition.Composition` field: every grammage is a vector
    ``(M,)`` with one entry per material (the kernel's material is then the field's
    :class:`~ppl_bmc.physics.materials.Blend`).
    """

    field: Field
    step_m: float
    n_steps: int | None = None
    scatters = True

    def __post_init__(self):
        if not isinstance(self.field, Field):
            raise ValueError(f"field must be a ppl_bmc.geometry Field, got {type(self.field).__name__}")
        if not (np.isfinite(self.step_m) and self.step_m > 0):
            raise ValueError(f"step_m must be a finite length > 0 m, got {self.step_m}")
        if self.n_steps is not None:
            object.__setattr__(self, "n_steps", _checks.positive_int(self.n_steps, "n_steps"))

    @property
    def ndim(self):
        return self.field.ndim

    def start(self, ctx, u):
        coords = line_coords(u, ctx["lo"], ctx["hi"], ctx["tent"])
        d, factor = line_direction(coords, ctx["frame"], ctx["tent"], self.ndim)
        return ctx["origin"], d, ctx["omega"] * factor

    def check_steps(self, n_steps: int):
        if self.n_steps is not None and n_steps != self.n_steps:
            raise ValueError(f"n_steps={n_steps} does not match the FieldPath's n_steps={self.n_steps} (its walks are "
                             "traced once for that many steps): walk the same number, or build FieldPath(n_steps=None)")

    @property
    def composed(self) -> bool:
        """Whether the field holds several materials (grammages are vectors (M,))."""
        return isinstance(self.field, Composition)

    def _integrate(self, position, direction, t0, t1, params, max_span=None):
        if self.composed:
            return self.field.part_integrals(position, direction, t0, t1, params, max_span)
        return self.field.integrate(position, direction, t0, t1, params, max_span)

    def trace(self, position, direction, params):
        if self.n_steps is None:
            return None
        if self.composed:
            return self.field.part_step_integrals(position, direction, self.step_m, self.n_steps, params)
        return self.field.step_integrals(position, direction, self.step_m, self.n_steps, params)

    def segment(self, position, direction, params, grammages=None, k=None):
        if grammages is None:
            x = self._integrate(position, direction, 0.0, self.step_m, params, max_span=self.step_m)
        else:
            x = grammages[k - 1]
        t_in, t_out = box_interval(position, direction, self.field.lower, self.field.upper)
        length = jnp.clip(t_out, 0.0, self.step_m) - jnp.clip(t_in, 0.0, self.step_m)
        return x, length, True

    def move(self, position, direction, sign=1.0):
        return position + sign * self.step_m * direction

    def line(self, position, direction, params, ctx, grammages=None):
        t_in, t_out = box_interval(position, direction, self.field.lower, self.field.upper)
        if grammages is None:
            x = self._integrate(position, direction, t_in, t_out, params)
        else:  # the steps cover the line (n_steps is checked to take every ray out)
            x = jnp.sum(grammages, axis=0)
        return Line(x, t_out - t_in, direction[-1])

    def exit(self, position, direction, ctx):
        t_in, t_out = box_interval(position, direction, self.field.lower, self.field.upper)
        return (t_out - t_in) <= EXIT_TOLERANCE_M, direction[-1]

    def scattering_grammage(self, position, params):
        """``ρ(position)·step_m``: the density at the step's end stands for the step (the medium
        at the particle's position, as PUMAS's locally uniform media; accurate where steps are
        short against the density's structure).  0 outside the field's box (open sky).  A
        :class:`~ppl_bmc.geometry.composition.Composition`: one per material, (M,)."""
        if self.composed:
            return self.field.partials(position, params) * self.step_m
        return self.field.density(position, params) * self.step_m

    def turn(self, direction, angle, ctx):
        """2-D: the direction rotated by ``angle[0]`` in the plane (always ``ok``).  3-D: the
        polar angle ϑ and azimuth φ of the direction about an axis p perpendicular to the
        reading's central direction c (so every direction of the reading lies near p's equator)
        move by ``angle[0]`` and ``angle[1] / sin ϑ̄`` (ϑ̄ the mean of the polar angles before and
        after: the map is its own inverse under ``-angle``), two orthogonal projected
        deflections to first order; ``ok`` False where ϑ would leave (0, π) (a muon turned
        by about 90° from its line of sight)."""
        if self.ndim == 2:
            c, s = jnp.cos(angle[0]), jnp.sin(angle[0])
            return jnp.stack([c * direction[0] - s * direction[1], s * direction[0] + c * direction[1]]), True
        e, f, p = _polar_frame(ctx, direction.dtype)
        theta = jnp.arccos(jnp.clip(jnp.dot(direction, p), -1.0, 1.0))
        phi = jnp.arctan2(jnp.dot(direction, f), jnp.dot(direction, e))
        theta2 = theta + angle[0]
        ok = (theta2 > 0) & (theta2 < jnp.pi)
        phi2 = phi + angle[1] / jnp.sin(jnp.where(ok, 0.5 * (theta + theta2), 0.5 * jnp.pi))
        s2 = jnp.sin(theta2)
        return s2 * (jnp.cos(phi2) * e + jnp.sin(phi2) * f) + jnp.cos(theta2) * p, ok


def _polar_frame(ctx, dtype):
    """``(e, f, p)``: an orthonormal frame with e the central direction of the 3-D reading ``ctx``
    and the polar axis p perpendicular to it (horizontal unless e is nearly vertical)."""
    centre = line_coords(jnp.full(2, 0.5, dtype), ctx["lo"], ctx["hi"], ctx["tent"])
    e, _ = line_direction(centre, ctx["frame"], ctx["tent"], 3)
    up = jnp.where(jnp.abs(e[2]) < 0.9, jnp.array([0.0, 0.0, 1.0], dtype), jnp.array([1.0, 0.0, 0.0], dtype))
    p = jnp.cross(e, up)
    p = p / jnp.linalg.norm(p)
    return e, jnp.cross(p, e), p
