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
import numpy as np
from jax.scipy.special import ndtri

from ppl_bmc.physics.flux import MUON_MASS
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


def decay_log_weight(material, proper_before, proper_after, grammage, length_m, kinetic_energy):
    """log of the survival probability exp(−c·Δτ/cτ) over a step (≤ 0).

    ``proper_*`` are :meth:`Material.proper_grammage` columns (kg/m²) at the step's ends,
    ``grammage`` its opacity (kg/m²), ``length_m`` its length in the scene (m) and
    ``kinetic_energy`` (GeV) the muon's energy at its sky-side end.  The proper length is
    c·Δτ = Δproper / ρ̄ with ρ̄ = grammage / length (exact for a uniform density); where the
    step is (nearly) empty of matter, c·Δτ = (m/p)·length.
    """
    empty = grammage <= 1e-6 * length_m
    safe = jnp.where(empty, 1.0, grammage)
    m_over_p = MUON_MASS / jnp.sqrt(kinetic_energy * (kinetic_energy + 2 * MUON_MASS))
    c_dtau = jnp.where(empty, m_over_p * length_m, (proper_after - proper_before) * length_m / safe)
    return -c_dtau / MUON_CTAU


def straight_line_flux(material, sky_flux, grammage, length_m, cos_zenith, k_min, k_max, *, decay: bool,
                       n_nodes: int = 512):
    """Integrated flux (m⁻² s⁻¹ sr⁻¹) of muons with detector-side K in [k_min, k_max] GeV behind
    ``grammage`` kg/m² of ``material`` along a straight line of ``length_m`` metres in the
    scene, arriving from zenith ``arccos(cos_zenith)`` (CSDA, no scattering).

    ``grammage``, ``length_m``, ``cos_zenith``, ``k_min`` broadcast together (any shape); the
    integral over ln K uses ``n_nodes`` Gauss-Legendre nodes.
    """
    x, w = np.polynomial.legendre.leggauss(n_nodes)
    dt = jnp.result_type(grammage)
    a, b = jnp.log(jnp.asarray(k_min, dt))[..., None], math.log(k_max)
    half = 0.5 * (b - a)
    k_det = jnp.exp(half * jnp.asarray(x, dt) + 0.5 * (a + b))  # (..., N)
    m = material
    r0 = jnp.clip(m.interp(k_det, m._log_k, m._log_r), m.r_min, m.r_max)
    _, log_s0, proper0, _ = m.columns_at_range(r0)
    r1 = r0 + jnp.asarray(grammage, dt)[..., None]
    ok = (r1 < m.r_max) & (jnp.asarray(cos_zenith, dt)[..., None] > 0)
    k_sky, log_s1, proper1, _ = m.columns_at_range(jnp.clip(r1, m.r_min, m.r_max))
    cosz = jnp.broadcast_to(jnp.asarray(cos_zenith, dt)[..., None], k_sky.shape)
    log_f = log_s1 - log_s0 + jnp.log(sky_flux(jnp.where(ok, k_sky, 1.0), jnp.where(ok, cosz, 1.0)))
    if decay:
        g = jnp.broadcast_to(jnp.asarray(grammage, dt)[..., None], r1.shape)
        length = jnp.broadcast_to(jnp.asarray(length_m, dt)[..., None], r1.shape)
        log_f = log_f + decay_log_weight(m, proper0, proper1, g, length, k_sky)
    integrand = jnp.where(ok, jnp.exp(log_f), 0.0) * k_det
    return jnp.sum(half * jnp.asarray(w, dt) * integrand, axis=-1)
