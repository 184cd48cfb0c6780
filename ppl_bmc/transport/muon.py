"""The muon physics of backward transport, written once: state, energy sampling, CSDA advance,
decay, multiple-scattering deflection and the sky weight.

Every function here is pure and elementwise over leading axes, so the same code serves one
particle inside a BMC kernel (:class:`ppl_bmc.transport.csda.MuonKernel`) and the arrays of
energy nodes of the deterministic quadrature (:func:`ppl_bmc.transport.csda.straight_line_flux`).

Backward in the continuous-slowing-down approximation (CSDA), over a step of grammage X the
kinetic energy grows, ``R(K') = R(K) + X``, and the weight gains the Jacobian ``S(K')/S(K)``
(S the stopping power per unit grammage, R the CSDA range).  Detector-side energies are sampled
log-uniformly on [k_min, k_max] (weight ``K·ln(k_max/k_min)``).  Decay multiplies the weight by the
survival probability ``exp(−c·Δτ/cτ)``.  At the sky the weight is multiplied by the open-sky flux
at the exit energy and zenith.  Energies beyond the table's top (1e9 GeV; the flux there is
< 1e-20 of its value at 1 GeV) get weight 0 — a log-weight of ``-inf`` whose *gradient* stays
finite (double ``where``).

Scenes of several materials (a :class:`~ppl_bmc.physics.materials.Blend`): a step's grammage is
a vector with one entry per material (trailing axis), crossed in turn as CSDA sub-steps
(symmetric splitting: half of each but the last, the last, the halves again); the walk keeps its
energy as a CSDA range in the blend's reference material.  All the blend's tables
share one kinetic-energy grid, so a position on that grid (index and fraction, found by one
search) reads every material's columns at once: a sub-step costs one table search.

Units: GeV (energies), kg/m² (grammages, ranges, transport paths), m (lengths), rad (angles).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import ndtri

from ppl_bmc.physics.constants import MUON_CTAU, MUON_MASS
from ppl_bmc.physics.materials import Blend

__all__ = ["MuonEnergy", "MuonState", "sample_energy", "energy_at", "energy_at_range", "csda_advance",
           "csda_retreat", "decay_log_weight", "deflection", "sky_log_flux", "sky_log_weight", "transport_paths"]


class MuonEnergy(NamedTuple):
    """The energy columns of a muon, from one table search at its CSDA range (any leading shape).

    Fields: ``csda_range`` R (kg/m²), ``kinetic_energy`` K (GeV), ``log_stopping`` log S(K)
    (S in GeV·m²/kg), ``proper`` the proper grammage ∫(m/p) dX from the table's bottom (kg/m²,
    for the decay weight) and ``transport_path`` λ(K) (kg/m², for multiple scattering).
    """

    csda_range: jax.Array
    kinetic_energy: jax.Array
    log_stopping: jax.Array
    proper: jax.Array
    transport_path: jax.Array


class MuonState(NamedTuple):
    """One muon of a backward walk: its :class:`MuonEnergy`, ``position`` (D,) m and
    ``direction`` of travel backward (towards the sky): a unit vector (D,) in a field, the angle
    to the line of sight (rad) along a :class:`~ppl_bmc.transport.paths.LineOfSight`.
    ``grammages`` (n_steps,) kg/m²: the opacity of every step of a straight path, traced once at
    the start (:meth:`~ppl_bmc.transport.paths.Path.trace`); ``None`` when each step integrates
    its own segment."""

    energy: MuonEnergy
    position: jax.Array
    direction: jax.Array
    grammages: jax.Array | None = None


def sample_energy(u, k_min, k_max):
    """Detector-side kinetic energy log-uniform on [k_min, k_max] GeV from a uniform ``u`` in
    [0, 1): ``(K, log weight)``, weight ``K·ln(k_max/k_min)`` (the inverse proposal density)."""
    log_ratio = jnp.log(k_max / k_min)
    k = k_min * jnp.exp(u * log_ratio)
    return k, jnp.log(k * log_ratio)


def _reference(material):
    """The material whose CSDA range holds a walk's energy (a :class:`Blend`'s reference)."""
    return material.reference if isinstance(material, Blend) else material


def energy_at_range(material, grammage):
    """The :class:`MuonEnergy` at CSDA range ``grammage`` (kg/m²) of ``material`` (a blend's
    reference), clipped to its table."""
    material = _reference(material)
    r = jnp.clip(grammage, material.r_min, material.r_max)
    return MuonEnergy(r, *material.columns_at_range(r))


def energy_at(material, kinetic_energy):
    """The :class:`MuonEnergy` of muons of kinetic energy K (GeV) in ``material``."""
    material = _reference(material)
    return energy_at_range(material, material.interp(kinetic_energy, material._log_k, material._log_r))


def _grid_position(log_table, log_x):
    """``(i, t)``: where ``log_x`` falls in the increasing column ``log_table`` (index of the
    node below, clipped to the table, and the fraction to the next node)."""
    xp = jnp.asarray(log_table, log_x.dtype)
    i = jnp.clip(jnp.searchsorted(xp, log_x) - 1, 0, xp.shape[0] - 2)
    return i, (log_x - xp[i]) / (xp[i + 1] - xp[i])


def _column(column, i, t):
    c = jnp.asarray(column, t.dtype)
    return c[i] + t * (c[i + 1] - c[i])


def _energy_on_grid(material, i, t):
    """The :class:`MuonEnergy` (ranges in ``material``) at grid position ``(i, t)``."""
    return MuonEnergy(jnp.exp(_column(material._log_r, i, t)), jnp.exp(_column(material._log_k, i, t)),
                      _column(material._log_s, i, t), _column(material._proper, i, t),
                      jnp.exp(_column(material._log_t, i, t)))


def _blend_walk(blend, energy, grammages, sign):
    """Sub-steps through ``grammages`` (..., M) of the blend's materials (``sign=+1``, backward
    transport: ranges grow), or undone (``sign=-1``): ``(new energy, Σ Δlog S, Σ Δproper (kg/m²),
    within the tables)``."""
    i, t = _grid_position(blend.reference._log_r, jnp.log(energy.csda_range))
    log_jacobian, proper, ok = 0.0, 0.0, True
    # symmetric (Strang) splitting: half of each material's grammage on the way in, the last
    # material whole, the halves again in reverse order — second order in the step, exact for
    # a step in one material; undone by the same sequence reversed
    last = len(blend) - 1
    order = [(m, 0.5) for m in range(last)] + [(last, 1.0)] + [(m, 0.5) for m in reversed(range(last))]
    for m, share in (order if sign > 0 else reversed(order)):
        mat = blend.materials[m]
        log_s, prop = _column(mat._log_s, i, t), _column(mat._proper, i, t)
        r = jnp.exp(_column(mat._log_r, i, t)) + sign * share * grammages[..., m]
        ok = ok & (r <= mat.r_max)
        i, t = _grid_position(mat._log_r, jnp.log(jnp.clip(r, mat.r_min, mat.r_max)))
        log_jacobian = log_jacobian + _column(mat._log_s, i, t) - log_s
        proper = proper + _column(mat._proper, i, t) - prop
    return _energy_on_grid(blend.reference, i, t), log_jacobian, proper, ok


def transport_paths(blend, energy):
    """The transport paths λ_m(K) (kg/m², (..., M)) of every material of ``blend`` at ``energy``."""
    i, t = _grid_position(blend.reference._log_r, jnp.log(energy.csda_range))
    return jnp.stack([jnp.exp(_column(m._log_t, i, t)) for m in blend.materials], axis=-1)


def decay_log_weight(material, proper_before, proper_after, grammage, length_m, kinetic_energy):
    """log of the survival probability exp(−c·Δτ/cτ) over a step (≤ 0).

    ``proper_*`` are the :class:`MuonEnergy` ``proper`` columns (kg/m²) at the step's ends,
    ``grammage`` its opacity (kg/m²), ``length_m`` its length (m) and ``kinetic_energy`` (GeV) the
    muon's energy at its sky-side end.  The proper length is c·Δτ = Δproper / ρ̄ with
    ρ̄ = grammage / length (exact for a uniform density); where the step is (nearly) empty of
    matter, c·Δτ = (m/p)·length.  ``length_m=None``: the step is in ``material`` at its nominal
    density, c·Δτ = Δproper / ρ.
    """
    if length_m is None:
        return -(proper_after - proper_before) / (material.density * MUON_CTAU)
    empty = grammage <= 1e-6 * length_m
    safe = jnp.where(empty, 1.0, grammage)
    m_over_p = MUON_MASS / jnp.sqrt(kinetic_energy * (kinetic_energy + 2 * MUON_MASS))
    c_dtau = jnp.where(empty, m_over_p * length_m, (proper_after - proper_before) * length_m / safe)
    return -c_dtau / MUON_CTAU


def csda_advance(material, energy, grammage, length_m, *, decay: bool):
    """One backward CSDA step of ``grammage`` kg/m² and ``length_m`` m (``None``: in ``material`` at
    its nominal density): ``(new energy, log_w)``.

    ``log_w`` is the Jacobian ``log S(K') − log S(K)`` plus, with ``decay``, the survival
    probability; ``-inf`` when the range leaves the table's top.  A :class:`Blend`: ``grammage``
    (..., M), one sub-step per material in order (the Jacobians multiply; the decay uses the
    step's total grammage and proper grammage).
    """
    if isinstance(material, Blend):
        new, log_w, proper, ok = _blend_walk(material, energy, grammage, 1.0)
        if decay:
            log_w = log_w + decay_log_weight(material.reference, 0.0, proper, jnp.sum(grammage, axis=-1), length_m,
                                             new.kinetic_energy)
        return new, jnp.where(ok, log_w, -jnp.inf)
    r_new = energy.csda_range + grammage
    new = energy_at_range(material, r_new)
    log_w = new.log_stopping - energy.log_stopping
    if decay:
        log_w = log_w + decay_log_weight(material, energy.proper, new.proper, grammage, length_m,
                                         new.kinetic_energy)
    return new, jnp.where(r_new <= material.r_max, log_w, -jnp.inf)


def csda_retreat(material, energy, grammage):
    """The inverse of :func:`csda_advance`: the energy before a step of ``grammage`` kg/m²
    (a :class:`Blend`'s (..., M), undone in reverse order)."""
    if isinstance(material, Blend):
        return _blend_walk(material, energy, grammage, -1.0)[0]
    return energy_at_range(material, energy.csda_range - grammage)


def deflection(grammage, transport_path, u):
    """Projected multiple-scattering angle (rad) over ``grammage`` kg/m² at transport path
    ``transport_path`` kg/m², from a uniform ``u``: ``√(grammage/λ)·z`` with z standard normal
    (the small-angle variance s/λ₁ of one projection); 0, with a finite gradient, where the
    grammage is 0 (open sky).  Several materials: pass ``Σ g_m/λ_m`` and ``transport_path=1``
    (the variances add: 1/λ₁ is additive per unit mass)."""
    matter = grammage > 0
    width = jnp.where(matter, jnp.sqrt(jnp.where(matter, grammage, 1.0) / transport_path), 0.0)
    return width * ndtri(jnp.clip(u, 1e-7, 1 - 1e-7))


def sky_log_flux(sky_flux, kinetic_energy, cos_zenith, ok=True):
    """log of the open-sky flux (GeV⁻¹ m⁻² s⁻¹ sr⁻¹) at kinetic energy K (GeV) and ``cos_zenith``;
    ``-inf`` where not ``ok`` or below the horizon (with a finite gradient)."""
    ok = ok & (cos_zenith > 0)
    flux = sky_flux(jnp.where(ok, kinetic_energy, 1.0), jnp.where(ok, cos_zenith, 1.0))
    return jnp.where(ok, jnp.log(flux), -jnp.inf)


def sky_log_weight(sky_flux, material, energy, cos_zenith, ok=True):
    """log of the open-sky flux (GeV⁻¹ m⁻² s⁻¹ sr⁻¹) at the exit energy and ``cos_zenith``;
    ``-inf`` where not ``ok``, below the horizon or beyond the table's top."""
    ok = ok & (energy.csda_range < _reference(material).r_max)
    return sky_log_flux(sky_flux, energy.kinetic_energy, cos_zenith, ok)
