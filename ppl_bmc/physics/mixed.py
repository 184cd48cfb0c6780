"""Tables of the "mixed" energy-loss mode (PUMAS's): soft continuous losses plus hard events.

A hard event transfers a fraction x = q/K ≥ ``x_cut`` (5 %) of the muon's kinetic energy K
(bremsstrahlung, e⁺e⁻ pair production, photonuclear interaction, close collision with an
electron); smaller transfers are averaged into the soft (restricted) stopping power.  The
tables in ``ppl_bmc/data/mixed.npz`` were computed with the PUMAS physics through ``mulder`` by
``tools/generate_mixed_tables.py`` (kinetic energies 1 MeV to 1e9 GeV on PUMAS's own grid).

:class:`MixedMaterial` holds, per unit mass (divide nothing by density: grammages throughout):

* the soft stopping power S_soft(K) (GeV·m²/kg), its range R_soft(K) = ∫dK/S_soft (kg/m²) and
  proper grammage ∫(m/p) dX (kg/m², for the decay weight);
* the differential cross-section of hard events dσ/dx(K, x) (m²/kg per unit x) on
  x ∈ [x_cut, x_top): radiative processes from a table in (ln K, logit x), close collisions in
  closed form (their DCS ends abruptly at the kinematic limit W_max, which a table would blur);
* the hard cross-section σ(K) = ∫ dσ/dx dx over [x_cut, x_top) (m²/kg), integrated here from
  the same interpolants that :meth:`MixedMaterial.dcs` evaluates, so that the event rate and the
  event spectrum are one consistent model (checked against mulder's own hard cross-section);
* the number of hard-event mean free paths met while slowing down,
  NI(K) = ∫ σ(K')/S_soft(K') dK' (dimensionless), and the same for the proposal rate
  σ_prop = max(σ, ``SIGMA_FLOOR``) that a backward walk uses to place events (it must be
  positive at every energy: a muon of any energy can be the product of a large transfer).

For the quadrature (a smooth, noise-free likelihood with stochastic physics),
``ppl_bmc/data/mixed_ratio.npz`` holds the ratio of the mixed-mode to the CSDA flux through a
slab under the GCCLY sky, per material (:func:`ratio_names`: standard rock, limestone, water;
entries ``NAME/ratio``, ``NAME/error`` on shared grids), on a grid of opacity, zenith angle and
detector threshold, computed with this package's own mixed-mode BMC by
``tools/generate_mixed_ratio.py`` (Monte-Carlo error per node, stored with the table: median
~4e-4, up to ~1.5e-3 at ≤ 3000 m.w.e. and ~1.5e-2 at 10⁴ m.w.e.); :meth:`MixedMaterial.flux_ratio`
interpolates it (linearly in opacity and cos zenith, in ln k_min).

Units: GeV, kg/m², m²/kg.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import lru_cache

import jax
import jax.numpy as jnp
import numpy as np

from ppl_bmc import _checks
from ppl_bmc.physics import flux as _sky
from ppl_bmc.physics import materials as _materials
from ppl_bmc.physics.constants import MUON_MASS
from ppl_bmc.physics.electrons import delta_ray_cross_section, delta_ray_dcs, delta_ray_energy_loss

__all__ = ["Mixed", "MixedMaterial", "MixedBlend", "names", "ratio_names", "get", "blend", "CUT", "CUT_RANGE",
           "SIGMA_FLOOR"]

_DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "mixed.npz")
_RATIO = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "mixed_ratio.npz")

#: Default cut between soft and hard losses (fraction of the kinetic energy; PUMAS's default) and
#: the supported range (the tables' cut is the lowest; above 0.5 the soft loss would swallow
#: most of the radiative spectrum).
CUT, CUT_RANGE = 0.05, (0.05, 0.5)

#: Lowest proposal rate of hard events (m²/kg): below the radiative thresholds (~0.2 GeV in
#: rock) the physical rate vanishes, and a backward walk still proposes events there at this rate
#: (about 1e-4 proposals per muon stopping in rock).
SIGMA_FLOOR = 1e-7

_LOG_FLOOR = np.log(1e-30)


@dataclass(frozen=True)
class Mixed:
    """PUMAS's mixed energy-loss mode as a value: ``physics=Mixed(cut=0.1)`` (``"mixed"`` is
    ``Mixed()``).  ``cut``: fractional energy transfer x = q/K from which losses are simulated as
    discrete events, in [0.05, 0.5].  The mode neglects the fluctuations of the soft losses, so
    it converges as the cut decreases: through 3000 m.w.e. of rock a cut of 0.1 gives 0.3 % less
    flux than 0.05, a cut of 0.5 4.6 % less (CSDA: 11 % less)."""

    cut: float = CUT

    def __post_init__(self):
        cut = float(self.cut)
        if not (np.isfinite(cut) and CUT_RANGE[0] - 1e-12 <= cut <= CUT_RANGE[1]):
            raise ValueError(f"cut must be in [{CUT_RANGE[0]}, {CUT_RANGE[1]}] (a fraction of the kinetic energy), "
                             f"got {self.cut}")
        object.__setattr__(self, "cut", cut)


def _cumulative(log_k, f):
    """∫ f dK from the first node, exact for f log-log linear between nodes (a power law per
    interval, as the tables are interpolated); trapezoid in ln K where f vanishes at a node."""
    k = np.exp(log_k)
    f = np.asarray(f, dtype=float)
    h = np.diff(log_k)
    positive = (f[1:] > 0) & (f[:-1] > 0)
    b = np.where(positive, np.log(np.where(positive, f[1:] / np.where(positive, f[:-1], 1.0), 1.0)), 0.0) / h + 1.0
    bh = b * h
    power = f[:-1] * k[:-1] * h * np.where(np.abs(bh) < 1e-8, 1.0 + 0.5 * bh, np.expm1(bh) / np.where(bh == 0, 1.0, bh))
    trapezoid = 0.5 * (f[1:] * k[1:] + f[:-1] * k[:-1]) * h
    return np.concatenate([[0.0], np.cumsum(np.where(positive, power, trapezoid))])


class MixedMaterial:
    """One material's mixed-mode tables (a value: static under ``jit``).

    Attributes
    ----------
    name : str
    density : float
        kg/m³ (nominal).
    x_cut, x_top : float
        Hard events transfer x ∈ [x_cut, x_top) of the kinetic energy.
    k_min, k_max : float
        Kinetic-energy range of the tables (GeV).
    csda : Material
        The same material's CSDA tables.
    """

    def __init__(self, name, density, kinetic_energy, x, x_cut, z_over_a, soft_stopping_power, soft_range,
                 radiative_dcs, csda, cut=None):
        self.name, self.density, self.csda = name, float(density), csda
        self.table_cut, self.x_top, self.z_over_a = float(x_cut), float(x[-1]), float(z_over_a)
        self.x_cut = self.table_cut if cut is None else float(cut)
        k = np.asarray(kinetic_energy, dtype=float)
        self._log_k = np.log(k)
        self._y = np.log(x / (1 - x))  # logit, uniform
        self._log_d = np.log(np.maximum(radiative_dcs, 1e-30))
        self.k_min, self.k_max = float(k[0]), float(k[-1])
        # hard cross-section above the cut, and the hard energy loss between the table's cut and
        # this one (moved into the soft stopping power): the radiative interpolant integrated in
        # logit x (Simpson, 2048 intervals), the δ-rays in closed form
        sigma = self._radiative_integral(k, self.x_cut, self.x_top, 0)
        sigma += (delta_ray_cross_section(self.z_over_a, k, self.x_cut)
                  - delta_ray_cross_section(self.z_over_a, k, self.x_top))
        moved = self._radiative_integral(k, self.table_cut, self.x_cut, 1) + (
            delta_ray_energy_loss(self.z_over_a, k, self.table_cut) - delta_ray_energy_loss(self.z_over_a, k, self.x_cut))
        s0 = np.asarray(soft_stopping_power, dtype=float)
        s = s0 + moved
        self._log_s = np.log(s)
        # mulder's soft range (PUMAS integrates its own interpolant), shifted by the change of
        # ∫dK/S that the moved loss makes (one integration scheme for both terms: its error cancels)
        r = np.asarray(soft_range, dtype=float) + _cumulative(self._log_k, 1 / s) - _cumulative(self._log_k, 1 / s0)
        self._log_r = np.log(r)
        self.r_min, self.r_max = float(r[0]), float(r[-1])
        self._sigma = sigma
        self._log_sigma_prop = np.log(np.maximum(sigma, SIGMA_FLOOR))
        self._ni = _cumulative(self._log_k, sigma / s)  # target
        self._ni_prop = _cumulative(self._log_k, np.exp(self._log_sigma_prop) / s)  # proposal, increasing
        self._proper = _cumulative(self._log_k, MUON_MASS / np.sqrt(k * (k + 2 * MUON_MASS)) / s)
        self._key = (name, self.density, self.x_cut, self._log_s.tobytes(), self._log_d.tobytes(), self.z_over_a,
                     csda)

    def _radiative_integral(self, k, x_lo, x_hi, moment, n=2048):
        """∫ x^moment·K^moment·dσ_rad/dx dx over [x_lo, x_hi] at the table's rows (numpy)."""
        if x_hi <= x_lo:
            return np.zeros_like(k)
        y = np.linspace(math.log(x_lo / (1 - x_lo)), math.log(x_hi / (1 - x_hi)), n + 1)
        j = np.clip(np.searchsorted(self._y, y) - 1, 0, self._y.size - 2)
        t = (y - self._y[j]) / (self._y[j + 1] - self._y[j])
        log_d = (1 - t) * self._log_d[:, j] + t * self._log_d[:, j + 1]  # (K, n + 1)
        x = 1 / (1 + np.exp(-y))
        f = np.where(log_d > _LOG_FLOOR + 1, np.exp(log_d), 0.0) * x * (1 - x) * (x * k[:, None]) ** moment
        w = np.ones(n + 1)
        w[1:-1:2], w[2:-1:2] = 4.0, 2.0
        return f @ w * (y[1] - y[0]) / 3

    def __eq__(self, other):
        return isinstance(other, MixedMaterial) and other._key == self._key

    def __hash__(self):
        return hash(self._key)

    def __repr__(self):
        return f"MixedMaterial({self.name!r}, cut={self.x_cut})"

    # numpy views for checks and tools ------------------------------------------------------
    def hard_cross_section(self, kinetic_energy):
        """σ(K) (m²/kg) of hard events, x ∈ [x_cut, x_top), at K (GeV; numpy, log-log interpolation)."""
        return np.interp(np.log(kinetic_energy), self._log_k, self._sigma)

    def soft_stopping_power(self, kinetic_energy):
        """Soft (restricted) stopping power (GeV·m²/kg) at K (GeV; numpy)."""
        return np.exp(np.interp(np.log(kinetic_energy), self._log_k, self._log_s))

    # kernel look-ups (JAX, unchecked: callers clip) -------------------------------------------
    def _at(self, column, log_k):
        return jnp.interp(log_k, jnp.asarray(self._log_k, log_k.dtype), jnp.asarray(column, log_k.dtype))

    def log_soft_stopping(self, log_k):
        """ln S_soft (S in GeV·m²/kg) at ln K (K in GeV)."""
        return self._at(self._log_s, log_k)

    def range_at(self, log_k):
        """R_soft (kg/m²) at ln K."""
        return jnp.exp(self._at(self._log_r, log_k))

    def log_energy_at_range(self, r):
        """ln K at soft range ``r`` (kg/m²), clipped to the table."""
        log_r = jnp.log(jnp.clip(r, self.r_min, self.r_max))
        return jnp.interp(log_r, jnp.asarray(self._log_r, log_r.dtype), jnp.asarray(self._log_k, log_r.dtype))

    def interactions(self, log_k, proposal: bool = False):
        """NI(K): hard-event mean free paths met slowing down to the table's bottom (the proposal's
        with ``proposal``)."""
        return self._at(self._ni_prop if proposal else self._ni, log_k)

    def log_energy_at_interactions(self, ni):
        """Inverse of ``interactions(·, proposal=True)``: ln K (clipped to the table)."""
        xp = jnp.asarray(self._ni_prop, ni.dtype)
        return jnp.interp(jnp.clip(ni, xp[0], xp[-1]), xp, jnp.asarray(self._log_k, ni.dtype))

    def log_proposal_rate(self, log_k):
        """ln σ_prop(K) (m²/kg)."""
        return self._at(self._log_sigma_prop, log_k)

    # one search per energy: a position (i, t) on the kinetic-energy grid (shared by every
    # material's tables) reads all the walk's columns at once ---------------------------------
    def locate(self, log_k):
        """``(i, t)``: ln K's interval on the table's grid and the fraction within it (clipped to
        the table, as the look-ups above)."""
        lk = jnp.asarray(self._log_k, log_k.dtype)
        i = jnp.clip(jnp.searchsorted(lk, log_k, side="right") - 1, 0, lk.shape[0] - 2)
        return i, jnp.clip((log_k - lk[i]) / (lk[i + 1] - lk[i]), 0.0, 1.0)

    def locate_range(self, r):
        """``(ln K, i, t)`` at soft range ``r`` (kg/m², clipped to the table): the inverse of the
        range and the energy's position on the grid, from one search."""
        lr = jnp.asarray(self._log_r, r.dtype)
        log_r = jnp.log(jnp.clip(r, self.r_min, self.r_max))
        i = jnp.clip(jnp.searchsorted(lr, log_r, side="right") - 1, 0, lr.shape[0] - 2)
        t = jnp.clip((log_r - lr[i]) / (lr[i + 1] - lr[i]), 0.0, 1.0)
        lk = jnp.asarray(self._log_k, r.dtype)
        return lk[i] + t * (lk[i + 1] - lk[i]), i, t

    def walk_columns(self, i, t):
        """``(R_soft, ln S_soft, NI, proper)`` at the grid position ``(i, t)`` (units as the
        look-ups above)."""
        c = jnp.asarray(np.stack([self._log_r, self._log_s, self._ni, self._proper], axis=-1), t.dtype)
        v = c[i] + t * (c[i + 1] - c[i])
        return jnp.exp(v[0]), v[1], v[2], v[3]

    def proper(self, log_k):
        """∫ (m/p) dX (kg/m²) along the soft slowing-down from the table's bottom to ln K (for the
        decay weight: c·Δτ = Δproper / ρ)."""
        return self._at(self._proper, log_k)

    def dcs(self, k, x):
        """dσ/dx (m²/kg) of hard events at kinetic energy ``k`` (GeV) and transfer ``x`` ∈
        [x_cut, x_top) (broadcast; bilinear in (ln K, logit x) of ln dσ/dx for the radiative part,
        closed form for close collisions)."""
        dt = jnp.result_type(k)
        log_k = jnp.log(k)
        y = jnp.log(x / (1 - x))
        lk, yy = jnp.asarray(self._log_k, dt), jnp.asarray(self._y, dt)
        i = jnp.clip(jnp.searchsorted(lk, log_k) - 1, 0, lk.shape[0] - 2)
        j = jnp.clip(jnp.searchsorted(yy, y) - 1, 0, yy.shape[0] - 2)
        s = jnp.clip((log_k - lk[i]) / (lk[i + 1] - lk[i]), 0.0, 1.0)
        t = jnp.clip((y - yy[j]) / (yy[j + 1] - yy[j]), 0.0, 1.0)
        d = jnp.asarray(self._log_d, dt)
        log_d = ((1 - s) * ((1 - t) * d[i, j] + t * d[i, j + 1]) + s * ((1 - t) * d[i + 1, j] + t * d[i + 1, j + 1]))
        radiative = jnp.where(log_d > _LOG_FLOOR + 1, jnp.exp(log_d), 0.0)
        return radiative + delta_ray_dcs(self.z_over_a, k, x, xp=jnp)

    # the tabulated mixed/CSDA flux ratio (quadrature) -----------------------------------------
    def has_flux_ratio(self) -> bool:
        """Whether the quadrature has a mixed/CSDA flux ratio for this material."""
        return self.name in ratio_names()

    def _require_flux_ratio(self, argument="material"):
        if not self.has_flux_ratio():
            raise ValueError(f"{argument}: the quadrature with physics='mixed' is tabulated for "
                             f"{', '.join(ratio_names())}, got {self.name}; use method='bmc' (any material with "
                             f"mixed tables: {', '.join(names())}), or tabulate it with tools/generate_mixed_ratio.py")

    def check_flux_ratio(self, opacity_mwe, zenith_deg, k_min, k_max, sky, argument="material"):
        """Raise ``ValueError`` when the tabulated ratio does not cover the request (concrete
        values are checked; traced opacities are clipped to the table by :meth:`flux_ratio`)."""
        self._require_flux_ratio(argument)
        t = _ratio_table()
        if self.x_cut != CUT:
            raise ValueError(f"physics: the quadrature's mixed/CSDA ratio is tabulated for the cut {CUT:g}, got "
                             f"Mixed(cut={self.x_cut:g}); use method='bmc'")
        if sky != _sky.get(str(t["sky"])):
            raise ValueError(f"sky: the quadrature with physics='mixed' is tabulated for the {t['sky']} sky only, got "
                             f"{sky!r}; use method='bmc'")
        top, zen, ks = float(t["opacity_mwe"][-1]), float(t["zenith_deg"][-1]), t["k_min"]
        if _checks.is_concrete(opacity_mwe) and float(np.max(opacity_mwe)) > top:
            raise ValueError(f"opacity_mwe must be <= {top:g} m.w.e. for the quadrature with physics='mixed' (its "
                             f"table's end), got {float(np.max(opacity_mwe)):g}; use method='bmc'")
        if not 0 <= float(zenith_deg) <= zen:
            raise ValueError(f"zenith_deg must be in [0, {zen:g}] degrees for the quadrature with physics='mixed', "
                             f"got {zenith_deg}")
        if float(k_max) != float(t["k_max"]):
            raise ValueError(f"k_max must be {float(t['k_max']):g} GeV for the quadrature with physics='mixed' (its "
                             f"table's), got {k_max}; use method='bmc'")
        if not ks[0] * (1 - 1e-9) <= float(k_min) <= ks[-1] * (1 + 1e-9):
            raise ValueError(f"k_min must be in [{ks[0]:g}, {ks[-1]:g}] GeV for the quadrature with physics='mixed', "
                             f"got {k_min}")

    def flux_ratio(self, opacity_mwe, cos_zenith, k_min):
        """Mixed/CSDA ratio of the integrated flux through a slab (interpolated, differentiable in
        the opacity, m.w.e.); ``cos_zenith`` and ``k_min`` (GeV) scalars, opacity any shape."""
        self._require_flux_ratio()
        t = _ratio_table()
        dt = jnp.result_type(opacity_mwe)
        c = np.cos(np.radians(t["zenith_deg"]))[::-1]  # increasing
        r = jnp.asarray(t[f"{self.name}/ratio"][:, ::-1, :], dt)  # (X, cos, k)
        lk = jnp.asarray(np.log(t["k_min"]), dt)
        j = jnp.clip(jnp.searchsorted(lk, jnp.log(k_min)) - 1, 0, lk.shape[0] - 2)
        s = jnp.clip((jnp.log(k_min) - lk[j]) / (lk[j + 1] - lk[j]), 0.0, 1.0)
        r = (1 - s) * r[:, :, j] + s * r[:, :, j + 1]  # (X, cos)
        r = jax.vmap(lambda col: jnp.interp(cos_zenith, jnp.asarray(c, dt), col))(r)  # (X,)
        return jnp.interp(opacity_mwe, jnp.asarray(t["opacity_mwe"], dt), r)


