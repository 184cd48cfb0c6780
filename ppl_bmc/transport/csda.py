"""Backward CSDA transport of muons through a uniform slab (straight line, no scattering).

Backward over a step of grammage X the kinetic energy grows, ``R(K') = R(K) + X``, and the
weight gains the Jacobian ``S(K')/S(K)``.  Detector-side energies are sampled log-uniformly on
[k_min, k_max] (weight ``K·ln(k_max/k_min)``); at the sky the weight is multiplied by the
open-sky flux at ``K'``.  Sky-side energies above the table's top (1e9 GeV) get weight 0 (the
flux there is < 1e-20 of its value at 1 GeV).  With ``decay=True`` each step also carries the
survival probability ``exp(−c·Δτ/cτ)``, c·Δτ = ∫(m/p) dl, cτ = 658.654 m (PDG): negligible in
rock, not in air.

Multiple scattering (``scattering=True``, 2-D in the plane of view): after each step the
direction turns by δ = √(g/λ(K))·z, z a standard normal drawn from the step's uniform, g the
step's axis grammage and λ(K) the transport path (kg/m²) at the energy reached: the projected
small-angle variance s/λ₁.  The next step's path grammage is g/cos(angle).  Each step is
inverted exactly (the deflection uses only the post-step state), so the replay adjoint is exact
although the path moves with the opacity; the estimator is a smooth function of the opacity
for a fixed key.  Muons turned sideways (|angle| ≥ 90°) or exiting below the horizon get weight 0.

State: ``(R, K, log S(K), proper grammage, λ(K), angle)`` — the CSDA range carries the walk; the
other columns come from one table search per step.  Parameters: the slab's opacity in m.w.e.
along the line of sight (scalar; 1 m.w.e. = 1000 kg/m²).  Context: the zenith angle (rad).
The path (energies) depends on the opacity, so the replay adjoint runs backward with
:meth:`SlabKernel.inverse`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax.numpy as jnp
from jax.scipy.special import ndtri

from ppl_bmc.transport.kernel import Kernel

MWE = 1000.0  # kg/m² per metre water equivalent
#: Muon c·τ in metres (PDG 2024: τ = 2.1969811 µs).
MUON_CTAU = 658.654


@dataclass(frozen=True, eq=False)
class SlabKernel(Kernel):
    """One muon crossing a uniform slab in ``n_steps`` equal steps of axis grammage.

    Static fields: the material, the sky flux model, the detector-side energy range (GeV), the
    number of steps, whether to include decay and multiple scattering.
    """

    material: object
    sky_flux: object
    k_min: float
    k_max: float
    n_steps: int
    decay: bool = True
    scattering: bool = False
    n_init_uniforms: int = 1
    path_depends_on_params: bool = True

    @property
    def n_step_uniforms(self):
        return 1 if self.scattering else 0

    def _step_grammage(self, params):
        return MWE * params / self.n_steps

    def state_at_energy(self, kinetic_energy):
        """The state ``(R, K, log S, proper grammage, λ, angle)`` of muons of kinetic energy K (GeV)."""
        m = self.material
        return self.state_at_range(m.interp(kinetic_energy, m._log_k, m._log_r), jnp.zeros_like(kinetic_energy))

    def state_at_range(self, grammage, angle):
        """The state at CSDA range ``grammage`` (kg/m²), clipped to the table, moving at ``angle``."""
        r = jnp.clip(grammage, self.material.r_min, self.material.r_max)
        return (r, *self.material.columns_at_range(r), angle)

    def _deflection(self, step_grammage, transport_path, u):
        # projected small-angle variance: axis grammage / transport path (kg/m² over kg/m²)
        return jnp.sqrt(step_grammage / transport_path) * ndtri(jnp.clip(u[0], 1e-7, 1 - 1e-7))

    def init(self, params, ctx, u):
        log_ratio = math.log(self.k_max / self.k_min)
        k = self.k_min * jnp.exp(u[0] * log_ratio)
        return self.state_at_energy(k), jnp.log(k * log_ratio)

    def step(self, state, params, ctx, u, k):
        r, _, log_s, proper, _, angle = state
        g = self._step_grammage(params)
        cos_a = jnp.cos(angle)
        forward = cos_a > 0  # a muon turned sideways never crosses the slab: weight 0
        r_new = r + g / jnp.where(forward, cos_a, 1.0)  # path grammage of this step
        new = self.state_at_range(r_new, angle)
        if self.scattering:  # deflect at the end of the step with the energy reached there
            new = new[:5] + (angle + self._deflection(g, new[4], u),)
        log_w = new[2] - log_s
        if self.decay:
            log_w = log_w - (new[3] - proper) / (self.material.density * MUON_CTAU)
        return new, jnp.where(forward & (r_new <= self.material.r_max), log_w, -jnp.inf)

    def inverse(self, state, params, ctx, u, k):
        r, _, _, _, transport, angle = state
        g = self._step_grammage(params)
        if self.scattering:
            angle = angle - self._deflection(g, transport, u)
        cos_a = jnp.cos(angle)
        return self.state_at_range(r - g / jnp.where(cos_a > 0, cos_a, 1.0), angle)

    def final(self, state, params, ctx):
        r, k_sky, angle = state[0], state[1], state[5]
        cos_zenith = jnp.cos(ctx + angle)  # ctx: zenith angle of the line of sight (rad)
        ok = (r < self.material.r_max) & (cos_zenith > 0)
        flux = self.sky_flux(jnp.where(ok, k_sky, 1.0), jnp.where(ok, cos_zenith, 1.0))
        return jnp.where(ok, jnp.log(flux), -jnp.inf)
