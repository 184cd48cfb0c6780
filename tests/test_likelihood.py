"""expected_counts: a uniform field reproduces transmitted_flux, BMC against the quadrature, adjoints, gradients, bad input."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl_bmc
from ppl_bmc import LineOfSightEnergy, muography
from ppl_bmc.detectors import Detector
from ppl_bmc.geometry import HeightMap, Scene, VoxelGrid

DAY = 86400.0


def _bin_reference(lo_deg, hi_deg, thickness_m, density, n=16):
    """∫ transmitted_flux dα over a 2-D bin (per radian) by a 16-node Gauss-Legendre rule of the
    test's own, with the analytic opacity ρ·H/cos α of a flat layer (m.w.e.)."""
    x, w = np.polynomial.legendre.leggauss(n)
    a, b = math.radians(lo_deg), math.radians(hi_deg)
    alpha = 0.5 * (a + b) + 0.5 * (b - a) * x
    f = [float(muography.transmitted_flux(density * thickness_m / math.cos(al) / 1000.0, math.degrees(abs(al))))
         for al in alpha]
    return 0.5 * (b - a) * float(np.sum(w * np.array(f)))


def test_uniform_field_reproduces_transmitted_flux_2d():
    # A layer 60 m thick and wide enough that every ray leaves through the top.
    grid = VoxelGrid((-400.0, 0.0), (400.0, 60.0), (6, 20))
    scene = Scene(grid, material="standard_rock")
    edges = np.linspace(-50, 50, 11)
    det = Detector((0.0, 0.0), edges, area_m2=2.0, exposure_s=DAY, efficiency=0.9, width_deg=10.0)
    counts = np.asarray(ppl_bmc.expected_counts(scene, jnp.full(grid.shape, 2650.0), det, method="quadrature"))[0]
    width = math.radians(10.0)
    ref = np.array([_bin_reference(a, b, 60.0, 2650.0) for a, b in zip(edges[:-1], edges[1:])]) * width * det.scale
    # float32 arithmetic and the flux table's interpolation (< 1e-5): 2e-4 relative
    np.testing.assert_allclose(counts, ref, rtol=2e-4)


def test_uniform_field_reproduces_transmitted_flux_3d():
    grid = VoxelGrid((-300.0, -300.0, 0.0), (300.0, 300.0, 40.0), (4, 6, 6))
    scene = Scene(grid, material="water")
    zen, az = np.array([0.0, 20.0, 40.0]), np.array([0.0, 90.0, 180.0])
    det = Detector((0.0, 0.0, 0.0), zen, az, exposure_s=DAY)
    counts = np.asarray(ppl_bmc.expected_counts(scene, jnp.full(grid.shape, 1000.0), det, method="quadrature"))[0]
    x, w = np.polynomial.legendre.leggauss(16)
    ref = []
    for lo, hi in zip(zen[:-1], zen[1:]):
        c0, c1 = math.cos(math.radians(lo)), math.cos(math.radians(hi))
        cs = 0.5 * (c0 + c1) + 0.5 * (c0 - c1) * x
        f = [float(muography.transmitted_flux(40.0 / c, math.degrees(math.acos(c)), material="water")) for c in cs]
        ref += [0.5 * (c0 - c1) * float(np.sum(w * np.array(f))) * math.radians(90.0)] * 2
    np.testing.assert_allclose(counts, np.array(ref) * det.scale, rtol=2e-4)


def _pyramid_scene(n=6, seed=0):
    grid = VoxelGrid((-50.0, 0.0), (50.0, 40.0), (n, n))
    scene = Scene(HeightMap.pyramid(100.0, 40.0, fill=grid), material="standard_rock", step_m=8.0)
    rho = np.random.default_rng(seed).uniform(1500.0, 3000.0, grid.shape)
    return scene, rho


class _Skewed(LineOfSightEnergy):
    """A deliberately wrong proposal: energies from a distorted q, weighted by q's own 1/q."""

    def sample(self, u, *args, **kwargs):
        return super().sample(u ** 1.02, *args, **kwargs)


