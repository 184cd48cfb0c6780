"""Backward CSDA transport of muons: the one BMC kernel and the deterministic quadrature.

:class:`MuonKernel` walks one muon backward from a detector to the sky along a
:class:`~ppl_bmc.transport.paths.Path` (a slab's line of sight, or a density field), with the
physics of :mod:`ppl_bmc.transport.muon`: a detector-side energy drawn from a proposal
(:mod:`ppl_bmc.transport.energy`), a CSDA advance
per step (Jacobian ``S(K')/S(K)``), the decay weight, optional multiple scattering and the sky
flux at the exit.  :func:`straight_line_flux` integrates the same
physics over energy with Gauss-Legendre nodes (straight line, no scattering).

Multiple scattering (``scattering=True``): after each step the direction turns by D − 1
projected angles δ = √(g/λ(K))·z (in the plane of view in 2-D; two orthogonal ones in 3-D), z
standard normals drawn from the step's uniforms, g the path's
:meth:`~ppl_bmc.transport.paths.Path.scattering_grammage` at the step's end and λ(K) the
transport path (kg/m²) at the energy reached: the projected small-angle variance s/λ₁.  Each
step is inverted exactly (the deflection uses only the post-step state: energy, position), so
the replay adjoint is exact although the path moves with the parameters.  Muons turned sideways
or exiting below the horizon get weight 0.

The energies (and with scattering the directions) depend on the parameters, so the replay
adjoint runs backward; the step is split (``split_step``): a segment's grammage — for a field,
the expensive ray integral — depends only on the position and direction, so on the way back one
``vjp`` of it yields both the earlier range and the step's cotangent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from ppl_bmc.physics.materials import Blend
from ppl_bmc.transport.energy import EnergySampling, LineOfSightEnergy
from ppl_bmc.transport.kernel import Kernel
from ppl_bmc.transport.muon import (
    MuonState,
    csda_advance,
    csda_retreat,
    deflection,
    energy_at,
    sky_log_weight,
    transport_paths,
)
from ppl_bmc.transport.paths import FieldPath, Path

__all__ = ["MuonKernel", "straight_line_flux"]


@dataclass(frozen=True, eq=False)
class MuonKernel(Kernel):
    """One muon from a detector along ``path`` to the sky (a :class:`~ppl_bmc.transport.Kernel`).

    Static fields: the :class:`~ppl_bmc.transport.paths.Path`, the energy-loss ``material``
    (:class:`~ppl_bmc.physics.materials.Material`, or a
    :class:`~ppl_bmc.physics.materials.Blend` with a path whose grammages are per material), the ``sky_flux`` (a callable of (K GeV,
    cos zenith) → GeV⁻¹ m⁻² s⁻¹ sr⁻¹), the highest detector-side energy ``k_max`` (GeV), and
    whether to include ``decay`` and ``scattering``, and how detector-side energies are drawn
    (``energy``, an :class:`~ppl_bmc.transport.energy.EnergySampling`: by default from the
    straight-line CSDA integrand along each particle's line of sight).  ``ctx`` per reading: the
    path's, plus ``k_min`` (GeV).  State: :class:`~ppl_bmc.transport.muon.MuonState`.
    """

    path: Path
    material: object
    sky_flux: object
    k_max: float
    decay: bool = True
    scattering: bool = False
    energy: EnergySampling = LineOfSightEnergy()
    path_depends_on_params: bool = True
    split_step: bool = True

    def __post_init__(self):
        if not isinstance(self.path, Path):
            raise ValueError(f"path must be a ppl_bmc.transport.paths.Path, got {type(self.path).__name__}")
        if not isinstance(self.energy, EnergySampling):
            raise ValueError(f"energy must be a ppl_bmc.transport.energy.EnergySampling (e.g. LineOfSightEnergy()), "
                             f"got {self.energy!r}")
        composed = getattr(self.path, "composed", False)
        if composed != isinstance(self.material, Blend):
            raise ValueError(f"material {self.material!r} does not match the path: a Composition field needs its Blend "
                             "of materials, any other path one Material")
        if self.scattering:
            if not self.path.scatters:
                raise ValueError(f"multiple scattering is not available on a {type(self.path).__name__}")
            if isinstance(self.path, FieldPath) and self.path.n_steps is not None:
                raise ValueError("scattering needs FieldPath(n_steps=None): a FieldPath traced for n_steps walks "
                                 "straight lines")

    @property
    def n_init_uniforms(self):
        return self.path.ndim  # D − 1 direction coordinates, then the energy

    @property
    def n_step_uniforms(self):
        return self.path.ndim - 1 if self.scattering else 0  # one per projected deflection

    def init(self, params, ctx, u):
        position, d, omega = self.path.start(ctx, u[:-1])
        traced = None if self.scattering else self.path.trace(position, d, params)  # a straight walk
        line = self.path.line(position, d, params, ctx, traced) if self.energy.needs_line else None
        k, log_w = self.energy.sample(u[-1], ctx["k_min"], self.k_max, self.material, self.sky_flux, line,
                                      decay=self.decay)
        return MuonState(energy_at(self.material, k), position, d, traced), log_w + jnp.log(omega)

    def segment(self, state, params, ctx, u, k):
        """``(grammage kg/m², length m, ok)`` of the step starting at ``state``."""
        return self.path.segment(state.position, state.direction, params, state.grammages, k)

    def _deflection(self, energy, position, params, u):
        g = self.path.scattering_grammage(position, params)
        if isinstance(self.material, Blend):  # the materials' variances add: Σ g_m/λ_m(K)
            return deflection(jnp.sum(g / transport_paths(self.material, energy), axis=-1), 1.0, u)
        return deflection(g, energy.transport_path, u)

    def advance(self, state, seg, params, ctx, u, k):
        grammage, length, ok = seg
        energy, log_w = csda_advance(self.material, state.energy, grammage, length, decay=self.decay)
        d = state.direction
        position = self.path.move(state.position, d)
        if self.scattering:  # deflect at the end of the step with the energy and position reached there
            d, turned_ok = self.path.turn(d, self._deflection(energy, position, params, u), ctx)
            ok = ok & turned_ok
        return MuonState(energy, position, d, state.grammages), jnp.where(ok, log_w, -jnp.inf)

    def rewind(self, state, params, ctx, u, k):
        d = state.direction
        if self.scattering:
            d, _ = self.path.turn(d, -self._deflection(state.energy, state.position, params, u), ctx)
        return MuonState(state.energy, self.path.move(state.position, d, -1.0), d, state.grammages)

    def inverse_given(self, state, seg, params, ctx, u, k):
        before = self.rewind(state, params, ctx, u, k)
        return before._replace(energy=csda_retreat(self.material, state.energy, seg[0]))

    def check_steps(self, n_steps: int):
        self.path.check_steps(n_steps)

    def final(self, state, params, ctx):
        left, cos_zenith = self.path.exit(state.position, state.direction, ctx)
        return sky_log_weight(self.sky_flux, self.material, state.energy, cos_zenith, left)


def straight_line_flux(material, sky_flux, grammage, length_m, cos_zenith, k_min, k_max, *, decay: bool,
                       n_nodes: int = 512):
    """Integrated flux (m⁻² s⁻¹ sr⁻¹) of muons with detector-side K in [k_min, k_max] GeV behind
    ``grammage`` kg/m² of ``material`` along a straight line of ``length_m`` metres in the
    scene (``None``: the material at its nominal density), arriving from zenith
    ``arccos(cos_zenith)`` (CSDA, no scattering).

    ``grammage``, ``length_m``, ``cos_zenith``, ``k_min`` broadcast together (any shape); the
    integral over ln K uses ``n_nodes`` Gauss-Legendre nodes, each node one step of the
    kernel's physics.
    """
    x, w = np.polynomial.legendre.leggauss(n_nodes)
    dt = jnp.result_type(grammage)
    a, b = jnp.log(jnp.asarray(k_min, dt))[..., None], math.log(k_max)
    half = 0.5 * (b - a)
    shape = jnp.broadcast_shapes(*(jnp.shape(v) for v in (grammage, length_m, cos_zenith, k_min) if v is not None))
    shape = shape + (n_nodes,)
    k_det = jnp.broadcast_to(jnp.exp(half * jnp.asarray(x, dt) + 0.5 * (a + b)), shape)  # (..., N)
    along = lambda v: None if v is None else jnp.broadcast_to(jnp.asarray(v, dt)[..., None], k_det.shape)
    energy, log_w = csda_advance(material, energy_at(material, k_det), along(grammage), along(length_m),
                                 decay=decay)
    log_f = log_w + sky_log_weight(sky_flux, material, energy, along(cos_zenith))
    return jnp.sum(half * jnp.asarray(w, dt) * jnp.exp(log_f) * k_det, axis=-1)
