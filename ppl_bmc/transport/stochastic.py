"""Backward transport with stochastic (hard) energy losses: PUMAS's "mixed" mode, differentiable.

Physics (:mod:`ppl_bmc.physics.mixed`): between hard events a muon loses energy continuously at
the soft stopping power S_soft; a hard event transfers a fraction x ∈ [x_cut, x_top) of its
kinetic energy, at a rate σ(K) per unit grammage with spectrum dσ/dx(K, x).

Backward scheme (after V. Niess et al., Comput. Phys. Commun. 229 (2018) 54, as PUMAS runs it):
walking from the detector towards the sky, the energy K grows along the soft-CSDA curve; the
next event is placed where the number of mean free paths of a *proposal* rate σ_prop(K) (the
forward σ, floored) grows by an Exp(1) draw; there the muon's energy before the event is
K_i = K_f/(1 − x) with x drawn from p(x) ∝ x⁻² on [x_cut, x_top); and the weight gains

    ω_event = D(K_i, x) / [(1 − x) · p(x) · σ_prop(K_f)]        (D = dσ/dx)
    ω_soft  = S_soft(K_up) / S_soft(K_down) · exp(NI_prop − NI)  per soft segment,

NI the mean free paths met along the segment (the survival probabilities of the proposal and of
the physics, which cancel wherever σ_prop = σ).

**Gradients with common random numbers.**  Every random choice is made from parameter-free
quantities.  A *proposal walk* — its own energy, along the line's opacities at the stop-gradient
parameters (equal in value to the live ones) — places the events: their positions are fixed
fractions of the line, their transfers x come from parameter-free uniforms.  The *live walk*
scores them at the live parameters: the soft energies (pathwise), the target density of each
event at its fixed fraction (``ρ·D/(1 − x)``, ρ the line's grammage per unit fraction there,
against the proposal's ``ρ₀·σ_prop(K_f⁰)·p(x)``) and the survival ``exp(NI_prop − NI)`` (the
proposal's constant, the physics' live).  At the stop-gradient point the weight is PUMAS's; its
gradient is the exact derivative of the estimator at a fixed proposal (``frozen=True`` takes the
proposal's parameters separately, for finite-difference checks), which is unbiased for the
gradient of the expected flux: no event appears or disappears as the parameters move.  The
weight is not smooth where an ancestor energy crosses the close-collision limit W_max or a table
node; these boundary terms are not carried.

**Several materials** (a :class:`~ppl_bmc.geometry.Composition`: the kernel's material a
:class:`~ppl_bmc.physics.mixed.MixedBlend`, the line's pieces (n, M) grammages per material).
The proposal walks the line's *total* grammage with the reference material's (the first's)
proposal rate and soft range — any parameter-free proposal keeps the estimator unbiased, and
this one is exact where the line holds the reference only.  An event in piece i is scored by
``Σ_m g_im·D_m(K_i, x)/(1 − x)`` against the proposal's ``g⁰_i·σ_prop(K_f⁰)·p(x)`` (g_i the
piece's grammages: the hard rates add by mass, as the stopping powers); the live soft walk
crosses every piece between two events in each material in turn (symmetric splitting, as the
CSDA :class:`~ppl_bmc.physics.materials.Blend`), gaining each sub-step's Jacobian
``S_m(K')/S_m(K)`` and survival ``exp(−ΔNI_m)``; decay uses the piece's mean density.

Each step runs to the next event or, for the last one, to the sky; ``n_steps`` bounds the
number of events per muon (muons with more get weight 0: :func:`events_bound` sets the bound so
that this happens with probability < 1e-9).  Steps after the sky are no-ops.  Each step inverts
exactly (the proposal's energy after an event gives its NI before it, hence where the step
began), so the replay adjoint is exact.

Units: GeV, kg/m², m.w.e. (opacities), rad.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ppl_bmc.geometry.rays import box_interval
from ppl_bmc.physics.constants import MUON_CTAU, MUON_MASS
from ppl_bmc.physics.mixed import MixedBlend, MixedMaterial
from ppl_bmc.transport.energy import EnergySampling, LineOfSightEnergy
from ppl_bmc.transport.kernel import Kernel
from ppl_bmc.transport.muon import sky_log_flux
from ppl_bmc.transport.paths import FieldPath, LineOfSight, Path

__all__ = ["MixedState", "MixedKernel", "events_bound"]

sg = jax.lax.stop_gradient


class MixedState(NamedTuple):
    """One muon of a mixed-mode walk along its straight line.

    ``log_k``: ln K (GeV), the energy *after* the last event (sky side); ``log_k_prop`` the same
    on the proposal's walk (through ``proposal``'s grammages; equal in value unless the
    proposal is frozen at other parameters or the line holds several materials); ``walked``: the
    *proposal's* grammage (kg/m², a constant of the parameters) from the detector to the last
    event, which fixes its position on the line; ``end``: the step at which the walk reached the
    sky (0 while walking; a float, as every leaf); ``grammages`` (n,) kg/m²: the line's opacity
    in ``n`` equal pieces (live: a function of the parameters; (n, M) per material through a
    Composition), ``proposal`` (n,) kg/m² the same at which events are placed
    (``stop_gradient(grammages)``, summed over materials: equal in value, constant for
    gradients), ``lengths`` (n,) m the pieces' lengths in matter (``None``: the material at its
    nominal density, a slab); ``cos_zenith`` at the exit."""

    log_k: jax.Array
    log_k_prop: jax.Array
    walked: jax.Array
    end: jax.Array
    grammages: jax.Array
    proposal: jax.Array
    lengths: jax.Array | None
    cos_zenith: jax.Array


def _transfer(u, x_cut, x_top):
    """x ~ p(x) ∝ x⁻² on [x_cut, x_top) from a uniform: ``(x, log p(x))``."""
    a, b = 1.0 / x_cut, 1.0 / x_top
    x = 1.0 / (a - u * (a - b))
    return x, -2.0 * jnp.log(x) - math.log(a - b)


def _piece(values, fraction):
    """``(cumulative value at fraction f of the line, index of its piece)``: ``values`` (n,) per
    equal piece, linear within a piece."""
    n = values.shape[0]
    s = fraction * n
    i = jnp.clip(jnp.floor(s), 0, n - 1).astype(jnp.int32)
    below = jnp.concatenate([jnp.zeros(1, values.dtype), jnp.cumsum(values)])[i]
    return below + (s - i) * values[i], i


def _index(n, fraction):
    """The piece of a line in ``n`` equal pieces that holds ``fraction``."""
    return jnp.clip(jnp.floor(fraction * n), 0, n - 1).astype(jnp.int32)


def _substeps(n_materials):
    """Symmetric splitting of a piece of several materials: ``(material, share)`` in order —
    half of each but the last, the last, the halves again (as the CSDA Blend)."""
    head = [(j, 0.5) for j in range(n_materials - 1)]
    return head + [(n_materials - 1, 1.0)] + head[::-1]


def _portions(n, f0, f1):
    """The share of each of ``n`` equal pieces lying between fractions f0 ≤ f1 of the line, (n,)."""
    i = jnp.arange(n, dtype=f0.dtype)
    return jnp.clip(f1 * n - i, 0.0, 1.0) - jnp.clip(f0 * n - i, 0.0, 1.0)


def _blend_walk(mats, decay, grammages, lengths, log_k, f0, f1):
    """The live soft walk between fractions f0 ≤ f1 of a line of several materials, from ln K:
    ``(ln K at f1, ok, log weight)`` — each piece's grammage (n, M) crossed material by material
    (:func:`_substeps`), each sub-step gaining ln S(K')/S(K) − ΔNI and, with ``decay``, the
    survival over the piece at its mean density.  The energy is carried with its position on the
    tables' shared grid, so a sub-step costs one search (its range's inverse).  A sub-step
    without grammage is an exact identity (no table round trip)."""
    share = _portions(grammages.shape[0], f0, f1)
    order = _substeps(len(mats))

    def piece(carry, inputs):
        log_k, i, t, ok, log_w = carry
        x, length = inputs
        start, proper = log_k, 0.0
        for j, half in order:
            m, dx = mats[j], half * x[j]
            r0, s0, n0, p0 = m.walk_columns(i, t)
            ok = ok & (r0 + dx < m.r_max)
            new, i1, t1 = m.locate_range(r0 + dx)
            moved = dx > 0
            log_k, i, t = jnp.where(moved, new, log_k), jnp.where(moved, i1, i), jnp.where(moved, t1, t)
            _, s1, n1, p1 = m.walk_columns(i, t)
            log_w = log_w + (s1 - s0) - (n1 - n0)
            proper = proper + (p1 - p0)
        if decay:  # c·Δτ = Δproper / ρ̄, ρ̄ = the piece's grammage / its length
            total = jnp.sum(x)
            empty = total <= 1e-6 * length
            kk = jnp.exp(start)
            m_over_p = MUON_MASS / jnp.sqrt(kk * (kk + 2 * MUON_MASS))
            log_w = log_w - jnp.where(empty, m_over_p * length, proper * length / jnp.where(empty, 1.0, total)) / MUON_CTAU
        return (log_k, i, t, ok, log_w), None

    zero = jnp.zeros((), log_k.dtype)
    i, t = mats[0].locate(log_k)
    (log_k, _, _, ok, log_w), _ = jax.lax.scan(piece, (log_k, i, t, jnp.asarray(True), zero),
                                               (share[:, None] * grammages, share * lengths))
    return log_k, ok, log_w


def _blend_walk_back(mats, grammages, log_k, f0, f1):
    """Inverse of :func:`_blend_walk`'s energy: ln K at f0 from ln K at f1."""
    share = _portions(grammages.shape[0], f0, f1)
    order = _substeps(len(mats))[::-1]

    def piece(carry, x):
        log_k, i, t = carry
        for j, half in order:
            m, dx = mats[j], half * x[j]
            new, i1, t1 = m.locate_range(m.walk_columns(i, t)[0] - dx)
            moved = dx > 0
            log_k, i, t = jnp.where(moved, new, log_k), jnp.where(moved, i1, i), jnp.where(moved, t1, t)
        return (log_k, i, t), None

    i, t = mats[0].locate(log_k)
    return jax.lax.scan(piece, (log_k, i, t), share[:, None] * grammages, reverse=True)[0][0]