def _pyramid_check(energy, n_keys=16, n_particles=256):
    """t-statistics (mean over keys − reference) / √(SE² + reference error²) of every bin, float64.

    The reference is the quadrature on 256 directions per bin with the change from 128 as its own
    error (the default 8 leave 5e-4 at the kinks voxel corners put in the opacity); decay off —
    the quadrature's decay assumes the material's nominal density along the ray, BMC follows the
    voxels' (a 1e-4 difference at these densities)."""
    scene, rho = _pyramid_scene()
    scene = dataclasses.replace(scene, decay=False)
    rho = jnp.asarray(rho, jnp.float64)
    dets = [Detector((x, 0.0), np.linspace(-50, 50, 9), exposure_s=DAY) for x in (-10.0, 15.0)]
    q = [np.asarray(ppl_bmc.expected_counts(scene, rho, dets, method=ppl_bmc.Quadrature(n))) for n in (128, 256)]
    runs = np.stack([np.asarray(ppl_bmc.expected_counts(scene, rho, dets, method=ppl_bmc.BMC(
        jax.random.key(i), n_particles, energy=energy))) for i in range(n_keys)])
    se = runs.std(0, ddof=1) / math.sqrt(n_keys)
    return (runs.mean(0) - q[1]) / np.hypot(se, np.abs(q[1] - q[0])), se / runs.mean(0)


@pytest.mark.slow  # ~45 s cold (many keys); the slab and telescope agreement tests stay in the fast suite
def test_bmc_is_unbiased_against_the_quadrature(x64):
    t, rel_se = _pyramid_check(LineOfSightEnergy())
    # 16 independent keys: t with 15 dof, |t| > 4 has p ≈ 1e-3 per bin (16 bins)
    assert np.all(np.abs(t) < 4), t
    assert np.all(rel_se < 1e-3)  # and the comparison is sharp


@pytest.mark.slow  # ~40 s cold: the unbiasedness check's own compilations (it runs beside it, in the slow suite)
def test_a_biased_proposal_fails_the_unbiasedness_check(x64):
    t, _ = _pyramid_check(_Skewed())
    assert np.any(np.abs(t) > 4), t


@pytest.mark.slow  # ~35 s cold (three adjoints compiled in float64); tests/test_muography.py and tests/test_adjoints.py keep the agreement in the fast suite
def test_adjoints_agree_on_expected_counts_gradients(x64):
    scene, rho = _pyramid_scene(n=5, seed=1)
    dets = [Detector((x, 0.0), np.linspace(-45, 45, 7), exposure_s=DAY) for x in (-12.0, 9.0)]
    weights = jnp.asarray(np.random.default_rng(2).normal(size=(2, 6)))
    key = jax.random.key(7)
    grads = []
    for adjoint in (ppl_bmc.AutodiffAdjoint(), ppl_bmc.ForwardSensitivity(), ppl_bmc.ReplayAdjoint()):
        loss = lambda r: jnp.sum(weights * ppl_bmc.expected_counts(scene, r, dets, key=key, n_particles=300, adjoint=adjoint))
        grads.append(np.asarray(jax.grad(loss)(jnp.asarray(rho))))
    assert np.abs(grads[0]).max() > 0
    for g in grads[1:]:  # same key: equal to float64 rounding
        np.testing.assert_allclose(g, grads[0], rtol=1e-9, atol=1e-12 * np.abs(grads[0]).max())


@pytest.mark.parametrize("traced", [False, True])
def test_field_kernel_split_step_is_the_step_and_inverts_it(traced, x64):
    # The replay adjoint runs the muon kernel backward through segment/advance/rewind/inverse_given:
    # the step they make must be undone by the inverse to float64 rounding, and the segment
    # must read only the path leaves that rewind restores.
    from ppl_bmc.detectors import readings
    from ppl_bmc.transport.csda import MuonKernel
    from ppl_bmc.transport.paths import FieldPath

    scene, rho = _pyramid_scene(n=5, seed=3)
    params = jnp.asarray(rho)
    path = FieldPath(scene.field, scene.step_m, 12 if traced else None)
    kernel = MuonKernel(path, scene.material, scene.sky, scene.k_max, scene.decay)
    r = readings([Detector((3.0, 0.0), np.linspace(-45, 45, 7), exposure_s=DAY)])
    ctx = {k: jnp.asarray(r[k][2]) for k in ("origin", "lo", "hi", "omega", "k_min", "frame", "tent")}
    state, _ = kernel.init(params, ctx, jnp.array([0.3, 0.6]))
    u = jnp.zeros((0,))
    n_inside = 0
    leaves = jax.tree_util.tree_leaves
    for k in range(1, 5):
        new, _ = kernel.step(state, params, ctx, u, k)
        n_inside += float(new.energy.csda_range - state.energy.csda_range) > 0  # the step crossed rock
        back = kernel.inverse(new, params, ctx, u, k)
        for a, b in zip(leaves(back), leaves(state)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-9)
        path = kernel.rewind(new, params, ctx, u, k)
        seg = kernel.segment(path, params, ctx, u, k)
        np.testing.assert_allclose(np.asarray(seg[0]), np.asarray(kernel.segment(state, params, ctx, u, k)[0]),
                                   rtol=1e-12)
        state = new
    assert n_inside >= 2  # the check is not vacuous


