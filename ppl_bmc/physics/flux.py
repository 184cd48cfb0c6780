"""Open-sky muon flux models: differential flux in GeV⁻¹ m⁻² s⁻¹ sr⁻¹ of (K, cos zenith).

A sky flux is a value: an instance of :class:`SkyFlux` (immutable, hashable by value), called as
``flux(kinetic_energy_gev, cos_zenith)``.  Pass one to ``Scene(..., sky=...)`` or
``transmitted_flux(..., model=...)``; the names in :data:`MODELS` are shorthand.  A user flux
subclasses :class:`SkyFlux` and defines ``__call__`` (JAX-traceable, broadcasting).

* :func:`gaisser` — T. K. Gaisser, *Cosmic Rays and Particle Physics* (1990), as in the PDG
  review "Cosmic rays" (eq. 30.4): 0.14·E^-2.7·[1/(1 + 1.1·E·cosθ/115 GeV) +
  0.054/(1 + 1.1·E·cosθ/850 GeV)] cm⁻² s⁻¹ sr⁻¹ GeV⁻¹ (flat Earth, valid for E ≳ 100/cosθ GeV).
* :func:`gccly` — M. Guan, M.-C. Chu, J. Cao, K.-B. Luk, C. Yang, arXiv:1509.06176 (2015): the
  Gaisser form with a low-energy correction [1 + 3.64 GeV/(E·cos^1.29 θ*)]^-2.7 and the
  Earth-curvature corrected cos θ* of D. Chirkin (hep-ph/0407078), parameters P1…P5 below.  This
  is the default of PUMAS and mulder.

``E`` in those formulas is the muon's total energy, E = K + m_μ.  Both give μ⁺ + μ⁻; the charge
ratio :data:`MU_PLUS_OVER_MU_MINUS` splits them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from ppl_bmc import _checks
from ppl_bmc.physics.constants import MUON_MASS

#: μ⁺/μ⁻ charge ratio used by PUMAS/mulder for the GCCLY flux.
MU_PLUS_OVER_MU_MINUS = 1.2766
#: Chirkin's cos θ* parameters (hep-ph/0407078), as quoted by Guan et al. 2015.
CHIRKIN_P = (0.102573, -0.068287, 0.958633, 0.0407253, 0.817285)
_CM2_TO_M2 = 1.0e4


def cos_theta_star(cos_zenith):
    """Earth-curvature corrected cosine of the zenith angle (Chirkin 2004)."""
    p1, p2, p3, p4, p5 = CHIRKIN_P
    c = jnp.asarray(cos_zenith)
    num = c**2 + p1**2 + p2 * c**p3 + p4 * c**p5
    return jnp.sqrt(num / (1.0 + p1**2 + p2 + p4))


def _checked(kinetic_energy, cos_zenith):
    """Arrays of (K, cos zenith); concrete values must satisfy K > 0 GeV and 0 <= cos <= 1."""
    k, c = jnp.asarray(kinetic_energy), jnp.asarray(cos_zenith)
    if _checks.is_concrete(k) and not np.all(np.asarray(k) > 0):
        raise ValueError(f"kinetic_energy must be > 0 GeV, got minimum {np.min(np.asarray(k))}")
    if _checks.is_concrete(c) and not np.all((np.asarray(c) >= 0) & (np.asarray(c) <= 1)):
        raise ValueError("cos_zenith must be in [0, 1] (the sky is above the horizon)")
    return k, c


def _gaisser_form(energy, c):
    pion = 1.0 / (1.0 + 1.1 * energy * c / 115.0)
    kaon = 0.054 / (1.0 + 1.1 * energy * c / 850.0)
    return 0.14 * (pion + kaon) * _CM2_TO_M2


class SkyFlux(ABC):
    """Base class of open-sky fluxes: ``__call__(kinetic_energy, cos_zenith)`` → differential flux
    (GeV⁻¹ m⁻² s⁻¹ sr⁻¹) of μ⁺ + μ⁻ at K (GeV, > 0) and cos zenith (in [0, 1]), broadcasting.

    Subclasses must be immutable and hashable by value (they are static under ``jit``); a frozen
    dataclass is the simplest way.
    """

    @abstractmethod
    def __call__(self, kinetic_energy, cos_zenith):
        """Differential flux, GeV⁻¹ m⁻² s⁻¹ sr⁻¹; ``kinetic_energy`` in GeV."""

    def __repr__(self):
        return f"{type(self).__name__}()"


class _Formula(SkyFlux):
    """A flux with no parameters: all its instances are equal."""

    def __eq__(self, other):
        return type(other) is type(self)

    def __hash__(self):
        return hash(type(self).__name__)


class Gaisser(_Formula):
    """Gaisser flux (μ⁺ + μ⁻), GeV⁻¹ m⁻² s⁻¹ sr⁻¹, flat Earth (see the module docstring)."""

    def __call__(self, kinetic_energy, cos_zenith):
        k, c = _checked(kinetic_energy, cos_zenith)
        energy = k + MUON_MASS
        return energy**-2.7 * _gaisser_form(energy, c)


class GCCLY(_Formula):
    """GCCLY flux (μ⁺ + μ⁻) at sea level, GeV⁻¹ m⁻² s⁻¹ sr⁻¹ (Guan et al. 2015; PUMAS's default)."""

    def __call__(self, kinetic_energy, cos_zenith):
        k, c = _checked(kinetic_energy, cos_zenith)
        energy = k + MUON_MASS
        c = cos_theta_star(c)
        low = energy * (1.0 + 3.64 / (energy * c**1.29))
        return low**-2.7 * _gaisser_form(energy, c)


#: The Gaisser flux (a :class:`Gaisser` value): ``gaisser(K_gev, cos_zenith)``.
gaisser = Gaisser()
#: The GCCLY flux (a :class:`GCCLY` value): ``gccly(K_gev, cos_zenith)``.
gccly = GCCLY()


def charge_fraction(charge: int) -> float:
    """Fraction of the total flux carried by μ⁺ (``charge=+1``) or μ⁻ (``-1``)."""
    r = MU_PLUS_OVER_MU_MINUS
    if charge == 1:
        return r / (1.0 + r)
    if charge == -1:
        return 1.0 / (1.0 + r)
    raise ValueError(f"charge must be +1 or -1, got {charge!r}")


class TabulatedFlux(SkyFlux):
    """A user flux tabulated on kinetic energy (GeV) × cos zenith, interpolated log-linearly.

    ``values[i, j]`` is the flux (GeV⁻¹ m⁻² s⁻¹ sr⁻¹, > 0) at ``kinetic_energy[i]`` and
    ``cos_zenith[j]``; both grids strictly increasing.  Outside the grids → ``ValueError`` for
    concrete inputs.
    """

    def __init__(self, kinetic_energy, cos_zenith, values):
        k, c, v = (np.asarray(a, dtype=float) for a in (kinetic_energy, cos_zenith, values))
        if k.ndim != 1 or k.size < 2 or np.any(np.diff(k) <= 0) or np.any(k <= 0):
            raise ValueError("kinetic_energy must be a strictly increasing 1-D grid of > 0 GeV with ≥ 2 points")
        if c.ndim != 1 or c.size < 2 or np.any(np.diff(c) <= 0) or c[0] < -1 or c[-1] > 1:
            raise ValueError("cos_zenith must be a strictly increasing 1-D grid within [-1, 1] with ≥ 2 points")
        if v.shape != (k.size, c.size) or not np.all(v > 0):
            raise ValueError(f"values must have shape {(k.size, c.size)} and be > 0")
        self._log_k, self._c, self._log_v = np.log(k), c, np.log(v)
        self._key = tuple(a.tobytes() for a in (k, c, v)) + (v.shape,)

    def __eq__(self, other):
        return type(other) is type(self) and other._key == self._key

    def __hash__(self):
        return hash(self._key)

    def __repr__(self):
        return f"TabulatedFlux({self._log_k.size} energies × {self._c.size} cos zenith)"

    def __call__(self, kinetic_energy, cos_zenith):
        lk = jnp.log(jnp.asarray(kinetic_energy))
        c = jnp.asarray(cos_zenith)
        lk, c = jnp.broadcast_arrays(lk, c)
        i = jnp.clip(jnp.searchsorted(self._log_k, lk) - 1, 0, self._log_k.size - 2)
        j = jnp.clip(jnp.searchsorted(self._c, c) - 1, 0, self._c.size - 2)
        tk = (lk - self._log_k[i]) / (self._log_k[i + 1] - self._log_k[i])
        tc = (c - self._c[j]) / (self._c[j + 1] - self._c[j])
        v = self._log_v
        log_flux = ((1 - tk) * (1 - tc) * v[i, j] + tk * (1 - tc) * v[i + 1, j]
                    + (1 - tk) * tc * v[i, j + 1] + tk * tc * v[i + 1, j + 1])
        return jnp.exp(log_flux)


@dataclass(frozen=True)
class Tilted(SkyFlux):
    """A sky flux with its spectral index shifted: ``base(K, c) × ((K + m_μ)/pivot_gev)^tilt``
    (GeV⁻¹ m⁻² s⁻¹ sr⁻¹), a nuisance of the flux model's shape (``tilt`` dimensionless, e.g.
    ±0.05; ``pivot_gev`` > 0 the energy where the flux is unchanged)."""

    base: SkyFlux
    tilt: float
    pivot_gev: float = 10.0

    def __post_init__(self):
        if not isinstance(self.base, SkyFlux):
            raise ValueError(f"base must be a SkyFlux, got {self.base!r}")
        if not (np.isfinite(self.tilt) and abs(self.tilt) < 1):
            raise ValueError(f"tilt must be finite with |tilt| < 1, got {self.tilt}")
        if not (np.isfinite(self.pivot_gev) and self.pivot_gev > 0):
            raise ValueError(f"pivot_gev must be > 0 GeV, got {self.pivot_gev}")
        object.__setattr__(self, "tilt", float(self.tilt))
        object.__setattr__(self, "pivot_gev", float(self.pivot_gev))

    def __call__(self, kinetic_energy, cos_zenith):
        k = jnp.asarray(kinetic_energy)
        return self.base(k, cos_zenith) * ((k + MUON_MASS) / self.pivot_gev) ** self.tilt


#: Sky fluxes by name (shorthand for the values).
MODELS = {"gccly": gccly, "gaisser": gaisser}


def get(sky, name: str = "sky") -> SkyFlux:
    """The :class:`SkyFlux` ``sky`` itself, or the one a name in :data:`MODELS` stands for;
    ``ValueError`` naming the argument ``name`` otherwise."""
    if isinstance(sky, SkyFlux):
        return sky
    if isinstance(sky, str) and sky in MODELS:
        return MODELS[sky]
    raise ValueError(f"{name} must be a ppl_bmc.flux.SkyFlux or one of {sorted(MODELS)}, got {sky!r}")


__all__ = ["SkyFlux", "GCCLY", "Gaisser", "TabulatedFlux", "Tilted", "gccly", "gaisser", "MODELS", "get", "cos_theta_star",
           "charge_fraction", "MU_PLUS_OVER_MU_MINUS", "CHIRKIN_P"]