def _fraction(values, total):
    """Inverse of :func:`_piece`: the fraction of the line where the cumulative ``values`` reach
    ``total`` (pieces with zero value skipped)."""
    n = values.shape[0]
    c = jnp.concatenate([jnp.zeros(1, values.dtype), jnp.cumsum(values)])
    i = jnp.clip(jnp.searchsorted(c, total, side="right") - 1, 0, n - 1)
    within = jnp.clip((total - c[i]) / jnp.where(values[i] > 0, values[i], 1.0), 0.0, 1.0)
    return (i + within) / n


@dataclass(frozen=True, eq=False)
class MixedKernel(Kernel):
    """A muon with soft losses and hard events along a straight line through matter (a
    :class:`~ppl_bmc.transport.Kernel`).

    Static fields: ``path`` (a :class:`~ppl_bmc.transport.paths.LineOfSight` — a uniform slab,
    ``params`` its opacity in m.w.e. — or a :class:`~ppl_bmc.transport.paths.FieldPath` traced
    for a fixed number of straight steps, ``params`` the field's), ``material``
    (:class:`~ppl_bmc.physics.mixed.MixedMaterial`; for a FieldPath through a
    :class:`~ppl_bmc.geometry.Composition`, the :class:`~ppl_bmc.physics.mixed.MixedBlend` of its
    materials), ``sky_flux``, ``k_max`` (GeV), ``decay``,
    ``energy`` (the detector-side energy proposal: from the straight-line CSDA integrand by
    default).  ``ctx`` per reading: the path's, plus ``k_min`` (GeV).  ``frozen``: ``params`` is a
    pair ``(live, proposal)`` and events are placed with the proposal's parameters (for checks
    of the gradient by finite differences of the estimator at a fixed proposal; by default the
    proposal is ``stop_gradient(params)``).  The kernel's steps are
    hard events (the last one reaches the sky); the path's own steps only cut the line into the
    equal pieces whose opacities it traces.
    """

    path: Path
    material: MixedMaterial
    sky_flux: object
    k_max: float
    decay: bool = True
    energy: EnergySampling = LineOfSightEnergy()
    frozen: bool = False
    path_depends_on_params: bool = True

    n_step_uniforms = 2

    def __post_init__(self):
        if not isinstance(self.material, (MixedMaterial, MixedBlend)):
            raise ValueError(f"material must be a ppl_bmc.physics.mixed.MixedMaterial or MixedBlend, got "
                             f"{self.material!r}")
        blend = isinstance(self.material, MixedBlend)
        if isinstance(self.path, FieldPath):
            if self.path.n_steps is None:
                raise ValueError("the mixed mode walks straight lines: FieldPath(n_steps=...)")
            if self.path.composed != blend or (blend and self.material.csda != self.path.field.blend):
                raise ValueError("material: a Composition field needs the MixedBlend of its materials "
                                 "(ppl_bmc.physics.mixed.blend(field.blend)), a density field one MixedMaterial; "
                                 f"got {self.material!r}")
        elif not isinstance(self.path, LineOfSight):
            raise ValueError(f"path must be a LineOfSight or a FieldPath, got {type(self.path).__name__}")
        elif blend:
            raise ValueError(f"material: a slab (LineOfSight) holds one MixedMaterial, got {self.material!r}")

    @property
    def _blend(self) -> bool:
        return isinstance(self.material, MixedBlend)

    @property
    def _ref(self) -> MixedMaterial:
        """The material whose proposal rate and soft range place the events."""
        return self.material.reference if self._blend else self.material

    @property
    def n_init_uniforms(self):
        return self.path.ndim  # D − 1 direction coordinates, then the energy

    def _line(self, params, ctx, u):
        position, d, omega = self.path.start(ctx, u[:-1])
        traced = self.path.trace(position, d, params)
        line = self.path.line(position, d, params, ctx, traced)
        k, log_w = self.energy.sample(u[-1], ctx["k_min"], self.k_max, self.material.csda, self.sky_flux,
                                      line if self.energy.needs_line else None, decay=self.decay)
        grammages = jnp.asarray(line.grammage, jnp.result_type(k))[None] if traced is None else traced
        return position, d, omega, line, grammages, k, log_w

    def init(self, params, ctx, u):
        live, frozen = params if self.frozen else (params, None)
        position, d, omega, line, grammages, k, log_w = self._line(live, ctx, u)
        if frozen is None:  # the proposal at the stop-gradient parameters: the same values
            proposal, k0 = sg(grammages), sg(k)
        else:
            _, _, _, _, proposal, k0, _ = self._line(frozen, ctx, u)
        if self._blend:  # events are placed along the total grammage
            proposal = jnp.sum(proposal, axis=-1)
        lengths = None
        if isinstance(self.path, FieldPath):  # metres of each piece inside the field's box
            t_in, t_out = box_interval(position, d, self.path.field.lower, self.path.field.upper)
            starts = self.path.step_m * jnp.arange(grammages.shape[0], dtype=grammages.dtype)
            clip = lambda t: jnp.clip(t - starts, 0.0, self.path.step_m)
            lengths = clip(t_out) - clip(t_in)
        zero = jnp.zeros((), jnp.result_type(k))
        state = MixedState(jnp.log(k), jnp.log(k0), zero, zero, grammages, proposal, lengths,
                           jnp.asarray(line.cos_zenith, zero.dtype))
        return state, log_w + jnp.log(omega)

    def check_steps(self, n_steps: int):
        del n_steps  # any number of events: walks with more get weight 0 (see events_bound)

    def _live(self, state, log_k0, f0, f1, ni_prop):
        """The live soft walk between fractions f0 ≤ f1 of the line from ln K0: ``(ln K1, ok, log
        weight)``, the weight given the proposal's NI gain ``ni_prop`` along it."""
        if self._blend:
            log_k1, ok, log_w = _blend_walk(self.material.materials, self.decay, state.grammages, state.lengths,
                                            log_k0, f0, f1)
            return log_k1, ok, log_w + sg(ni_prop)
        m, g = self.material, state.grammages
        r_new = m.range_at(log_k0) + (_piece(g, f1)[0] - _piece(g, f0)[0])
        log_k1 = m.log_energy_at_range(r_new)
        return log_k1, r_new < m.r_max, self._soft(state, log_k0, log_k1, ni_prop, f0, f1)

    def _live_back(self, state, log_k1, f0, f1):
        """Inverse of :meth:`_live`'s energy: ln K0 from ln K1."""
        if self._blend:
            return _blend_walk_back(self.material.materials, state.grammages, log_k1, f0, f1)
        m, g = self.material, state.grammages
        return m.log_energy_at_range(m.range_at(log_k1) - (_piece(g, f1)[0] - _piece(g, f0)[0]))

    def _event_rate(self, state, i, k, x):
        """``(positive, ln rate)``: the live rate density of a hard event of transfer x at energy
        K in piece i, ``Σ_m g_im·dσ_m/dx(K, x)`` (ln 1 where it vanishes)."""
        g = state.grammages[i]
        if self._blend:
            rate = sum(g[j] * m.dcs(k, x) for j, m in enumerate(self.material.materials))
        else:
            rate = g * self.material.dcs(k, x)
        positive = rate > 0
        return positive, jnp.log(jnp.where(positive, rate, 1.0))

    def _soft(self, state, log_k0, log_k1, ni_prop, f0, f1):
        """log weight of the soft segment between fractions f0 < f1 of the line, from ln K0 to
        ln K1 (live), given the proposal's NI gain along it (one material)."""
        m = self.material
        log_w = m.log_soft_stopping(log_k1) - m.log_soft_stopping(log_k0)
        log_w = log_w + sg(ni_prop) - (m.interactions(log_k1) - m.interactions(log_k0))
        if self.decay:
            proper = m.proper(log_k1) - m.proper(log_k0)  # kg/m²
            if state.lengths is None:
                log_w = log_w - proper / (m.density * MUON_CTAU)
            else:  # c·Δτ = Δproper / ρ̄ over the segment, ρ̄ = grammage / length
                grammage = _piece(state.grammages, f1)[0] - _piece(state.grammages, f0)[0]
                length = _piece(state.lengths, f1)[0] - _piece(state.lengths, f0)[0]
                empty = grammage <= 1e-6 * length
                kk = jnp.exp(log_k0)
                m_over_p = MUON_MASS / jnp.sqrt(kk * (kk + 2 * MUON_MASS))
                c_dtau = jnp.where(empty, m_over_p * length, proper * length / jnp.where(empty, 1.0, grammage))
                log_w = log_w - c_dtau / MUON_CTAU
        return log_w

    def step(self, state, params, ctx, u, k):
        m = self._ref
        g0 = state.proposal
        walking = state.end == 0
        # the proposal (no gradient): Exp(1) more proposal mean free paths along its soft curve
        log_k0 = state.log_k_prop
        ni0 = m.interactions(log_k0, proposal=True)
        ni_event = ni0 - jnp.log1p(-u[0])
        log_k_event0 = m.log_energy_at_interactions(ni_event)
        r0 = m.range_at(log_k0)
        walked_event = state.walked + m.range_at(log_k_event0) - r0
        total0 = jnp.sum(g0)
        event = walking & (walked_event < total0) & (ni_event < m._ni_prop[-1])
        end = walking & ~event
        log_k_sky0 = m.log_energy_at_range(r0 + total0 - state.walked)  # the proposal at the sky
        log_kf0 = jnp.where(event, log_k_event0, log_k_sky0)
        ni1 = jnp.where(event, ni_event, m.interactions(log_k_sky0, proposal=True))
        f0 = _fraction(g0, state.walked)
        f1 = jnp.where(event, _fraction(g0, walked_event), 1.0)
        # the live walk to the event (or to the sky)
        log_kf, ok, log_w = self._live(state, state.log_k, f0, f1, ni1 - ni0)
        # the event: K_i = K_f / (1 − x), weight D(K_i, x)·ρ / [(1 − x)·p(x)·σ_prop(K_f⁰)·ρ⁰], ρ the
        # grammage per unit fraction of the line at the event (live / proposal's; several
        # materials: Σ_m D_m·ρ_m)
        x, log_p = _transfer(u[1], m.x_cut, m.x_top)
        log_ki = log_kf - jnp.log1p(-x)
        inside = log_ki < math.log(m.k_max)
        i1 = _index(g0.shape[0], f1)
        positive, log_rate = self._event_rate(state, i1, jnp.exp(jnp.where(inside, log_ki, 0.0)), x)
        alive = inside & positive & (g0[i1] > 0)
        log_event = (log_rate - jnp.log1p(-x)
                     - sg(jnp.log(jnp.where(alive, g0[i1], 1.0)) + m.log_proposal_rate(log_kf0) + log_p))
        log_w = log_w + jnp.where(event, jnp.where(alive, log_event, -jnp.inf), 0.0)
        log_w = jnp.where(walking, jnp.where(ok, log_w, -jnp.inf), 0.0)
        after = lambda live_event, other, old: jnp.where(walking, jnp.where(event, live_event, other), old)
        new = state._replace(log_k=after(log_ki, log_kf, state.log_k),
                             log_k_prop=after(log_kf0 - jnp.log1p(-x), log_kf0, state.log_k_prop),
                             walked=jnp.where(event, walked_event, state.walked),
                             end=jnp.where(end, jnp.asarray(k, state.end.dtype), state.end))
        return new, log_w

    def inverse(self, state, params, ctx, u, k):
        m = self._ref
        g0 = state.proposal
        was_event = (state.end == 0) | (state.end > k)
        was_end = state.end == k
        x, _ = _transfer(u[1], m.x_cut, m.x_top)
        log_kf = jnp.where(was_event, state.log_k + jnp.log1p(-x), state.log_k)
        log_kf0 = jnp.where(was_event, state.log_k_prop + jnp.log1p(-x), state.log_k_prop)
        # where the proposal's step started: after an event, Exp(1) fewer mean free paths; at the
        # sky, the grammage left after the last event
        r_f0 = m.range_at(log_kf0)
        log_k00 = jnp.where(was_event,
                            m.log_energy_at_interactions(m.interactions(log_kf0, proposal=True) + jnp.log1p(-u[0])),
                            m.log_energy_at_range(r_f0 - (jnp.sum(g0) - state.walked)))
        walked_before = jnp.where(was_event, state.walked - (r_f0 - m.range_at(log_k00)), state.walked)
        f1 = jnp.where(was_event, _fraction(g0, state.walked), 1.0)
        f0 = _fraction(g0, walked_before)
        log_k_before = self._live_back(state, log_kf, f0, f1)
        undo = was_event | was_end
        return state._replace(log_k=jnp.where(undo, log_k_before, state.log_k),
                              log_k_prop=jnp.where(undo, log_k00, state.log_k_prop), walked=walked_before,
                              end=jnp.where(was_end, jnp.zeros_like(state.end), state.end))

    def final(self, state, params, ctx):
        k = jnp.exp(state.log_k)
        return sky_log_flux(self.sky_flux, k, state.cos_zenith, (state.end > 0) & (k < self.material.k_max))


def events_bound(material: MixedMaterial, grammage: float, k_min: float) -> int:
    """Steps (events + 1) that a walk through ``grammage`` kg/m² needs with probability
    ≥ 1 − 1e-9: the proposal's mean free paths met by a muon slowing from the far side to
    ``k_min`` without events (hard events raise the energy, where the rate is lower), plus a
    Poisson tail of 7 standard deviations and 12.  A :class:`~ppl_bmc.physics.mixed.MixedBlend`:
    its reference's (the proposal's) along the total grammage."""
    m = material.reference if isinstance(material, MixedBlend) else material
    r = np.exp(np.interp(np.log(k_min), m._log_k, m._log_r)) + float(grammage)
    log_k = np.interp(np.log(min(r, m.r_max)), m._log_r, m._log_k)
    mean = np.interp(log_k, m._log_k, m._ni_prop) - np.interp(np.log(k_min), m._log_k, m._ni_prop)
    return int(math.ceil(mean + 7.0 * math.sqrt(mean) + 12.0)) + 1
