"""Mixed-mode tables: the hard-event spectrum against mulder's own integrals, bad input."""

import jax.numpy as jnp
import numpy as np
import pytest

from ppl_bmc.physics import electrons, materials, mixed

ENERGIES = np.array([1.0, 3.0, 10.0, 100.0, 1e3, 1e4, 1e5])  # GeV


def spectrum_integrals(m, k):
    """∫ dσ/dx dx and ∫ x·K·dσ/dx dx over [x_cut, x_top) by a fine trapezoid in logit x."""
    y = np.linspace(np.log(m.x_cut / (1 - m.x_cut)), np.log(m.x_top / (1 - m.x_top)), 40001)
    x = 1 / (1 + np.exp(-y))
    d = np.asarray(mixed.MixedMaterial.dcs(m, jnp.full_like(jnp.asarray(x), k), jnp.asarray(x)), dtype=float)
    dx = x * (1 - x)
    return np.trapezoid(d * dx, y), np.trapezoid(x * k * d * dx, y)


@pytest.mark.parametrize("name", mixed.names())
def test_the_hard_spectrum_integrates_to_mulders_cross_section_and_energy_loss(name):
    # mulder gives σ(x ≥ 5 %) and the soft stopping power directly; the package's dσ/dx is derived
    # (by differentiating mulder's σ above 49 cuts), so its integrals are an independent check.
    # Tolerances: 0.3 % for σ (its x_top = 0.995 truncation takes < 1e-4 of it), 0.5 % for the
    # hard energy loss (the truncation at x_top takes up to 0.2 % at 1e5 GeV).
    m = mixed.get(name)
    t = mixed._tables()
    k_grid = t["kinetic_energy"]
    for k in ENERGIES:
        i = int(np.argmin(abs(k_grid - k)))
        sigma, loss = spectrum_integrals(m, k_grid[i])
        hard = t[f"{name}/hard_cross_section"][i]
        assert abs(sigma / hard - 1) < 3e-3, (name, k, sigma, hard)
        assert abs(m._sigma[i] / hard - 1) < 3e-3, (name, k, m._sigma[i], hard)
        eloss = t[f"{name}/csda_stopping_power"][i] - t[f"{name}/soft_stopping_power"][i]
        assert abs(loss / eloss - 1) < 5e-3, (name, k, loss, eloss)


def test_a_wrong_spectrum_fails_the_energy_loss_check():
    # the same check on a spectrum tilted by x^0.1 (same cross-section scale): it must fail
    m = mixed.get("standard_rock")
    t = mixed._tables()
    i = int(np.argmin(abs(t["kinetic_energy"] - 1e3)))
    k = t["kinetic_energy"][i]
    y = np.linspace(np.log(m.x_cut / (1 - m.x_cut)), np.log(m.x_top / (1 - m.x_top)), 40001)
    x = 1 / (1 + np.exp(-y))
    d = np.asarray(m.dcs(jnp.full_like(jnp.asarray(x), k), jnp.asarray(x)), dtype=float) * (x / 0.2) ** 0.1
    loss = np.trapezoid(x * k * d * x * (1 - x), y)
    eloss = t["standard_rock/csda_stopping_power"][i] - t["standard_rock/soft_stopping_power"][i]
    assert abs(loss / eloss - 1) > 5e-3


def test_delta_rays_end_at_the_kinematic_limit_and_integrate_to_the_closed_form():
    k, x = 2.0, np.linspace(0.05, 0.3, 200001)
    d = electrons.delta_ray_dcs(0.5, k, x)
    x_max = x[d > 0].max()  # W_max/K ≈ 0.17 at 2 GeV (W_max = 2mₑp²/(m² + mₑ(mₑ + 2E)) = 0.339 GeV)
    assert 0.16 < x_max < 0.18 and d[x > x_max + 1e-4].max() == 0.0
    closed = electrons.delta_ray_cross_section(0.5, k, 0.05)
    assert abs(np.trapezoid(d, x) / closed - 1) < 1e-4


def test_materials_without_mixed_tables_are_refused():
    with pytest.raises(ValueError, match="material: physics='mixed' needs mixed-mode tables"):
        mixed.get("cheese")
    rock = materials.get("standard_rock")
    fake = materials.Material("standard_rock", 2000.0, np.exp(rock._log_k), np.exp(rock._log_s),
                              np.exp(rock._log_r), np.exp(rock._log_t))  # same name, other tables
    with pytest.raises(ValueError, match="a custom material has CSDA tables only"):
        mixed.get(fake)
    assert mixed.get(rock) == mixed.get("standard_rock")