@pytest.mark.slow  # ~50 s cold: compiles the stepwise replay gradient only to compare with it
def test_a_traced_walk_is_the_stepwise_walk(x64):
    # expected_counts traces each particle's straight line once (FieldPath(n_steps=...)) instead
    # of integrating every step: for one key the estimate and its replay gradient are the
    # stepwise walk's to float64 rounding (the adjoints agree on the traced walk: above).
    from ppl_bmc.adjoint import mean_weight
    from ppl_bmc.detectors import readings
    from ppl_bmc.transport.csda import MuonKernel
    from ppl_bmc.transport.paths import FieldPath

    scene, rho = _pyramid_scene(n=5, seed=2)
    r = readings([Detector((x, 0.0), np.linspace(-45, 45, 4), exposure_s=DAY) for x in (-8.0, 5.0)])
    ctx = {k: jnp.asarray(r[k]) for k in ("origin", "lo", "hi", "omega", "k_min", "frame", "tent")}
    n_steps = ppl_bmc.likelihood._check_steps(scene, [Detector((x, 0.0), np.linspace(-45, 45, 4)) for x in (-8.0, 5.0)],
                                              None)
    weights = jnp.asarray(np.random.default_rng(3).normal(size=6))
    out = {}
    for traced in (False, True):
        kernel = MuonKernel(FieldPath(scene.field, scene.step_m, n_steps if traced else None), scene.material,
                            scene.sky, scene.k_max, scene.decay)
        f = lambda q: mean_weight(kernel, q, ctx, jax.random.key(4), n_particles=64, n_steps=n_steps,
                                  adjoint=ppl_bmc.ReplayAdjoint())
        value, grad = jax.jit(jax.value_and_grad(lambda q: jnp.sum(weights * f(q))))(jnp.asarray(rho))
        out[traced] = float(value), np.asarray(grad)
    v0, g0 = out[False]
    assert np.abs(g0).max() > 0
    for (v, g) in out.values():
        assert v == pytest.approx(v0, rel=1e-12)
        np.testing.assert_allclose(g, g0, rtol=1e-9, atol=1e-12 * np.abs(g0).max())
    # another key differs (the comparison can fail)
    other = float(jnp.sum(weights * mean_weight(kernel, jnp.asarray(rho), ctx, jax.random.key(5), n_particles=64,
                                                n_steps=n_steps, adjoint=ppl_bmc.ReplayAdjoint())))
    assert abs(other - v0) > 1e-8 * abs(v0)


def test_quadrature_gradient_matches_finite_differences(x64):
    scene, rho = _pyramid_scene(n=5, seed=4)
    det = Detector((3.0, 0.0), np.linspace(-45, 45, 7), exposure_s=DAY)
    loss = lambda r: jnp.sum(jnp.log(ppl_bmc.expected_counts(scene, r, det, method="quadrature")))
    r = jnp.asarray(rho)
    g = np.asarray(jax.grad(loss)(r))
    for idx in [(0, 2), (1, 1), (2, 3)]:
        e = np.zeros(rho.shape)
        e[idx] = 1.0
        h = 0.5  # kg/m³; central differences, error O(h²)
        fd = (float(loss(r + h * e)) - float(loss(r - h * e))) / (2 * h)
        assert g[idx] == pytest.approx(fd, rel=1e-5, abs=1e-12)


def test_same_key_same_counts():
    scene, rho = _pyramid_scene()
    det = Detector((0.0, 0.0), np.linspace(-30, 30, 4))
    a = ppl_bmc.expected_counts(scene, jnp.asarray(rho, jnp.float32), det, key=jax.random.key(5), n_particles=256)
    b = ppl_bmc.expected_counts(scene, jnp.asarray(rho, jnp.float32), det, key=jax.random.key(5), n_particles=256)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_detector_outside_the_scene(small):
    scene, rho, _ = small
    with pytest.raises(ValueError, match="detector 0 .* outside the scene"):
        ppl_bmc.expected_counts(scene, rho, Detector((50.0, 0.0), [0.0, 10.0]), method="quadrature")


def test_detector_where_no_ray_can_pass():
    grid = VoxelGrid((-100.0, 0.0), (100.0, 5000.0), (1, 1))  # 5 km of lead: 57 km w.e.
    with pytest.raises(ValueError, match="no ray can pass"):
        ppl_bmc.expected_counts(Scene(grid, material="lead"), jnp.full((1, 1), 11350.0),
                                Detector((0.0, 0.0), [-5.0, 5.0]), method="quadrature")


