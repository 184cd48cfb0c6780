"""Generate ppl_bmc/data/mixed.npz: the muon tables of PUMAS's "mixed" mode (soft continuous
losses below a fractional cut plus hard discrete events), through the ``mulder`` package.

    python -m venv /tmp/mulderenv && /tmp/mulderenv/bin/pip install mulder==0.3.7
    /tmp/mulderenv/bin/python tools/generate_mixed_tables.py [output.npz]

About 25 minutes on one core (mulder rebuilds its tables once per cut and material: 49 × 8 times).
The package reads only the .npz at run time (``ppl_bmc.physics.mixed``).

Physics: mulder's default ``Physics()`` (PUMAS defaults: SSR19 bremsstrahlung and pair
production, DRSS01 photonuclear, Salvat's close-collision ionisation; a hard event is an energy
transfer q ≥ x_c·K with x_c = 5 %, PUMAS's default cut).  For each material of
``tools/generate_material_tables.py`` (same compositions, densities, mean excitation energies):

* ``soft_stopping_power`` (GeV·m²/kg): mulder's ``stopping_power(K, mode="mixed")`` / ρ, the
  restricted loss of transfers below the cut; ``csda_stopping_power`` the total (for checks);
* ``soft_range`` (kg/m²): ``range(K, mode="mixed")`` · ρ;
* ``z_over_a`` (mol/g): Σ w_el Z/A, for the close-collision (δ-ray) part, which the package
  evaluates in closed form (its DCS jumps to zero at the kinematic limit W_max, which a table in
  x would smear);
* ``radiative_dcs`` (m²/kg per unit x): dσ/dx of bremsstrahlung + pair production +
  photonuclear at (K, x), x = q/K.  mulder does not expose the differential cross-section, but it
  gives the hard cross-section above any cut, C(K, x) = ∫ₓ¹ dσ/dx' dx' (``cross_section(K)`` / ρ
  of a ``Physics(cutoff=x)``).  The radiative C is mulder's C minus the closed-form δ-ray C, and
  its derivative −∂C/∂x on a grid uniform in logit(x) is taken by five-point differences
  (fourth order).  The kinetic-energy rows are PUMAS's own grid (1 MeV to 1e9 GeV, 16 per
  decade), where mulder returns its table values without interpolation, so that the subtraction
  is exact to rounding.
* ``hard_cross_section`` (m²/kg): C(K, 0.05), for checks.

The δ-ray cross-section is :mod:`ppl_bmc.physics.electrons` (numpy only: this script imports it
without JAX).
"""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from generate_material_tables import MATERIALS, compile_material  # noqa: E402

from ppl_bmc.physics.electrons import delta_ray_cross_section  # noqa: E402  (numpy only: no JAX needed)

#: PUMAS's kinetic-energy rows (GeV): mantissas 1.0 … 9.0 × 10ⁿ MeV, 1 MeV to 1e9 GeV.
MANTISSAS = (1.0, 1.2, 1.4, 1.7, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 5.5, 6.0, 7.0, 8.0, 9.0)
ENERGY_GRID = np.array([m * 10.0 ** n for n in range(12) for m in MANTISSAS] + [1e12]) * 1e-3

X_CUT, X_TOP, N_X = 0.05, 0.995, 49
#: Fractional transfers x: uniform in logit(x) from the cut to X_TOP (hard events above X_TOP,
#: ancestors ≥ 200× the muon's energy, are not simulated).
X_GRID = 1.0 / (1.0 + np.exp(-np.linspace(np.log(X_CUT / (1 - X_CUT)), np.log(X_TOP / (1 - X_TOP)), N_X)))

def z_over_a(name, spec):
    import mulder.materials as mm

    if spec[1] is None:  # mulder's own material: its composition is in elements already
        composition = dict(mm.Material(spec[0]).composition)
    else:
        composition = spec[1]
    return sum(w * mm.Element(el).Z / mm.Element(el).A for el, w in composition.items())


def derivative(c, y):
    """−dC/dy on the uniform grid y (axis −1): five-point central differences, one-sided at the ends."""
    h = y[1] - y[0]
    d = np.empty_like(c)
    d[..., 2:-2] = (c[..., :-4] - 8 * c[..., 1:-3] + 8 * c[..., 3:-1] - c[..., 4:]) / (12 * h)
    d[..., :2] = (-25 * c[..., 0:2] + 48 * c[..., 1:3] - 36 * c[..., 2:4] + 16 * c[..., 3:5] - 3 * c[..., 4:6]) / (12 * h)
    d[..., -2:] = (25 * c[..., -2:] - 48 * c[..., -3:-1] + 36 * c[..., -4:-2] - 16 * c[..., -5:-3]
                   + 3 * c[..., -6:-4]) / (12 * h)
    return -d


def main(out=None):
    import mulder

    out = out or os.path.join(os.path.dirname(__file__), "..", "ppl_bmc", "data", "mixed.npz")
    k = ENERGY_GRID
    arrays = {"kinetic_energy": k, "x": X_GRID, "x_cut": np.float64(X_CUT)}
    physics = {x: mulder.Physics(cutoff=float(x)) for x in X_GRID}
    for name, spec in MATERIALS.items():
        base = compile_material(physics[X_GRID[0]], name, spec)
        rho = float(base.definition.density)
        za = z_over_a(name, spec)
        c = np.stack([np.asarray(compile_material(physics[x], name, spec).cross_section(k)) / rho for x in X_GRID],
                     axis=-1)  # (K, x): hard cross-section above each cut, m²/kg
        c_rad = c - delta_ray_cross_section(za, k[:, None], X_GRID[None, :])
        y = np.log(X_GRID / (1 - X_GRID))
        dcs = derivative(c_rad, y) / (X_GRID * (1 - X_GRID))  # dC/dx = dC/dy / (x(1−x))
        arrays.update({
            f"{name}/density": np.float64(rho),
            f"{name}/z_over_a": np.float64(za),
            f"{name}/soft_stopping_power": np.asarray(base.stopping_power(k, mode="mixed")) / rho,
            f"{name}/csda_stopping_power": np.asarray(base.stopping_power(k)) / rho,
            f"{name}/soft_range": np.asarray(base.range(k, mode="mixed")) * rho,
            f"{name}/hard_cross_section": c[:, 0],
            f"{name}/radiative_dcs": np.maximum(dcs, 0.0),
        })
        print(f"{name}: rho={rho} Z/A={za:.5f}; C_rad/C at 1 TeV, x_c: {c_rad[k.searchsorted(1e3), 0] / c[k.searchsorted(1e3), 0]:.4f};"
              f" negative DCS entries clipped: {(dcs < 0).sum()}", flush=True)
    arrays["generator"] = np.array(f"mulder {mulder.config.VERSION}, physics {physics[X_GRID[0]].bremsstrahlung}/"
                                   f"{physics[X_GRID[0]].pair_production}/{physics[X_GRID[0]].photonuclear}")
    tmp = out + ".tmp.npz"
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, out)
    print("wrote", out)


if __name__ == "__main__":
    main(*sys.argv[1:])
