"""Close collisions of muons with atomic electrons (δ-rays): the differential cross-section and
its integrals in closed form.  numpy only at import (``xp=jax.numpy`` evaluates the DCS in JAX),
so that the offline table generators use the same formulas.

The DCS is the one PUMAS uses for ionisation above its cut (``pumas_electronic_dcs``, after F.
Salvat, NIM B 316 (2013) 144): per unit mass of a material with Σ w Z/A = ``z_over_a`` (mol/g),

    dσ/dq = 2π mₑ rₑ² N_A (Z/A) [1/(2E²) + 1/q² − β²/(q W_max)] / β²     for q ≤ W_max,

W_max = 2 mₑ p² / (m² + mₑ(mₑ + 2E)) the kinematic limit, E = K + m, p² = K(K + 2m).  Constants:
PUMAS's electron mass, classical radius and Avogadro's number.  Units: GeV, m²/kg.
"""

from __future__ import annotations

import numpy as np

from ppl_bmc.physics.constants import MUON_MASS

__all__ = ["delta_ray_dcs", "delta_ray_cross_section", "delta_ray_energy_loss"]

#: Electron mass (GeV), classical electron radius (m), Avogadro's number (1/mol).
ELECTRON_MASS, ELECTRON_RADIUS, AVOGADRO = 0.510998910e-3, 2.817940285e-15, 6.02214076e23


def _kinematics(z_over_a, k):
    """``(E, β², W_max, prefactor 2π mₑ rₑ² N_A (Z/A)/β² in m²·GeV/kg)`` at kinetic energy k (GeV)."""
    e = k + MUON_MASS
    p2 = k * (k + 2 * MUON_MASS)
    beta2 = p2 / e**2
    w_max = 2 * ELECTRON_MASS * p2 / (MUON_MASS**2 + ELECTRON_MASS * (ELECTRON_MASS + 2 * e))
    return e, beta2, w_max, 2 * np.pi * ELECTRON_MASS * ELECTRON_RADIUS**2 * AVOGADRO * 1e3 * z_over_a / beta2


def delta_ray_dcs(z_over_a, k, x, xp=np):
    """dσ/dx (m²/kg) at kinetic energy ``k`` (GeV) and fractional transfer x = q/K (broadcast);
    0 above the kinematic limit W_max/K."""
    e, beta2, w_max, pref = _kinematics(z_over_a, k)
    q = x * k
    return xp.where(q <= w_max, pref * k * (0.5 / e**2 + 1 / q**2 - beta2 / (q * w_max)), 0.0)


def delta_ray_cross_section(z_over_a, k, x):
    """∫ dσ/dx' dx' (m²/kg) from x to the kinematic limit."""
    e, beta2, w, pref = _kinematics(z_over_a, k)
    q = np.minimum(x * k, w)
    return pref * ((w - q) / (2 * e**2) + 1 / q - 1 / w - beta2 / w * np.log(w / q))


def delta_ray_energy_loss(z_over_a, k, x):
    """∫ q·dσ/dq dq (GeV·m²/kg) from q = xK to the kinematic limit."""
    e, beta2, w, pref = _kinematics(z_over_a, k)
    q = np.minimum(x * k, w)
    return pref * ((w**2 - q**2) / (4 * e**2) + np.log(w / q) - beta2 * (w - q) / w)
