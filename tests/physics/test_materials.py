"""Materials: the CSDA tables against PUMAS, their contract, range checks, custom compositions."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ppl_bmc import materials
from ppl_bmc.physics.constants import MUON_MASS

REFERENCE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "reference")


def pumas_table(name):
    path = os.path.join(REFERENCE, f"pumas_{name}.txt")
    if not os.path.exists(path):
        pytest.skip(f"reference tables not found at {REFERENCE} (../shared is absent)")
    rows = [line.split() for line in open(path) if line.strip()[:1].isdigit()]
    table = np.array([[float(x) for x in row] for row in rows])
    # columns: T [MeV], ..., dE/dx total [MeV cm²/g] (8th), CSDA range [g/cm²] (9th)
    return table[:, 0] * 1e-3, table[:, 7] * 1e-4, table[:, 8] * 10.0  # GeV, GeV·m²/kg, kg/m²


@pytest.mark.parametrize("name", ["standard_rock", "water"])
def test_tables_match_pumas_within_half_a_percent(name):
    k, s_ref, r_ref = pumas_table(name)
    sel = (k >= 0.01) & (k <= 1e4)  # 10 MeV – 10 TeV
    material = materials.get(name)
    s = np.asarray(material.stopping_power(k[sel]))
    r = np.asarray(material.csda_range(k[sel]))
    assert np.max(np.abs(s / s_ref[sel] - 1)) < 5e-3
    assert np.max(np.abs(r / r_ref[sel] - 1)) < 5e-3


def test_material_contract_and_range_inverse():
    rock = materials.get("standard_rock")
    assert rock.density == 2650.0
    k = jnp.logspace(-2, 5, 50)
    np.testing.assert_allclose(rock.kinetic_energy_at_range(rock.csda_range(k)), k, rtol=1e-4)
    # dR/dK = 1/S: the range table is consistent with the stopping power
    dr = jax.vmap(jax.grad(lambda kk: rock.csda_range(kk)))(k[10:40])
    np.testing.assert_allclose(dr, 1 / rock.stopping_power(k[10:40]), rtol=0.03)
    assert set(materials.names()) >= {"standard_rock", "water", "ice", "dry_air", "concrete", "limestone", "iron", "lead"}


def test_energies_outside_the_table_are_rejected():
    with pytest.raises(ValueError, match=r"kinetic_energy must be within the standard_rock table"):
        materials.get("standard_rock").stopping_power(1e-5)


@pytest.mark.parametrize(
    "composition, density, match",
    [
        ({"H": 0.2, "O": 0.7}, 1000.0, "mass fractions must sum to 1"),
        ({"H": -0.1, "O": 1.1}, 1000.0, "mass fractions must be > 0"),
        ({}, 1000.0, "composition must be a non-empty dict"),
        ({"O": 1.0}, -1.0, "density must be > 0"),
    ],
)
def test_custom_material_validation(composition, density, match):
    with pytest.raises(ValueError, match=match):
        materials.custom("mine", composition, density)


def test_proper_grammage_matches_the_relativistic_limit():
    # for K ≫ m, dτ/dX = (m/p)/S: the table's slope equals (m/p)/S
    rock = materials.get("standard_rock")
    k = jnp.array([1.0, 10.0, 100.0])
    slope = jax.vmap(jax.grad(lambda kk: rock.proper_grammage(kk)))(k)
    expected = MUON_MASS / jnp.sqrt(k * (k + 2 * MUON_MASS)) / rock.stopping_power(k)
    np.testing.assert_allclose(slope, expected, rtol=0.03)
