"""Muon physics: PUMAS tables, sky flux, backward CSDA through a slab vs the quadrature."""

import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ppl_bmc import AutodiffAdjoint, ForwardSensitivity, ReplayAdjoint, flux, materials, muography
from ppl_bmc.physics.constants import MUON_MASS
from ppl_bmc.transport import loop
from ppl_bmc.transport.csda import MuonKernel
from ppl_bmc.transport.paths import LineOfSight


def slab_kernel(material, k_max, n_steps, **kw):
    """The kernel ``transmitted_flux(method="bmc")`` runs, and its per-reading context."""
    return MuonKernel(LineOfSight(n_steps, material.density), material, flux.gccly, k_max, **kw)


def slab_ctx(zenith_rad, k_min):
    return {"zenith": jnp.full(1, zenith_rad), "k_min": jnp.full(1, k_min)}

REFERENCE = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "reference")


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


def test_gccly_matches_mulder_reference_values():
    # mulder 0.3.7 Reference() (model GCCLY15, sea level): flux(energy=K, elevation=90° − zenith),
    # GeV⁻¹ m⁻² s⁻¹ sr⁻¹; values printed by mulder, an independent implementation.
    ref = {(1.0, 0): 21.80730442, (1.0, 30): 14.75107411, (1.0, 80): 0.13914018, (10.0, 0): 1.1420374,
           (10.0, 80): 0.06873742, (100.0, 0): 0.00281937, (1000.0, 80): 4.01729184e-06}
    for (k, zenith), value in ref.items():
        got = float(flux.gccly(k, math.cos(math.radians(zenith))))
        assert abs(got / value - 1) < 1e-5, (k, zenith, got, value)


def test_gaisser_published_form_and_high_energy_limit():
    # PDG eq.: 0.14 E^-2.7 [1/(1 + 1.1 E cosθ/115) + 0.054/(1 + 1.1 E cosθ/850)] cm⁻² s⁻¹ sr⁻¹ GeV⁻¹
    e, c = 1000.0, 0.5
    expected = 0.14 * e**-2.7 * (1 / (1 + 1.1 * e * c / 115) + 0.054 / (1 + 1.1 * e * c / 850)) * 1e4
    assert abs(float(flux.gaisser(e - MUON_MASS, c)) / expected - 1) < 1e-5
    assert abs(float(flux.cos_theta_star(1.0)) - 1) < 1e-6
    # GCCLY's low-energy factor vanishes at high energy: vertical GCCLY → Gaisser
    assert abs(float(flux.gccly(1e5, 1.0) / flux.gaisser(1e5, 1.0)) - 1) < 1e-3
    assert abs(flux.charge_fraction(1) / flux.charge_fraction(-1) - 1.2766) < 1e-12


def replicates(opacity, zenith, n_rep=16, n_particles=20_000, adjoint=ReplayAdjoint()):
    """Values and d/d opacity of independent BMC estimates (for a computed standard error)."""
    fn = lambda x, k: muography.transmitted_flux(x, zenith, method="bmc", key=k, n_particles=n_particles, adjoint=adjoint)
    vg = [jax.value_and_grad(fn)(jnp.asarray(opacity), jax.random.key(100 + i)) for i in range(n_rep)]
    return np.array([float(v) for v, _ in vg]), np.array([float(g) for _, g in vg])


@pytest.mark.parametrize("zenith", [0.0, 30.0, 60.0])
@pytest.mark.parametrize("opacity", [1.0, 30.0, 300.0, 3000.0])
def test_bmc_agrees_with_quadrature_within_4_standard_errors(opacity, zenith):
    values, grads = replicates(opacity, zenith)
    n = len(values)
    q, dq = jax.value_and_grad(lambda x: muography.transmitted_flux(x, zenith))(jnp.asarray(opacity))
    se = values.std(ddof=1) / math.sqrt(n)
    assert abs(values.mean() - float(q)) < 4 * se, (values.mean(), float(q), se)
    se_g = grads.std(ddof=1) / math.sqrt(n)
    assert abs(grads.mean() - float(dq)) < 4 * se_g, (grads.mean(), float(dq), se_g)


