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


def test_the_quadrature_of_a_composition_agrees_with_bmc(x64):
    # the quadrature carries each ray's threshold through its pieces in order (an equivalent
    # opacity of the reference material); BMC walks the same materials with random directions and
    # energies: they agree within 4 standard errors over independent keys plus 1e-4 (the two
    # split the mixtures within a voxel differently: measured 4e-5 between them once both are
    # converged, BMC's 4 m steps 7e-5 from 1 m ones; decay off — the quadrature's decay takes
    # the reference's nominal density; 64 directions per bin: 8 leave 5e-4).  The check can
    # fail: the same densities read as all rock are off by many standard errors.
    import jax

    grid = VoxelGrid((-50.0, 0.0), (50.0, 40.0), (4, 5))
    rng = np.random.default_rng(1)
    params = (jnp.asarray(rng.uniform(1500.0, 2800.0, (4, 5))), (jnp.asarray(rng.uniform(0.0, 1.0, (4, 5))),))
    scene = Scene(Composition(("standard_rock", "water"), grid, density=grid), step_m=4.0, decay=False)
    assert scene.material == Blend(("standard_rock", "water"))
    dets = [Detector((0.0, 0.0), [-40.0, -20.0, 0.0, 20.0, 40.0])]
    quad = np.asarray(ppl_bmc.expected_counts(scene, params, dets, method=ppl_bmc.Quadrature(n_directions=64)))[0]
    runs = np.array([np.asarray(ppl_bmc.expected_counts(scene, params, dets, method=BMC(jax.random.key(i),
                                                                                       n_particles=2000)))[0]
                     for i in range(6)])
    mean, se = runs.mean(0), runs.std(0, ddof=1) / np.sqrt(len(runs))
    assert np.all(np.abs(mean - quad) < 4 * se + 1e-4 * quad), (mean, quad, se)
    rock = np.asarray(ppl_bmc.expected_counts(Scene(grid, step_m=4.0, decay=False), params[0], dets,
                                              method="quadrature"))[0]
    assert np.all(np.abs(rock - quad) > 20 * se), (rock, quad, se)
    # its gradient is finite in the densities and fractions
    g = jax.grad(lambda q: jnp.sum(ppl_bmc.expected_counts(scene, q, dets, method="quadrature")))(params)
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree_util.tree_leaves(g))
    assert float(jnp.max(jnp.abs(g[1][0]))) > 0


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