def _ratio_table():
    return _materials.read_tables(_RATIO)


def _tables():
    return _materials.read_tables(_DATA)


def ratio_names() -> list[str]:
    """Materials whose mixed/CSDA flux ratio is tabulated for the quadrature."""
    return _materials.table_names(_ratio_table())


def names() -> list[str]:
    """Materials with mixed-mode tables."""
    return _materials.table_names(_tables())


@lru_cache(maxsize=None)
def get(material, argument: str = "material", cut: float | None = None) -> MixedMaterial:
    """The mixed-mode tables of ``material`` (a name from :func:`names`, a tabulated
    :class:`~ppl_bmc.materials.Material`, or a :class:`MixedMaterial`); ``ValueError`` naming
    ``argument`` for a material without them (e.g. from :func:`ppl_bmc.materials.custom`).
    ``cut``: the fractional transfer x = q/K from which losses are hard events, in
    [0.05, 0.5] (default 0.05, PUMAS's); softer transfers are averaged into the soft loss."""
    cut = Mixed(CUT if cut is None else cut).cut
    if isinstance(material, MixedMaterial):
        return material if material.x_cut == cut else get(material.name, argument, cut)
    name = material.name if isinstance(material, _materials.Material) else material
    known = names()
    if name not in known or (isinstance(material, _materials.Material) and material != _materials.get(name)):
        raise ValueError(f"{argument}: physics='mixed' needs mixed-mode tables, which exist for {', '.join(known)}; "
                         f"got {material!r} (a custom material has CSDA tables only)")
    t = _tables()
    return MixedMaterial(name, t[f"{name}/density"], t["kinetic_energy"], t["x"], float(t["x_cut"]),
                         t[f"{name}/z_over_a"], t[f"{name}/soft_stopping_power"], t[f"{name}/soft_range"],
                         t[f"{name}/radiative_dcs"], _materials.get(name), cut=cut)


