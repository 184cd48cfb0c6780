"""Several materials in one scene (a Composition field, the kernel's Blend): each step crosses
the grammage of every material in turn; the sub-steps invert exactly, a blend of one material
with itself is that material, the adjoints stay exact and the gradient is the derivative of the
same-key estimator."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl_bmc
from ppl_bmc import AutodiffAdjoint, BMC, Detector, ForwardSensitivity, ReplayAdjoint, materials
from ppl_bmc.detectors import readings
from ppl_bmc.geometry import Composition, Layers, Scene, VoxelGrid
from ppl_bmc.physics.materials import Blend
from ppl_bmc.transport.muon import csda_advance, csda_retreat, energy_at

ROCK_WATER = Blend(("standard_rock", "water"))


def test_sub_steps_are_undone_exactly_and_add_like_one_material(x64):
    k = jnp.geomspace(1e-2, 1e4, 50)
    g = jnp.stack([jnp.geomspace(1.0, 1e6, 50), jnp.geomspace(1e5, 10.0, 50)], axis=-1)  # kg/m² of rock, water
    e0 = energy_at(ROCK_WATER, k)
    e1, log_w = csda_advance(ROCK_WATER, e0, g, jnp.full(50, 100.0), decay=True)
    back = csda_retreat(ROCK_WATER, e1, g)
    np.testing.assert_allclose(np.asarray(back.kinetic_energy), np.asarray(k), rtol=1e-10)
    assert bool(jnp.all(jnp.isfinite(log_w)))
    # the sub-steps are half the rock, the water, the other half of the rock (symmetric
    # splitting), each by its own tables
    rock, water = materials.get("standard_rock"), materials.get("water")
    k_1 = rock.kinetic_energy_at_range(rock.csda_range(k) + 0.5 * g[:, 0])
    k_2 = water.kinetic_energy_at_range(water.csda_range(k_1) + g[:, 1])
    k_3 = rock.kinetic_energy_at_range(rock.csda_range(k_2) + 0.5 * g[:, 0])
    np.testing.assert_allclose(np.asarray(e1.kinetic_energy), np.asarray(k_3), rtol=1e-9)
    s_r, s_w = rock.stopping_power, water.stopping_power
    jac = s_r(k_1) / s_r(k) * s_w(k_2) / s_w(k_1) * s_r(k_3) / s_r(k_2)
    e_nodecay, log_w0 = csda_advance(ROCK_WATER, e0, g, jnp.full(50, 100.0), decay=False)
    np.testing.assert_allclose(np.exp(np.asarray(log_w0)), np.asarray(jac), rtol=1e-9)
    # a blend of rock with itself steps as rock through the summed grammage
    same = Blend(("standard_rock", "standard_rock"))
    e2, w2 = csda_advance(same, energy_at(same, k), g, jnp.full(50, 100.0), decay=True)
    e3, w3 = csda_advance(rock, energy_at(rock, k), g.sum(-1), jnp.full(50, 100.0), decay=True)
    np.testing.assert_allclose(np.asarray(e2.kinetic_energy), np.asarray(e3.kinetic_energy), rtol=1e-10)
    np.testing.assert_allclose(np.asarray(w2), np.asarray(w3), rtol=1e-9, atol=1e-12)
    # and the water step does differ from a rock step (the check can fail)
    assert float(jnp.max(jnp.abs(e1.kinetic_energy / e2.kinetic_energy - 1))) > 0.01


def _scene(materials_, scattering=False, by_mass=False):
    grid = VoxelGrid((-30.0, 0.0), (30.0, 40.0), (4, 3))
    comp = Composition(materials_, grid, density=grid if by_mass else None)
    return Scene(comp, step_m=5.0, scattering=scattering, k_max=1e4)


DETS = [Detector((-10.0, 0.0), np.linspace(-30, 30, 3), exposure_s=86400.0)]
FRACTIONS = np.random.default_rng(4).uniform(0.1, 0.9, (4, 3))


@pytest.mark.parametrize("scattering", [pytest.param(False, marks=pytest.mark.slow), True])  # ~15 s each
def test_a_blend_of_one_material_is_that_material(x64, scattering):
    # by mass, rock split into two "materials" that are both rock: every estimate is the plain
    # rock scene's (same key) to float rounding, with and without scattering
    rho = jnp.asarray(np.random.default_rng(5).uniform(1500.0, 2800.0, (4, 3)))
    blend = _scene(("standard_rock", "standard_rock"), scattering, by_mass=True)
    plain = Scene(blend.field.density_field, step_m=5.0, scattering=scattering, k_max=1e4)
    method = BMC(jax.random.key(2), n_particles=64)
    a = ppl_bmc.expected_counts(blend, (rho, (jnp.asarray(FRACTIONS),)), DETS, method=method)
    b = ppl_bmc.expected_counts(plain, rho, DETS, method=method)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-10)
    water = _scene(("standard_rock", "water"), scattering, by_mass=True)
    c = ppl_bmc.expected_counts(water, (rho, (jnp.asarray(FRACTIONS),)), DETS, method=method)
    assert float(jnp.max(jnp.abs(c / b - 1))) > 0.01  # water in it changes the counts


@pytest.mark.slow  # 25-40 s each (three adjoints compiled in float64); the one-material blend stays in the fast suite
@pytest.mark.parametrize("by_mass,scattering", [(False, False), (True, False), (True, True)])
def test_three_adjoints_agree_for_a_composition(x64, by_mass, scattering):
    # with scattering the deflections add the materials' variances (Σ g_m/λ_m) and the paths bend
    # with the densities and fractions; the replay still inverts each step exactly
    scene = _scene(("standard_rock", "water"), scattering=scattering, by_mass=by_mass)
    f = (jnp.asarray(FRACTIONS),)
    params = (jnp.asarray(np.random.default_rng(6).uniform(1500.0, 2800.0, (4, 3))), f) if by_mass else f
    loglik = lambda adjoint: lambda q: jnp.sum(jnp.log(ppl_bmc.expected_counts(
        scene, q, DETS, method=BMC(jax.random.key(3), n_particles=64, adjoint=adjoint))))
    grads = {type(a).__name__: jax.grad(loglik(a))(params) for a in
             (ReplayAdjoint(), AutodiffAdjoint(), ForwardSensitivity())}
    ref = np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(grads["AutodiffAdjoint"])])
    assert np.all(np.isfinite(ref)) and np.sum(ref != 0) >= ref.size // 2  # the voxels the bins see count
    for name in ("ReplayAdjoint", "ForwardSensitivity"):
        got = np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(grads[name])])
        np.testing.assert_allclose(got, ref, rtol=1e-7, atol=1e-9 * np.max(np.abs(ref)), err_msg=name)


def test_the_gradient_is_the_derivative_of_the_same_key_estimator(x64):
    # straight steps: for a fixed key the estimator is a smooth function of the fractions between
    # the kinks of the log-log table interpolation, so the replay gradient equals its central
    # difference.  h = 1e-5: measured agreement 4e-10 (h = 1e-4 and 1e-3 straddle table nodes
    # for some particles: 7e-6 and 1e-4); float64 rounding of the difference ≈ 1e-10.
    scene = _scene(("standard_rock", "water"))
    f0 = jnp.asarray(FRACTIONS)
    v = jnp.asarray(np.random.default_rng(7).normal(size=(4, 3)))
    est = lambda f: jnp.sum(ppl_bmc.expected_counts(scene, (f,), DETS, method=BMC(jax.random.key(8), n_particles=64)))
    g = float(jnp.vdot(jax.grad(est)(f0), v))
    h = 1e-5
    fd = float((est(f0 + h * v) - est(f0 - h * v)) / (2 * h))
    assert abs(g - fd) < 1e-7 * abs(fd), (g, fd)
    assert abs(1.01 * g - fd) > 1e-3 * abs(fd)  # a 1 % error would show


# Reference numbers: mulder 0.3.7 (PUMAS physics, CSDA, GCCLY at the top, no air, decay), made by
# tools/generate_composition_reference.py into tests/data/mulder_layers.json.
MULDER = os.path.join(os.path.dirname(__file__), "..", "data", "mulder_layers.json")
REFERENCE = {(c["name"], c["zenith_deg"]): c for c in json.load(open(MULDER))["layers"]}


def _stack_flux(case, key, n_particles=2048, replicas=4):
    """BMC integrated flux (m⁻² s⁻¹ sr⁻¹) at the bottom of a stack of horizontal layers, along one
    direction (a 0.2°-wide 2-D bin), and its standard error over independent keys (``key=None``:
    the quadrature's flux alone)."""
    layers, zenith = case["layers"], case["zenith_deg"]
    names = list(dict.fromkeys(layer["material"] for layer in layers))
    names = names + ["standard_rock" if names[0] != "standard_rock" else "water"] * (len(names) == 1)
    z = np.concatenate([[0.0], np.cumsum([layer["thickness_m"] for layer in layers])])
    grid = Layers((-2000.0,), (2000.0,), z_edges=z)
    # by mass: each layer's density, all of it the layer's material
    comp = Composition(names, tuple(grid for _ in names[1:]), density=grid)
    rho = jnp.asarray([layer["density"] for layer in layers])
    frac = tuple(jnp.asarray([1.0 * (layer["material"] == m) for layer in layers]) for m in names[:-1])
    scene = Scene(comp, step_m=10.0)
    det = Detector((0.0, 0.0), [zenith - 0.1, zenith + 0.1], exposure_s=1.0, area_m2=1.0)
    r = readings([det])
    per = np.asarray(r["scale"] * r["omega"])
    if key is None:
        return float(ppl_bmc.expected_counts(scene, (rho, frac), [det], method="quadrature")[0, 0] / per[0])
    out = [float(ppl_bmc.expected_counts(scene, (rho, frac), [det], method=BMC(jax.random.fold_in(key, i),
                                                                              n_particles=n_particles))[0, 0]
                 / per[0]) for i in range(replicas)]
    return np.mean(out), np.std(out, ddof=1) / np.sqrt(replicas)


@pytest.mark.parametrize("name", ["water_over_rock"] + [
    pytest.param(n, marks=pytest.mark.slow) for n in ("air_void", "rock", "rock_over_water", "water_void", "ice_over_rock")])
def test_layered_compositions_agree_with_mulder(name):
    # CSDA through stacks of horizontal layers of different materials, at 0° and 60° (~7 s per
    # stack): the issue asks for 1 % of mulder; measured within 0.05 % (-0.014 % to -0.047 %, the
    # single-material slab's own offset from mulder being -0.03 %), so this holds them to 0.3 %
    # with a BMC standard error checked to be far below it (measured 0.001-0.003 %).
    # The order of the layers matters (water on rock vs rock on water: 6.5 % at 0°, 14 % at 60°),
    # so the comparison can fail: the swapped stack is off by more than 4 %.
    for zenith in (0.0, 60.0):
        ref = REFERENCE[(name, zenith)]["flux"]
        got, se = _stack_flux(REFERENCE[(name, zenith)], jax.random.key(11))
        assert se < 0.002 * ref, (name, zenith, got, se)
        assert abs(got / ref - 1) < 0.003, (name, zenith, got, ref, se)
        if name == "water_over_rock":
            swapped = REFERENCE[("rock_over_water", zenith)]["flux"]
            assert abs(got / swapped - 1) > 0.04, (got, swapped)
        # the quadrature (each ray's threshold carried through the layers in order) agrees too
        quad = _stack_flux(REFERENCE[(name, zenith)], None)
        assert abs(quad / ref - 1) < 0.003, (name, zenith, quad, ref)
