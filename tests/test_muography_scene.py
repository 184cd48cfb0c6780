"""Muography scenes: fields, detectors and expected_counts (issue 4 acceptance)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl_bmc
from ppl_bmc import muography, nppl
from ppl_bmc.detectors import Detector
from ppl_bmc.geometry import Composite, GaussianBlobs, HeightMap, Layers, Mixture, Scene, VoxelGrid
from ppl_bmc.geometry.rays import box_interval

DAY = 86400.0


def _ray_opacity(field, p, d, params):
    p, d = jnp.asarray(p, float), jnp.asarray(d, float)
    t_in, t_out = box_interval(p, d, field.lower, field.upper)
    return float(field.integrate(p, d, t_in, t_out, params))


def _numeric_opacity(field, p, d, params, n=400_001):
    """Brute-force reference: the trapezoid rule on n points along the ray inside the box."""
    p, d = np.asarray(p, float), np.asarray(d, float)
    _, t_out = box_interval(jnp.asarray(p), jnp.asarray(d), field.lower, field.upper)
    t = np.linspace(0.0, float(t_out), n)
    rho = np.asarray(field.density(jnp.asarray(p[None] + t[:, None] * d[None]), params))
    return float(np.sum(0.5 * (rho[1:] + rho[:-1]) * np.diff(t)))


# --- A uniform field reproduces transmitted_flux ---------------------------------------------

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


# --- Exact opacities of straight rays -----------------------------------------------------------

def test_voxel_opacity_equals_analytic_blocks_2d():
    grid = VoxelGrid((0.0, 0.0), (10.0, 10.0), (10, 10))
    rho = np.zeros(grid.shape)
    rho[3:6, 2:4] = 2000.0  # block x ∈ [2, 4], z ∈ [3, 6]
    rho[8, 7] = 500.0  # voxel x ∈ [7, 8], z ∈ [8, 9]
    r = jnp.asarray(rho)
    # vertical ray at x = 3: 3 m of the block
    assert _ray_opacity(grid, (3.0, 0.0), (0.0, 1.0), r) == pytest.approx(2000.0 * 3.0, rel=1e-6)
    # 45° ray from the origin: x = z crosses the block from (3, 3) to (4, 4)
    s = math.sqrt(0.5)
    assert _ray_opacity(grid, (0.0, 0.0), (s, s), r) == pytest.approx(2000.0 * math.sqrt(2.0), rel=1e-6)
    # ray from (7.5, 0) at angle with tan = 0.05: crosses z ∈ [8, 9] at x ∈ [7.9, 7.95] inside the small voxel
    d = np.array([0.05, 1.0]) / math.hypot(0.05, 1.0)
    assert _ray_opacity(grid, (7.5, 0.0), d, r) == pytest.approx(500.0 * math.hypot(0.05, 1.0), rel=1e-6)


def test_voxel_opacity_equals_analytic_block_3d():
    grid = VoxelGrid((0.0, 0.0, 0.0), (8.0, 8.0, 8.0), (8, 8, 8))
    rho = np.zeros(grid.shape)
    rho[2:5, 1:3, 4:6] = 1000.0  # z ∈ [2, 5], y ∈ [1, 3], x ∈ [4, 6]
    d = np.array([1.0, 0.5, 2.0]) / math.sqrt(5.25)
    # from (4, 1.5, 0): x = 4 + t·dx/…; inside the block while z ∈ [2, 5] → x ∈ [5, 6.5] → capped at x = 6 (z = 4)
    length = (4.0 - 2.0) * math.sqrt(5.25) / 2.0
    assert _ray_opacity(grid, (4.0, 1.5, 0.0), d, jnp.asarray(rho)) == pytest.approx(1000.0 * length, rel=1e-6)


@pytest.mark.parametrize("angle", [0.0, 20.0, -35.0, 50.0])
def test_pyramid_opacity_is_exact(angle):
    pyr = HeightMap.pyramid(200.0, 130.0, margin_m=10.0)
    a = math.radians(angle)
    got = _ray_opacity(pyr, (0.0, 0.0), (math.sin(a), math.cos(a)), jnp.asarray(2000.0))
    # from the base centre the ray leaves through a face z = 130·(1 − |x|/100)
    assert got == pytest.approx(2000.0 * 130.0 / (math.cos(a) + 1.3 * abs(math.sin(a))), rel=1e-6)


@pytest.mark.parametrize("build", ["layers", "blobs", "smooth_voxels", "pyramid_3d", "composite", "mixture"])
def test_field_integrals_match_brute_force(build):
    rng = np.random.default_rng(3)
    if build == "layers":
        f, q, p, d = Layers((-50.0,), (50.0,), z_edges=[0.0, 3.0, 10.0, 12.5]), jnp.array([2000.0, 1000.0, 2600.0]), (5.0, 0.0), (0.3, 0.954)
    elif build == "blobs":
        f = GaussianBlobs((-20.0, 0.0), (20.0, 30.0), n_blobs=2, density_inside=0.0, density_outside=2650.0)
        q, p, d = {"center": jnp.array([[1.0, 10.0], [-4.0, 20.0]]), "sigma2": jnp.array([9.0, 16.0])}, (0.0, 0.0), (-0.1, 0.995)
    elif build == "smooth_voxels":
        f = VoxelGrid((0.0, 0.0), (10.0, 10.0), (5, 5), smooth=True)
        q, p, d = jnp.asarray(rng.uniform(0, 3000, (5, 5))), (1.0, 0.0), (0.5, 0.866)
    elif build == "pyramid_3d":
        f, q, p = HeightMap.pyramid(200.0, 130.0, ndim=3, margin_m=5.0), jnp.asarray(1.0), (3.0, -2.0, 0.0)
        d = (math.sin(0.6) * math.cos(0.4), math.sin(0.6) * math.sin(0.4), math.cos(0.6))
    elif build == "composite":
        f = Composite((HeightMap.pyramid(20.0, 10.0), VoxelGrid((-10.0, 0.0), (10.0, 10.0), (4, 4))))
        q, p, d = (jnp.asarray(1500.0), jnp.asarray(rng.uniform(0, 500, (4, 4)))), (-2.0, 0.0), (0.2, 0.98)
    else:
        f = Mixture(VoxelGrid((-10.0, 0.0), (10.0, 10.0), (4, 4)), density_a=2650.0, density_b=1000.0)
        q, p, d = jnp.asarray(rng.uniform(0, 1, (4, 4))), (-2.0, 0.0), (0.2, 0.98)
    d = np.asarray(d) / np.linalg.norm(d)
    exact = _ray_opacity(f, p, d, q)
    # the brute-force trapezoid on 4e5 points is good to ~1e-5 relative for these fields
    assert exact == pytest.approx(_numeric_opacity(f, p, d, q), rel=1e-4)


# --- BMC vs quadrature, adjoints ----------------------------------------------------------------

def _pyramid_scene(n=6, seed=0):
    grid = VoxelGrid((-50.0, 0.0), (50.0, 40.0), (n, n))
    scene = Scene(HeightMap.pyramid(100.0, 40.0, fill=grid), material="standard_rock", step_m=8.0)
    rho = np.random.default_rng(seed).uniform(1500.0, 3000.0, grid.shape)
    return scene, rho


def test_bmc_matches_quadrature_within_4_standard_errors():
    scene, rho = _pyramid_scene()
    dets = [Detector((x, 0.0), np.linspace(-50, 50, 9), exposure_s=DAY) for x in (-10.0, 15.0)]
    quad = np.asarray(ppl_bmc.expected_counts(scene, jnp.asarray(rho, jnp.float32), dets, method="quadrature"))
    n_keys = 32
    runs = np.stack([np.asarray(ppl_bmc.expected_counts(scene, jnp.asarray(rho, jnp.float32), dets, key=jax.random.key(i),
                                                        n_particles=2000)) for i in range(n_keys)])
    mean, se = runs.mean(0), runs.std(0, ddof=1) / math.sqrt(n_keys)
    # the standard error comes from 32 independent keys (t with 31 dof: |t| > 4 has p ≈ 4e-4 per bin)
    assert np.all(np.abs(mean - quad) < 4 * se), (mean - quad) / se
    assert np.all(se / mean < 0.02)  # and the comparison is sharp


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


def test_field_kernel_split_step_is_the_step_and_inverts_it(x64):
    # The replay adjoint runs the muon kernel backward through segment/advance/rewind/inverse_given:
    # the step they make must be undone by the inverse to float64 rounding, and the segment
    # must read only the path leaves that rewind restores.
    from ppl_bmc.detectors import readings
    from ppl_bmc.transport.csda import MuonKernel
    from ppl_bmc.transport.paths import FieldPath

    scene, rho = _pyramid_scene(n=5, seed=3)
    params = jnp.asarray(rho)
    kernel = MuonKernel(FieldPath(scene.field, scene.step_m), scene.material, scene.sky, scene.k_max, scene.decay)
    r = readings([Detector((3.0, 0.0), np.linspace(-45, 45, 7), exposure_s=DAY)])
    ctx = {k: jnp.asarray(r[k][2]) for k in ("origin", "lo", "hi", "omega", "k_min")}
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


# --- Bad input ------------------------------------------------------------------------------------

@pytest.fixture
def small():
    grid = VoxelGrid((-20.0, 0.0), (20.0, 20.0), (4, 4))
    return Scene(grid, step_m=5.0), jnp.full(grid.shape, 2000.0), Detector((0.0, 0.0), np.linspace(-40, 40, 5))


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
    with pytest.raises(ValueError, match=r"n_steps=2 is too small: \d+(\.\d)?% of the particles would still be inside"):
        ppl_bmc.expected_counts(scene, rho, det, key=jax.random.key(0), n_particles=16, n_steps=2)
    # the automatic choice takes every ray out
    counts = ppl_bmc.expected_counts(scene, rho, det, key=jax.random.key(0), n_particles=16)
    assert counts.shape == (1, 4) and np.all(np.asarray(counts) > 0)


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


# --- NumPyro glue -----------------------------------------------------------------------------------

def test_gmrf_covariance_is_the_normalised_inverse_precision():
    shape, length = (3, 4), 1.5
    gm = nppl.GMRF(shape, length)
    n = int(np.prod(shape))
    cols = np.stack([np.asarray(gm.transform(jnp.asarray(np.eye(n)[i].reshape(shape)))).ravel() for i in range(n)], 1)
    cov = cols @ cols.T
    # explicit precision κ²I + L of the 3 × 4 grid graph
    lap = np.zeros((n, n))
    idx = np.arange(n).reshape(shape)
    for i, j in [(0, 1), (1, 0)]:
        for u, v in zip(idx[: shape[0] - i, : shape[1] - j].ravel(), idx[i:, j:].ravel()):
            lap[u, v] = lap[v, u] = -1.0
    lap -= np.diag(lap.sum(1))
    ref = np.linalg.inv(np.eye(n) / length**2 + lap)
    ref /= np.mean(np.diag(ref))  # normalised: mean marginal variance 1
    np.testing.assert_allclose(cov, ref, rtol=1e-5, atol=1e-6)


def test_counts_site_simulates_and_scores_per_bin(small):
    import numpyro
    from numpyro.infer import Predictive, log_likelihood

    scene, rho, det = small
    prior = nppl.log_density_prior((4, 4), mean_density=2000.0, sd_log=0.2)
    model = nppl.field_model(scene, [det, Detector((5.0, 0.0), np.linspace(-40, 40, 5))], prior)
    sims = Predictive(model, num_samples=3)(jax.random.key(0))
    assert sims["counts"].shape == (3, 2, 4) and sims["log_density"].shape == (3, 4, 4)
    assert np.all(np.asarray(sims["counts"]) >= 0)
    post = {"log_density_white": sims["log_density_white"]}
    ll = log_likelihood(model, post, counts=sims["counts"][0])["counts"]
    assert ll.shape == (3, 2, 4) and np.all(np.isfinite(np.asarray(ll)))
    with pytest.raises(ValueError, match="non-negative integers"):
        numpyro.handlers.seed(model, 0)(counts=-np.ones((2, 4)))


def test_nppl_priors_do_not_depend_on_numpyros_default_initialisation(small):
    """NumPyro's default init draws the unconstrained latents uniformly in [-2, 2].  The nppl
    prior is non-centred (white-noise latents around the physical scale), so that start is within
    a few prior sd of the mean density; a prior written on the physical log scale
    (log ρ ~ N(log 2600, 0.5)) starts at log ρ ∈ [-2, 2] instead, ~16 prior sd away."""
    import numpyro
    import numpyro.distributions as dist
    from numpyro.infer.util import initialize_model

    scene, _, det = small
    counts = np.round(np.asarray(ppl_bmc.expected_counts(scene, jnp.full((4, 4), 2600.0), det, method="quadrature")))
    model = nppl.field_model(scene, [det], nppl.log_density_prior((4, 4), mean_density=2600.0, sd_log=0.3),
                             method="quadrature")

    def physical(counts=None):
        log_rho = numpyro.sample("log_rho", dist.Normal(math.log(2600.0), 0.5).expand([4, 4]).to_event(2))
        nppl.counts_site(ppl_bmc.expected_counts(scene, jnp.exp(log_rho), det, method="quadrature"), counts)

    for seed in range(3):
        info = initialize_model(jax.random.key(seed), model, model_kwargs={"counts": counts})
        rho = np.exp(np.asarray(info.postprocess_fn(info.param_info.z)["log_density"]))
        # white latents in [-2, 2], GMRF marginal sd ≈ 1, scale 0.3: within ~exp(±2.5) of 2600
        assert np.all((rho > 2600.0 / 20) & (rho < 2600.0 * 20)), rho
        assert np.isfinite(float(info.param_info.potential_energy))
        trap = initialize_model(jax.random.key(seed), physical, model_kwargs={"counts": counts})
        start = np.asarray(trap.param_info.z["log_rho"])  # in [-2, 2]: > 10 prior sd below log 2600
        # the trap's consequence: a nearly empty block (ρ ≤ e² kg/m³) lets through several times
        # the observed muons in every bin, so NUTS starts in a far, flat corner of the posterior
        far = np.asarray(ppl_bmc.expected_counts(scene, jnp.exp(jnp.asarray(start)), det, method="quadrature"))
        assert np.all(far > 3 * counts), (far, counts)
