"""Generate ppl_bmc/data/materials.npz with the PUMAS physics, through the ``mulder`` package.

    pip install mulder==0.3.7 && python tools/generate_material_tables.py

mulder computes the tables locally (offline) with PUMAS' default physics (bremsstrahlung and
pair production SSR19, photonuclear DRSS01, Fano density effect).  The package reads only the
.npz at run time, so mulder is not a dependency.

Compositions are mass fractions; densities in kg/m³.  Sources: PDG "Atomic and Nuclear
Properties of Materials" (https://pdg.lbl.gov/AtomicNuclearProperties/) for water, ice, dry air
(near sea level), shielding concrete, iron and lead; calcite (CaCO₃, 2710 kg/m³) for limestone;
standard rock is mulder's built-in "Rock" (Z = 11, A = 22, I = 136.4 eV, 2650 kg/m³).
"""

from __future__ import annotations

import os
import sys

import numpy as np

#: name → (density kg/m³, {element: mass fraction}, mean excitation energy I in eV or None for
#: mulder's element defaults); ("Rock", None, None) = mulder's own standard rock.
#: I values: PDG Atomic and Nuclear Properties (liquid water 79.7 eV, dry air 85.7 eV,
#: shielding concrete 135.2 eV, calcium carbonate 136.4 eV).
MATERIALS = {
    "standard_rock": ("Rock", None, None),
    "water": (1000.0, {"H": 0.111894, "O": 0.888106}, 79.7),
    "ice": (918.0, {"H": 0.111894, "O": 0.888106}, 79.7),
    "dry_air": (1.205, {"C": 0.000124, "N": 0.755267, "O": 0.231781, "Ar": 0.012827}, 85.7),
    "concrete": (2300.0, {"H": 0.01, "C": 0.001, "O": 0.529107, "Na": 0.016, "Mg": 0.002, "Al": 0.033872,
                          "Si": 0.337021, "K": 0.013, "Ca": 0.044, "Fe": 0.014}, 135.2),
    "limestone": (2710.0, {"Ca": 0.400432, "C": 0.120003, "O": 0.479565}, 136.4),
    "iron": (7874.0, {"Fe": 1.0}, None),
    "lead": (11350.0, {"Pb": 1.0}, None),
}

#: Kinetic-energy grid (GeV): 1 MeV to 1e9 GeV, 20 points per decade (ranges up to ~3e5 m.w.e.).
ENERGY_GRID = np.logspace(-3.0, 9.0, 241)


def compile_material(physics, name, spec):
    import mulder.materials as mm

    if spec[1] is None:
        return physics.compile(spec[0])
    density, composition, mean_excitation_ev = spec
    label = "ppl_bmc_" + name
    extra = {} if mean_excitation_ev is None else {"I": mean_excitation_ev * 1e-9}  # mulder takes GeV
    mm.Material.define(label, composition=composition, density=density, **extra)
    return physics.compile(label)


def main(out=None):
    import mulder

    out = out or os.path.join(os.path.dirname(__file__), "..", "ppl_bmc", "data", "materials.npz")
    physics = mulder.Physics()
    arrays = {"kinetic_energy": ENERGY_GRID}
    for name, spec in MATERIALS.items():
        material = compile_material(physics, name, spec)
        density = float(material.definition.density)
        # mulder returns per-length quantities (GeV/m, m); convert to per-grammage (GeV·m²/kg, kg/m²).
        arrays[f"{name}/density"] = np.array(density)
        arrays[f"{name}/stopping_power"] = np.asarray(material.stopping_power(ENERGY_GRID)) / density
        arrays[f"{name}/csda_range"] = np.asarray(material.range(ENERGY_GRID)) * density
        arrays[f"{name}/transport_path"] = np.asarray(material.transport_path(ENERGY_GRID)) * density
        print(f"{name:14s} ρ = {density:8.3f} kg/m³  S(1 GeV) = {np.interp(0, np.log10(ENERGY_GRID), arrays[f'{name}/stopping_power']):.4e} GeV·m²/kg")
    arrays["generator"] = np.array(f"mulder {mulder.config.VERSION}, physics {physics.bremsstrahlung}/{physics.pair_production}/{physics.photonuclear}")
    tmp = out + ".tmp.npz"
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, out)
    print("wrote", os.path.abspath(out), os.path.getsize(out), "bytes")


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