class MixedBlend:
    """The mixed-mode tables of several materials that one scene holds (a
    :class:`~ppl_bmc.geometry.Composition`'s), a value (static under ``jit``).

    The backward walk (:class:`~ppl_bmc.transport.stochastic.MixedKernel`) places hard events with
    the proposal rate of the ``reference`` (the first material) along the line's total grammage,
    scores each event by the rates of every material present where it happens (Bragg additivity:
    the hard-event rate per unit length is ``Σ ρ_m σ_m``), and walks the soft losses through each
    piece of the line in each material in turn, as the CSDA :class:`~ppl_bmc.materials.Blend`.

    Attributes
    ----------
    materials : tuple of MixedMaterial
        At least two, with one cut and one kinetic-energy grid.
    reference : MixedMaterial
        ``materials[0]``.
    csda : Blend
        Their CSDA tables (the detector-side energy proposal).
    density : float
        The largest nominal density among them (kg/m³; bounds the events a walk may meet).
    """

    def __init__(self, materials):
        mats = tuple(materials)
        if len(mats) < 2 or not all(isinstance(m, MixedMaterial) for m in mats):
            raise ValueError(f"materials must be at least two MixedMaterial, got {materials!r}")
        for m in mats[1:]:
            if (m.x_cut != mats[0].x_cut or m.x_top != mats[0].x_top or m._log_k.shape != mats[0]._log_k.shape
                    or not np.array_equal(m._log_k, mats[0]._log_k)):
                raise ValueError(f"materials: {m.name} has another cut or grid than {mats[0].name}")
        self.materials = mats
        self.csda = _materials.Blend([m.csda for m in mats])
        self.density = max(m.density for m in mats)

    @property
    def reference(self) -> MixedMaterial:
        return self.materials[0]

    @property
    def name(self) -> str:
        return "+".join(m.name for m in self.materials)

    x_cut = property(lambda self: self.reference.x_cut)
    x_top = property(lambda self: self.reference.x_top)
    k_min = property(lambda self: self.reference.k_min)
    k_max = property(lambda self: self.reference.k_max)

    def __len__(self):
        return len(self.materials)

    def __eq__(self, other):
        return isinstance(other, MixedBlend) and other.materials == self.materials

    def __hash__(self):
        return hash(("MixedBlend",) + self.materials)

    def __repr__(self):
        return f"MixedBlend({', '.join(m.name for m in self.materials)}, cut={self.x_cut})"


def blend(materials, argument: str = "materials", cut: float | None = None) -> MixedBlend:
    """The mixed-mode tables of a :class:`~ppl_bmc.materials.Blend` (or a sequence of materials or
    names); ``ValueError`` naming ``argument[i]`` for a material without them."""
    mats = materials.materials if isinstance(materials, _materials.Blend) else tuple(materials)
    return MixedBlend(tuple(get(m, f"{argument}[{i}]", cut) for i, m in enumerate(mats)))
