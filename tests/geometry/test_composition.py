"""Composition fields: the partial densities of several materials, their exact ray integrals,
and the errors a user gets for bad fractions or materials."""

import jax.numpy as jnp
import numpy as np
import pytest

import ppl_bmc
from ppl_bmc import BMC, Detector, materials
from ppl_bmc.geometry import Composition, Layers, Scene, VoxelGrid
from ppl_bmc.physics.materials import Blend, Material


def _layers():
    return Layers((-50.0,), (50.0,), z_edges=[0.0, 10.0, 30.0])


def test_partial_densities_by_volume_and_by_mass(x64):
    comp = Composition(("standard_rock", "water"), _layers())  # rock fraction per layer, by volume
    f = jnp.array([0.25, 1.0])
    p = comp.partials(jnp.array([[0.0, 5.0], [0.0, 20.0], [0.0, 40.0]]), (f,))
    np.testing.assert_allclose(np.asarray(p), [[0.25 * 2650.0, 0.75 * 1000.0], [2650.0, 0.0], [0.0, 0.0]])
    by_mass = Composition(("standard_rock", "water"), _layers(), density=_layers())
    q = by_mass.partials(jnp.array([[0.0, 5.0]]), (jnp.array([2000.0, 1800.0]), (f,)))
    np.testing.assert_allclose(np.asarray(q), [[0.25 * 2000.0, 0.75 * 2000.0]])
    np.testing.assert_allclose(np.asarray(by_mass.density(jnp.array([0.0, 5.0]), (jnp.array([2000.0, 1800.0]), (f,)))),
                               2000.0)


def test_part_integrals_are_the_exact_path_lengths_times_partial_densities(x64):
    comp = Composition(("standard_rock", "water"), _layers())
    f = (jnp.array([0.25, 1.0]),)
    p, d = jnp.array([3.0, 0.0]), jnp.array([0.6, 0.8])  # 12.5 m in the lower layer, 25 m in the upper
    x = np.asarray(comp.part_integrals(p, d, 0.0, 100.0, f))
    np.testing.assert_allclose(x, [12.5 * 0.25 * 2650.0 + 25.0 * 2650.0, 12.5 * 0.75 * 1000.0], rtol=1e-12)
    np.testing.assert_allclose(x.sum(), float(comp.integrate(p, d, 0.0, 100.0, f)), rtol=1e-12)
    steps = np.asarray(comp.part_step_integrals(p, d, 10.0, 5, f))
    assert steps.shape == (5, 2)
    each = np.array([np.asarray(comp.part_integrals(p, d, 10.0 * k, 10.0 * (k + 1), f)) for k in range(5)])
    np.testing.assert_allclose(steps, each, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(steps.sum(0), x, rtol=1e-12)


def test_bad_compositions_are_refused_with_the_argument_named(x64):
    with pytest.raises(ValueError, match=r"materials\[1\] must be a ppl_bmc.materials.Material or one of"):
        Composition(("standard_rock", "granite"), _layers())
    with pytest.raises(ValueError, match="materials must be a sequence of at least two materials"):
        Composition(("standard_rock",), ())
    with pytest.raises(ValueError, match="fractions must be 2 Field"):
        Composition(("standard_rock", "water", "ice"), _layers())
    comp = Composition(("standard_rock", "water"), _layers())
    with pytest.raises(ValueError, match=r"params\[0\] \(fractions of standard_rock\) must be in \[0, 1\], got values up to 1.2"):
        comp.check_params((jnp.array([0.5, 1.2]),))
    with pytest.raises(ValueError, match=r"params\[0\] .*>= 0"):
        comp.check_params((jnp.array([-0.1, 0.5]),))
    with pytest.raises(ValueError, match="tuple of 1 fraction field params"):
        comp.check_params(jnp.array([0.5, 0.5]))
    three = Composition(("standard_rock", "water", "ice"), (_layers(), _layers()))
    with pytest.raises(ValueError, match="must sum to at most 1"):
        three.check_params((jnp.array([0.5, 0.6]), jnp.array([0.6, 0.2])))
    three.check_params((jnp.array([0.5, 0.6]), jnp.array([0.5, 0.2])))  # sums ≤ 1 pass
    # tables on another energy grid cannot be blended (one grid position reads every material)
    rock = materials.get("standard_rock")
    k = np.exp(rock._log_k[::2])
    other = Material("coarse", 2650.0, k, np.exp(rock._log_s[::2]), np.exp(rock._log_r[::2]),
                     np.exp(rock._log_t[::2]))
    with pytest.raises(ValueError, match=r"materials\[1\] \(coarse\) is tabulated on another kinetic-energy grid"):
        Blend((rock, other))
    with pytest.raises(ValueError, match="material must be left unset for a Composition field"):
        Scene(comp, material="water")


def test_the_quadrature_refuses_a_composition_and_bmc_takes_it():
    comp = Composition(("standard_rock", "water"), VoxelGrid((-50.0, 0.0), (50.0, 30.0), (2, 2)))
    scene = Scene(comp)
    assert scene.material == Blend(("standard_rock", "water"))
    dets = [Detector((0.0, 0.0), [-20.0, 0.0, 20.0])]
    f = (jnp.full((2, 2), 0.5),)
    with pytest.raises(ValueError, match="a Composition scene .* needs method='bmc'"):
        ppl_bmc.expected_counts(scene, f, dets, method="quadrature")
    import jax

    counts = ppl_bmc.expected_counts(scene, f, dets, method=BMC(jax.random.key(0), n_particles=32))
    assert counts.shape == (1, 2) and bool(jnp.all(jnp.isfinite(counts) & (counts > 0)))


def test_the_voxel_walk_of_a_composition_matches_the_sorted_pieces(x64):
    # every field a piecewise-constant grid on the same voxels: the step integrals come from one
    # face walk with the materials as channels; the generic path (sorting the breakpoints) agrees
    grid = VoxelGrid((-20.0, 0.0), (20.0, 30.0), (5, 4))
    rng = np.random.default_rng(0)
    params = (jnp.asarray(rng.uniform(1000, 3000, (5, 4))), (jnp.asarray(rng.uniform(0, 1, (5, 4))),))
    comp = Composition(("standard_rock", "water"), grid, density=grid)
    assert comp._one_grid is grid
    p, d = jnp.array([-3.0, 0.0]), jnp.array([0.28, 0.96])
    walked = np.asarray(comp.part_step_integrals(p, d, 4.0, 9, params))
    breaks = comp.breakpoints(p, d, 0.0, 36.0, params)
    from ppl_bmc.geometry.rays import integrate_steps

    sorted_ = np.asarray(integrate_steps(comp._parts_at(p, d, params), breaks, 4.0, 9, 1))
    assert walked.shape == (9, 2) and walked[:, 1].max() > 0
    np.testing.assert_allclose(walked, sorted_, rtol=1e-10, atol=1e-8)
    # and the point look-up of the fast path is the fields' own arithmetic
    x = jnp.asarray(rng.uniform([-25.0, -5.0], [25.0, 35.0], (50, 2)))
    rho, f = grid.density(x, params[0]), grid.density(x, params[1][0])
    np.testing.assert_allclose(np.asarray(comp.partials(x, params)), np.stack([f * rho, (1 - f) * rho], -1)
                               * np.asarray(grid.inside(x))[:, None], rtol=1e-12)