@pytest.mark.parametrize("adjoint", [AutodiffAdjoint(), ForwardSensitivity()])
def test_each_adjoint_gradient_agrees_with_the_quadrature(adjoint):
    _, grads = replicates(100.0, 30.0, n_rep=8, adjoint=adjoint)
    dq = float(jax.grad(lambda x: muography.transmitted_flux(x, 30.0))(100.0))
    se = grads.std(ddof=1) / math.sqrt(len(grads))
    assert abs(grads.mean() - dq) < 4 * se


def test_slab_adjoints_agree_in_float64(x64):
    # the energy path depends on the opacity: ReplayAdjoint walks backward with the inverse step
    fn = lambda a: (lambda x: muography.transmitted_flux(x, 20.0, method="bmc", key=jax.random.key(3),
                                                         n_particles=3000, n_steps=8, adjoint=a))
    ref = float(jax.grad(fn(AutodiffAdjoint()))(200.0))
    for adjoint in (ForwardSensitivity(), ReplayAdjoint()):
        assert abs(float(jax.grad(fn(adjoint))(200.0)) / ref - 1) < 1e-9


def test_physical_invariants_of_the_slab_walk(x64):
    rock = materials.get("standard_rock")
    kernel = slab_kernel(rock, 1e6, 8, decay=False)  # pure Jacobians
    streams = loop.Streams(jax.random.key(0), 1, 2000)
    opacity, ctx = jnp.asarray(500.0), slab_ctx(1.0, 1e-3)
    state, log_w0 = loop.init(kernel, opacity, ctx, streams, jnp.float64)
    k0, energies, steps = state.energy.kinetic_energy, [state.energy.kinetic_energy], []
    for k in range(1, 9):
        state, inc = loop.step(kernel, state, opacity, ctx, streams, k, jnp.float64)
        energies.append(state.energy.kinetic_energy)
        steps.append(inc)
    energies = np.stack(energies)
    assert np.all(np.diff(energies, axis=0) > 0)  # energy never decreases backward
    total = np.sum(np.stack(steps), axis=0)
    telescoped = np.log(np.asarray(rock.stopping_power(energies[-1]))) - np.log(np.asarray(rock.stopping_power(k0)))
    np.testing.assert_allclose(total, telescoped, rtol=1e-9, atol=1e-12)  # product of S ratios = S(K_exit)/S(K_0)
    _, log_w = loop.run(kernel, opacity, ctx, streams, 8, jnp.float64)
    assert np.all(np.exp(np.asarray(log_w)) >= 0)


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        ((-1.0, 0.0), {}, r"opacity_mwe must be >= 0"),
        ((10.0, 90.0), {}, r"zenith_deg must be in \[0, 90\)"),
        ((10.0, -5.0), {}, r"zenith_deg must be in \[0, 90\)"),
        ((10.0, 0.0), dict(k_min=0.0), r"k_min < k_max"),
        ((10.0, 0.0), dict(k_min=10.0, k_max=1.0), r"k_min < k_max"),
        ((10.0, 0.0), dict(material="cheese"), r"material must be a ppl_bmc.materials.Material or one of concrete, dry_air"),
        ((10.0, 0.0), dict(method="mc"), r"method must be 'bmc', 'quadrature'"),
        ((10.0, 0.0), dict(method="bmc"), r"key must be a JAX PRNG key"),
        ((float("nan"), 0.0), {}, r"opacity_mwe must be finite"),
    ],
)
def test_bad_input(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        muography.transmitted_flux(*args, **kwargs)


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


def test_decay_weight_matters_in_air_and_not_in_rock():
    # 1 m.w.e. of dry air is 830 m: low-energy muons decay on the way; in rock the path is 0.38 m.
    air = [float(muography.transmitted_flux(1.0, 0.0, material="dry_air", decay=d)) for d in (True, False)]
    rock = [float(muography.transmitted_flux(1.0, 0.0, material="standard_rock", decay=d)) for d in (True, False)]
    assert air[0] < 0.9 * air[1]
    assert abs(rock[0] / rock[1] - 1) < 1e-3
    # BMC carries the same decay weight
    bmc = float(muography.transmitted_flux(1.0, 0.0, material="dry_air", method="bmc", key=jax.random.key(0),
                                           n_particles=200_000))
    assert abs(bmc / air[0] - 1) < 0.02


def test_proper_grammage_matches_the_relativistic_limit():
    # for K ≫ m, dτ/dX = (m/p)/S: the table's slope equals (m/p)/S
    rock = materials.get("standard_rock")
    k = jnp.array([1.0, 10.0, 100.0])
    slope = jax.vmap(jax.grad(lambda kk: rock.proper_grammage(kk)))(k)
    expected = MUON_MASS / jnp.sqrt(k * (k + 2 * MUON_MASS)) / rock.stopping_power(k)
    np.testing.assert_allclose(slope, expected, rtol=0.03)


@pytest.mark.parametrize("model", [flux.gccly, flux.gaisser])
def test_sky_flux_rejects_bad_input(model):
    with pytest.raises(ValueError, match="kinetic_energy must be > 0 GeV"):
        model(0.0, 1.0)
    with pytest.raises(ValueError, match=r"cos_zenith must be in \[0, 1\]"):
        model(10.0, -0.1)


def test_scattering_adjoints_agree_and_match_finite_differences(x64):
    # with scattering the path moves with the opacity; each step is inverted exactly
    fn = lambda a: (lambda x: muography.transmitted_flux(x, 30.0, method="bmc", key=jax.random.key(3), n_particles=2000,
                                                         n_steps=16, scattering=True, adjoint=a))
    ref = float(jax.grad(fn(AutodiffAdjoint()))(300.0))
    for adjoint in (ForwardSensitivity(), ReplayAdjoint()):
        assert abs(float(jax.grad(fn(adjoint))(300.0)) / ref - 1) < 1e-9
    h = 1e-4  # the fixed-key estimator is smooth in the opacity
    fd = (float(fn(AutodiffAdjoint())(300.0 + h)) - float(fn(AutodiffAdjoint())(300.0 - h))) / (2 * h)
    assert abs(fd / ref - 1) < 1e-6


@pytest.mark.parametrize("k0, opacity", [(3.0, 3.0), (10.0, 10.0)])
def test_scattering_angle_spread_matches_highland(k0, opacity):
    # Highland (PDG "Passage of particles through matter"): θ0 = 13.6 MeV/(βcp)·√(x/X0)·(1 + 0.038 ln(x/X0)),
    # accurate to ~11 %; X0 of standard rock 26.54 g/cm² (PDG). Tolerance 20 %: Highland's accuracy
    # plus the energy change across the slab (p taken at the mean of the two ends).
    rock = materials.get("standard_rock")
    kernel = slab_kernel(rock, k0 * (1 + 1e-6), 32, decay=True, scattering=True)
    state, _ = loop.run(kernel, jnp.asarray(opacity), slab_ctx(0.0, k0), loop.Streams(jax.random.key(0), 1, 20_000), 32,
                        jnp.float32)
    d = np.asarray(state.direction)
    angle, k_sky = np.arctan2(d[..., 0], d[..., 1]), float(np.mean(state.energy.kinetic_energy))
    k_mean = 0.5 * (k0 + k_sky)
    p = math.sqrt(k_mean * (k_mean + 2 * MUON_MASS))
    x = opacity * 100 / 26.54
    highland = 0.0136 / p * math.sqrt(x) * (1 + 0.038 * math.log(x))
    assert abs(angle.std() / highland - 1) < 0.2, (angle.std(), highland)


def test_scattering_barely_changes_the_integrated_flux():
    # penetrating muons are energetic: deflections of mrad lengthen paths by ~1e-6
    runs = {s: np.array([float(muography.transmitted_flux(300.0, 30.0, method="bmc", key=jax.random.key(i),
                                                          n_particles=20_000, n_steps=16, scattering=s))
                         for i in range(6)]) for s in (False, True)}
    diff = runs[True] - runs[False]  # same keys: the estimates are strongly correlated
    assert abs(diff.mean()) < 4 * diff.std(ddof=1) / math.sqrt(len(diff)) + 1e-3 * runs[False].mean()
    with pytest.raises(ValueError, match="scattering=True needs method='bmc'"):
        muography.transmitted_flux(300.0, 30.0, scattering=True)