def test_parameter_shape_must_match_grid(small):
    scene, _, det = small
    with pytest.raises(ValueError, match=r"params must have shape \(4, 4\)"):
        ppl_bmc.expected_counts(scene, jnp.ones((4, 5)), det, method="quadrature")


def test_negative_or_nan_densities(small):
    scene, rho, det = small
    with pytest.raises(ValueError, match="must be >= 0 kg/m³"):
        ppl_bmc.expected_counts(scene, rho.at[1, 1].set(-5.0), det, method="quadrature")
    with pytest.raises(ValueError, match="finite"):
        ppl_bmc.expected_counts(scene, rho.at[1, 1].set(jnp.nan), det, method="quadrature")


@pytest.mark.parametrize("edges", [[0.0, 0.0, 10.0], [10.0, 5.0], [0.0]])
def test_empty_bins(edges):
    with pytest.raises(ValueError, match="zenith_edges_deg"):
        Detector((0.0, 0.0), edges)


def test_n_steps_too_small_reports_fraction_inside(small):
    scene, rho, det = small
    with pytest.raises(ValueError, match=r"n_steps=2 is too small: rays of up to .* m cross the scene, .*"
                                         r"\(\d+(\.\d)?% of the particles would still be inside"):
        ppl_bmc.expected_counts(scene, rho, det, key=jax.random.key(0), n_particles=16, n_steps=2)
    # the automatic choice takes every ray out
    counts = ppl_bmc.expected_counts(scene, rho, det, key=jax.random.key(0), n_particles=16)
    assert counts.shape == (1, 4) and np.all(np.asarray(counts) > 0)


def test_the_default_walk_reaches_the_longest_ray_at_a_bin_edge(x64):
    # A box seen from the middle of its floor: in the bin [-40°, -20°] the longest ray (40 m / cos 40°
    # = 52.2 m) is at the bin's edge.  The default n_steps was once taken from directions at the
    # centres of a grid of cells (longest 52.0 m: 13 steps of 4 m), so the particles near the
    # edge were still inside after the last step and counted for nothing: BMC 1.1 % low, 37
    # standard errors.  Now BMC agrees with the quadrature within 4 standard errors.
    from ppl_bmc.likelihood import _check_steps, exit_lengths

    grid = VoxelGrid((-50.0, 0.0), (50.0, 40.0), (4, 5))
    scene = Scene(grid, step_m=4.0, decay=False)
    dets = [Detector((0.0, 0.0), [-40.0, -20.0])]
    assert float(exit_lengths(scene, dets).max()) < 52.0 < 40.0 / math.cos(math.radians(40.0))
    assert _check_steps(scene, dets, None) == 14
    rho = jnp.full(grid.shape, 2650.0)
    q = float(ppl_bmc.expected_counts(scene, rho, dets, method=ppl_bmc.Quadrature(n_directions=64))[0, 0])
    runs = np.array([float(ppl_bmc.expected_counts(scene, rho, dets, method=ppl_bmc.BMC(jax.random.key(i),
                                                                                       n_particles=2000))[0, 0])
                     for i in range(4)])
    se = runs.std(ddof=1) / 2
    assert abs(runs.mean() - q) < 4 * se + 1e-5 * q, (runs.mean(), q, se)
    with pytest.raises(ValueError, match="n_steps=13 is too small"):
        ppl_bmc.expected_counts(scene, rho, dets, method=ppl_bmc.BMC(jax.random.key(0), n_particles=8, n_steps=13))


def test_bad_method_key_and_detector_mix(small):
    scene, rho, det = small
    with pytest.raises(ValueError, match="method must be 'bmc', 'quadrature', a ppl_bmc.Quadrature or a ppl_bmc.BMC"):
        ppl_bmc.expected_counts(scene, rho, det, method="mc")
    with pytest.raises(ValueError, match="key must be a JAX PRNG key"):
        ppl_bmc.expected_counts(scene, rho, det, n_particles=16)
    with pytest.raises(ValueError, match="same number of bins"):
        ppl_bmc.expected_counts(scene, rho, [det, Detector((1.0, 0.0), [0.0, 10.0])], method="quadrature")
    with pytest.raises(ValueError, match="3-D but the scene is 2-D"):
        ppl_bmc.expected_counts(scene, rho, Detector((0.0, 0.0, 0.0), [0.0, 10.0], [0.0, 90.0]), method="quadrature")


