"""Backward CSDA transport of muons through a uniform slab (straight line, no scattering).

Backward over a step of grammage X the kinetic energy grows, ``R(K') = R(K) + X``, and the
weight gains the Jacobian ``S(K')/S(K)``.  Detector-side energies are sampled log-uniformly on
[k_min, k_max] (weight ``K·ln(k_max/k_min)``); at the sky the weight is multiplied by the
open-sky flux at ``K'``.  Sky-side energies above the table's top (1e9 GeV) get weight 0 (the
flux there is < 1e-20 of its value at 1 GeV).  With ``decay=True`` each step also carries the
survival probability ``exp(−c·Δτ/cτ)``, c·Δτ = ∫(m/p) dl, cτ = 658.654 m (PDG): negligible in
rock, not in air.

State: ``(R, K, log S(K), proper grammage)`` — the CSDA range carries the walk; the other
columns come from one table search per step.  Parameters: the slab's opacity in m.w.e.
(scalar; 1 m.w.e. = 1000 kg/m²).  Context: cos zenith.
The path (energies) depends on the opacity, so the replay adjoint runs backward with
:meth:`SlabKernel.inverse`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax.numpy as jnp

from ppl_bmc.transport.kernel import Kernel

MWE = 1000.0  # kg/m² per metre water equivalent
#: Muon c·τ in metres (PDG 2024: τ = 2.1969811 µs).
MUON_CTAU = 658.654


@dataclass(frozen=True, eq=False)
class SlabKernel(Kernel):
    """One muon crossing a uniform slab in ``n_steps`` equal steps of grammage (static fields)."""

    material: object
    sky_flux: object
    k_min: float
    k_max: float
    n_steps: int
    decay: bool = True
    n_init_uniforms: int = 1
    n_step_uniforms: int = 0
    path_depends_on_params: bool = True

    def _step_grammage(self, params):
        return MWE * params / self.n_steps

    def state_at_energy(self, kinetic_energy):
        """The state ``(R, K, log S, proper grammage)`` of muons of kinetic energy K (GeV)."""
        m = self.material
        return self.state_at_range(m.interp(kinetic_energy, m._log_k, m._log_r))

    def state_at_range(self, grammage):
        """The state at CSDA range ``grammage`` (kg/m²), clipped to the table."""
        r = jnp.clip(grammage, self.material.r_min, self.material.r_max)
        return (r, *self.material.columns_at_range(r))

    def init(self, params, ctx, u):
        log_ratio = math.log(self.k_max / self.k_min)
        k = self.k_min * jnp.exp(u[0] * log_ratio)
        return self.state_at_energy(k), jnp.log(k * log_ratio)

    def step(self, state, params, ctx, u, k):
        r, _, log_s, proper = state
        r_new = r + self._step_grammage(params)
        new = self.state_at_range(r_new)
        log_w = new[2] - log_s
        if self.decay:
            log_w = log_w - (new[3] - proper) / (self.material.density * MUON_CTAU)
        return new, jnp.where(r_new <= self.material.r_max, log_w, -jnp.inf)

    def inverse(self, state, params, ctx, u, k):
        return self.state_at_range(state[0] - self._step_grammage(params))

    def final(self, state, params, ctx):
        r, k_sky = state[0], state[1]
        inside = r < self.material.r_max
        flux = self.sky_flux(jnp.where(inside, k_sky, 1.0), ctx)
        return jnp.where(inside, jnp.log(flux), -jnp.inf)