def _affine_cases():
    from ppl_bmc.geometry import Composite, GaussianBlobs, Layers, Mixture

    rng = np.random.default_rng(7)
    vox2 = VoxelGrid((-20.0, 0.0), (20.0, 30.0), (3, 4))
    vox3 = VoxelGrid((-20.0, -20.0, 0.0), (20.0, 20.0, 30.0), (3, 2, 4))
    d2 = Detector((1.0, 0.0), np.linspace(-50, 50, 6))
    d3 = Detector((1.0, -2.0, 0.0), np.linspace(0, 50, 4), np.linspace(0, 360, 4))
    pyr = HeightMap.pyramid(40.0, 30.0, fill=vox2)
    return [
        ("voxels_2d", vox2, rng.uniform(1000, 3000, vox2.shape), d2),
        ("smooth_voxels_3d", dataclasses.replace(vox3, smooth=True), rng.uniform(1000, 3000, vox3.shape), d3),
        ("layers", Layers((-30.0,), (30.0,), z_edges=[0.0, 10.0, 30.0]), np.array([2600.0, 1800.0]), d2),
        ("terrain_uniform", HeightMap.pyramid(40.0, 30.0, ndim=3, margin_m=5.0), np.asarray(2200.0), d3),
        ("terrain_fill", pyr, rng.uniform(1000, 3000, vox2.shape), d2),
        ("composite", Composite((pyr, Layers((-30.0,), (30.0,), z_edges=[0.0, 5.0]))),
         (rng.uniform(1000, 3000, vox2.shape), np.array([500.0])), d2),
        ("mixture", Mixture(fraction=vox2, density_a=2650.0, density_b=1000.0),
         rng.uniform(0, 1, vox2.shape), d2),
        ("blobs (not affine)", GaussianBlobs((-20.0, 0.0), (20.0, 30.0)),
         {"center": np.array([[0.0, 15.0]]), "sigma2": np.array([40.0])}, d2),
    ]


@pytest.mark.parametrize("name, field, params, det", _affine_cases(), ids=lambda v: v if isinstance(v, str) else "")
def test_affine_fields_path_length_map_equals_the_ray_integrals(name, field, params, det, x64):
    # the quadrature's sparse path-length map (tabulated once for affine fields) against the
    # per-ray breakpoint integrals it replaces: identical to float64 rounding, values and gradients
    from ppl_bmc import quadrature

    scene = Scene(field)
    params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), params)
    assert field.affine == (not name.startswith("blobs"))
    geom, rows = quadrature.geometry((det,), scene.ndim, 6)
    direct = lambda p: quadrature.counts(scene, p, dict(geom), rows, "float64")
    got = ppl_bmc.expected_counts(scene, params, det, method="quadrature", n_directions=6)[0]
    np.testing.assert_allclose(np.asarray(got), np.asarray(direct(params)), rtol=1e-10)
    if field.affine:
        g_map = jax.grad(lambda p: jnp.sum(jnp.log(ppl_bmc.expected_counts(scene, p, det, method="quadrature",
                                                                            n_directions=6))))(params)
        g_dir = jax.grad(lambda p: jnp.sum(jnp.log(direct(p))))(params)
        for a, b in zip(jax.tree_util.tree_leaves(g_map), jax.tree_util.tree_leaves(g_dir)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-9, atol=1e-14)


@pytest.mark.slow  # ~17 s (quadrature and BMC compiled in float64); tests/geometry/test_fields.py checks the integrals fast
def test_free_terrain_heights_in_expected_counts(x64):
    # A scene whose terrain heights are parameters: at the nominal heights BMC (same key) and the
    # quadrature give the fixed terrain's counts to rounding; the counts' gradient in the heights
    # is finite and non-zero where the detectors look (both methods).
    fixed = HeightMap.pyramid(100.0, 40.0)
    free = dataclasses.replace(fixed, free_heights=True)
    dets = [Detector((x, 0.0), np.linspace(-50, 50, 7), exposure_s=DAY) for x in (-10.0, 15.0)]
    rho = jnp.asarray(2000.0)
    h = jnp.asarray(fixed.heights)
    for method in ("quadrature", ppl_bmc.BMC(jax.random.key(3), n_particles=64)):
        a = np.asarray(ppl_bmc.expected_counts(Scene(fixed, step_m=8.0), rho, dets, method=method))
        b = np.asarray(ppl_bmc.expected_counts(Scene(free, step_m=8.0), (h, rho), dets, method=method))
        np.testing.assert_allclose(b, a, rtol=1e-9)
        g = np.asarray(jax.grad(lambda h: jnp.sum(ppl_bmc.expected_counts(Scene(free, step_m=8.0), (h, rho), dets,
                                                                            method=method)))(h))
        assert np.all(np.isfinite(g)) and g[2] < 0, g  # a higher apex: more rock, fewer muons
