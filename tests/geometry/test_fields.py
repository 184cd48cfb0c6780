"""Density fields: exact ray opacities of voxels, layers, height maps, blobs and composites."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from ppl_bmc.geometry import (
    Composite,
    GaussianBlobs,
    HeightMap,
    Layers,
    Mixture,
    VoxelGrid,
)
from ppl_bmc.geometry.rays import box_interval


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


def _field_case(build):
    """``(field, params, start, direction)`` of one field family for the ray tests."""
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
    return f, q, p, np.asarray(d) / np.linalg.norm(d)


FAMILIES = ["layers", "blobs", "smooth_voxels", "pyramid_3d", "composite", "mixture"]


@pytest.mark.parametrize("build", FAMILIES)
def test_field_integrals_match_brute_force(build):
    f, q, p, d = _field_case(build)
    exact = _ray_opacity(f, p, d, q)
    # the brute-force trapezoid on 4e5 points is good to ~1e-5 relative for these fields
    assert exact == pytest.approx(_numeric_opacity(f, p, d, q), rel=1e-4)


@pytest.mark.parametrize("step_m", [3.0, 17.0, 60.0, 1000.0])
def test_steps_of_any_length_sum_to_the_ray_integral(step_m, x64):
    # BMC integrates a ray step by step with only the grid planes within reach of each step
    # (``max_span``); a step longer than the grid takes all planes.  Exact either way (float64
    # round-off: 1e-12 relative).
    grid = VoxelGrid((-50.0, 0.0), (50.0, 40.0), (8, 6))
    rho = jnp.asarray(np.random.default_rng(5).uniform(500.0, 3000.0, grid.shape))
    p, d = jnp.asarray([-10.0, 0.0]), jnp.asarray([0.6, 0.8])
    t_in, t_out = box_interval(p, d, grid.lower, grid.upper)
    whole = float(grid.integrate(p, d, t_in, t_out, rho))
    n = math.ceil(float(t_out) / step_m)
    steps = sum(float(grid.integrate(p + k * step_m * d, d, 0.0, step_m, rho, max_span=step_m)) for k in range(n))
    assert steps == pytest.approx(whole, rel=1e-12)
    # the sum without its last step falls short: the check can fail
    assert steps - float(grid.integrate(p + (n - 1) * step_m * d, d, 0.0, step_m, rho, max_span=step_m)) \
        != pytest.approx(whole, rel=1e-6)


@pytest.mark.parametrize("build", FAMILIES + ["voxels_3d", "terrain_3d"])
def test_step_integrals_are_the_steps_integrated_one_by_one(build, x64):
    # BMC traces a straight walk once (one sort of the whole ray's breakpoints) and reads each
    # step's opacity from it: the same numbers as integrating every step on its own, and the
    # same gradients (float64 rounding: 1e-10 relative to the largest step).
    import jax

    if build == "voxels_3d":
        f = VoxelGrid((-20.0, -10.0, 0.0), (20.0, 10.0, 30.0), (5, 3, 4))
        q = jnp.asarray(np.random.default_rng(6).uniform(500, 3000, f.shape))
        p, d = (1.0, -2.0, 0.0), np.array([0.3, 0.2, 0.93]) / np.linalg.norm([0.3, 0.2, 0.93])
    elif build == "terrain_3d":
        x, y = np.linspace(-40, 40, 6), np.linspace(-30, 30, 5)
        h = 20 + 10 * np.cos(x[None, :] / 17) * np.sin(y[:, None] / 11)
        f = HeightMap((-40.0, -30.0, 0.0), (40.0, 30.0, 35.0), (x, y), h,
                      fill=VoxelGrid((-40.0, -30.0, 0.0), (40.0, 30.0, 35.0), (4, 3, 5)))
        q = jnp.asarray(np.random.default_rng(7).uniform(1500, 2800, (5, 3, 4)))
        p, d = (2.0, 1.0, 0.0), np.array([0.5, -0.3, 0.8]) / np.linalg.norm([0.5, -0.3, 0.8])
    else:
        f, q, p, d = _field_case(build)
    p, d = jnp.asarray(p, float), jnp.asarray(d, float)
    _, t_out = box_interval(p, d, f.lower, f.upper)
    step = float(t_out) / 6.3  # the last step leaves the box
    n = 8

    @jax.jit
    def one_by_one(q):
        return jnp.stack([f.integrate(p + k * step * d, d, 0.0, step, q, max_span=step) for k in range(n)])

    traced = jax.jit(lambda q: f.step_integrals(p, d, step, n, q))
    a, b = np.asarray(traced(q)), np.asarray(one_by_one(q))
    assert np.count_nonzero(b > 0) >= 3 and b[-1] == 0.0  # not vacuous: several steps cross matter
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-10 * b.max())
    w = jnp.asarray(np.random.default_rng(8).normal(size=n))
    ga, gb = (jax.jit(jax.grad(lambda q, fn=fn: jnp.sum(w * fn(q))))(q) for fn in (traced, one_by_one))
    for x, y in zip(jax.tree_util.tree_leaves(ga), jax.tree_util.tree_leaves(gb)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-9, atol=1e-12 * max(np.abs(np.asarray(y)).max(), 1.0))
    # a walk shifted by a tenth of a step is not the same (the comparison can fail)
    shifted = np.asarray(jax.jit(lambda q: f.step_integrals(p + 0.1 * step * d, d, step, n, q))(q))
    assert np.max(np.abs(shifted - b)) > 1e-6 * b.max()


def _hard_rays(grid, rng, n_random):
    """Rays a face-by-face walk can get wrong: through voxel corners (ties between axes), along
    an interior plane, parallel to an axis, from outside the grid, missing it, starting inside
    and going down, and random ones from a box twice the grid's size towards a random point of
    the grid."""
    lo, hi = np.asarray(grid.lower), np.asarray(grid.upper)
    D = len(lo)
    diag = np.ones(D) / math.sqrt(D)
    axis = np.eye(D)[-1]
    rays = [(lo, diag), (lo + 2 * np.asarray(grid.voxel_size), diag),  # corner to corner
            (np.where(np.arange(D) == 0, lo + 3 * grid.voxel_size[0], lo), axis),  # along the plane x = face 3
            (0.5 * (lo + hi), -axis), (0.5 * (lo + hi), np.roll(axis, 1)),  # parallel to axes, inside
            (lo - 0.3 * (hi - lo), diag), (hi + 1.0, diag)]  # from outside in; from outside, missing
    for _ in range(n_random):
        p = lo - 0.5 * (hi - lo) + 2 * (hi - lo) * rng.uniform(size=D)
        d = lo + (hi - lo) * rng.uniform(size=D) - p
        rays.append((p, d / np.linalg.norm(d)))
    return rays


@pytest.mark.parametrize("shape, lower, upper", [((6, 8), (0.0, 0.0), (8.0, 6.0)),
                                                 pytest.param((7, 5), (-50.0, 0.0), (50.0, 40.0), marks=pytest.mark.slow),
                                                 ((4, 3, 5), (0.0, 0.0, 0.0), (5.0, 3.0, 4.0)),
                                                 # ~12 s cold each: one 2-D and one 3-D grid in the fast suite
                                                 pytest.param((5, 4, 6), (-20.0, -10.0, 0.0), (20.0, 10.0, 30.0),
                                                              marks=pytest.mark.slow)])
def test_voxel_walk_matches_the_sorted_breakpoints(shape, lower, upper, x64):
    # The voxel grid's step opacities come from a face-by-face walk (no sort); the reference is
    # the generic Field.step_integrals, one sort of all the grid's planes and step boundaries.
    # float64: agreement to 1e-10 of the largest step (rounding only), gradients too; float32:
    # 2e-5 of the largest step (each face distance is recomputed from the voxel index, so errors
    # do not accumulate along the walk).
    import jax

    from ppl_bmc.geometry import rays

    assert 20 <= rays._ONE_HOT_STEPS < 80  # both ways of adding a piece to its step are checked below

    from ppl_bmc.geometry.field import Field

    grid = VoxelGrid(lower, upper, shape)
    rng = np.random.default_rng(sum(shape))
    rho = rng.uniform(500.0, 3000.0, shape)
    diameter = float(np.linalg.norm(np.subtract(upper, lower)))
    # the last stops inside; 80 steps (3-D grids, for the fast suite's time): above
    # rays._ONE_HOT_STEPS, the scatter path of the walk
    cases = ((7, 0.31 * diameter), (20, 0.09 * diameter), (3, 0.2 * diameter))
    for n, step in cases + ((80, 0.014 * diameter),) * (len(shape) == 3):
        walk = jax.jit(jax.vmap(lambda p, d, q: grid.step_integrals(p, d, step, n, q), (0, 0, None)))
        sort = jax.jit(jax.vmap(lambda p, d, q: Field.step_integrals(grid, p, d, step, n, q), (0, 0, None)))
        p, d = (jnp.asarray(np.stack(x)) for x in zip(*_hard_rays(grid, rng, 60)))
        a, b = np.asarray(walk(p, d, jnp.asarray(rho))), np.asarray(sort(p, d, jnp.asarray(rho)))
        assert np.count_nonzero(b.sum(-1) > 0) > 50 and np.all(b[6] == 0)  # many rays cross matter; the miss is 0
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-10 * b.max())
        w = jnp.asarray(rng.normal(size=b.shape))
        ga, gb = (jax.grad(lambda q, f=f: jnp.sum(w * f(p, d, q)))(jnp.asarray(rho)) for f in (walk, sort))
        np.testing.assert_allclose(np.asarray(ga), np.asarray(gb), rtol=0, atol=1e-10 * np.abs(np.asarray(gb)).max())
        # where the ray itself is differentiated (a path that moves), through the walk: the same
        # derivatives as the sort's, away from the hand-made rays through corners and faces
        gp = [jax.grad(lambda p, f=f: jnp.sum(w[7:] * f(p, d[7:], jnp.asarray(rho))))(p[7:]) for f in (walk, sort)]
        np.testing.assert_allclose(np.asarray(gp[0]), np.asarray(gp[1]), rtol=0, atol=1e-9 * np.abs(np.asarray(gp[1])).max())
        with jax.enable_x64(False):
            p32, d32, r32 = (jnp.asarray(x, jnp.float32) for x in (p, d, rho))
            a32 = np.asarray(jax.vmap(lambda p, d: grid.step_integrals(p, d, step, n, r32))(p32, d32))
        np.testing.assert_allclose(a32, b, rtol=0, atol=2e-5 * b.max())
    # a density off by one voxel changes the steps: the comparison can fail
    bad = rho.copy()
    bad.flat[rng.integers(bad.size)] *= 1.5
    assert np.abs(np.asarray(walk(p, d, jnp.asarray(bad))) - b).max() > 1e-3 * b.max()


@pytest.mark.parametrize("case", ["pyramid_2d_voxels", "pyramid_2d_uniform",
                                  pytest.param("volcano_3d_voxels", marks=pytest.mark.slow)])  # ~14 s cold
def test_terrain_walk_matches_the_sorted_breakpoints(case, x64):
    # A height map over a voxel (or uniform) fill can walk the fill's voxels (it does when the
    # cuts are fewer than the faces, as for the 2-D pyramid), cut where the ray
    # crosses the surface, the knot planes and the map's box; reference: the generic sort of all
    # breakpoints.  float64: 1e-10 of the largest step; the fill's box differs from the map's.
    import jax

    from ppl_bmc.geometry.field import Field

    if case == "pyramid_2d_voxels":
        fill = VoxelGrid((-70.0, -5.0), (60.0, 95.0), (9, 11))
        f = HeightMap.pyramid(120.0, 80.0, center=3.0, margin_m=10.0, fill=fill)
        q = np.random.default_rng(1).uniform(1500.0, 2800.0, fill.shape)
    elif case == "pyramid_2d_uniform":
        f, q = HeightMap.pyramid(120.0, 80.0, margin_m=5.0), np.asarray(2300.0)
    else:
        fill = VoxelGrid((-50.0, -50.0, 0.0), (50.0, 50.0, 60.0), (3, 4, 5))
        f = HeightMap.volcano(45.0, 55.0, crater_radius_m=8.0, ndim=3, n_knots=9, fill=fill)
        q = np.random.default_rng(2).uniform(1500.0, 2800.0, fill.shape)
    rng = np.random.default_rng(3)
    rays = _hard_rays(VoxelGrid(f.lower, f.upper, (1,) * f.ndim), rng, 60)
    p, d = (jnp.asarray(np.stack(x)) for x in zip(*rays))
    diameter = float(np.linalg.norm(np.subtract(f.upper, f.lower)))
    for n, step in ((9, 0.25 * diameter), (3, 0.2 * diameter)):
        walk = jax.jit(jax.vmap(lambda p, d, q: f._walk_steps(p, d, step, n, q), (0, 0, None)))
        sort = jax.jit(jax.vmap(lambda p, d, q: Field.step_integrals(f, p, d, step, n, q), (0, 0, None)))
        a, b = np.asarray(walk(p, d, jnp.asarray(q))), np.asarray(sort(p, d, jnp.asarray(q)))
        assert np.count_nonzero(b.sum(-1) > 0) > 30
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-10 * b.max())
        w = jnp.asarray(rng.normal(size=b.shape))
        ga, gb = (jax.grad(lambda q, g=g: jnp.sum(w * g(p, d, q)))(jnp.asarray(q)) for g in (walk, sort))
        np.testing.assert_allclose(np.asarray(ga), np.asarray(gb), rtol=0, atol=1e-10 * np.abs(np.asarray(gb)).max())
    # without the surface cuts the walk would count the air above the slopes: the check can fail
    flat_top = HeightMap(f.lower, f.upper, f.knots, np.full_like(f.heights, f.upper[-1]), f.fill)
    c = np.asarray(jax.vmap(lambda p, d: flat_top._walk_steps(p, d, step, n, jnp.asarray(q)))(p, d))
    assert np.abs(c - b).max() > 1e-2 * b.max()


@pytest.mark.parametrize("ndim", [2, 3])
def test_free_heights_are_parameters_with_exact_gradients(ndim, x64):
    # A height map whose heights are parameters: the same integrals as the fixed map at the
    # nominal heights (to rounding), and their gradient in the heights equals central
    # differences of the exact integrals (float64, step 1e-4 m: the integral is piecewise
    # quadratic in a height, so the difference's error is ~1e-8 of the derivative).
    import dataclasses

    import jax

    if ndim == 2:
        fixed, rho = HeightMap.pyramid(120.0, 80.0, margin_m=10.0), 2300.0
    else:
        fixed, rho = HeightMap.volcano(45.0, 55.0, crater_radius_m=8.0, ndim=3, n_knots=5), 2300.0
    free = dataclasses.replace(fixed, free_heights=True)
    assert free.params_shape() == (fixed.heights.shape, ()) and not free.affine
    h0 = jnp.asarray(fixed.lower[-1] + 0.5 + 0.9 * (fixed.heights - fixed.lower[-1]))  # moved, inside the box
    rays = _hard_rays(VoxelGrid(fixed.lower, fixed.upper, (1,) * ndim), np.random.default_rng(5), 30)
    p, d = (jnp.asarray(np.stack(x)) for x in zip(*rays))

    def opacities(field, params):
        def one(p, d):
            t_in, t_out = box_interval(p, d, field.lower, field.upper)
            return field.integrate(p, d, t_in, t_out, params)
        return jax.vmap(one)(p, d)

    nominal = np.asarray(opacities(fixed, jnp.asarray(rho)))
    np.testing.assert_allclose(np.asarray(opacities(free, (jnp.asarray(fixed.heights), jnp.asarray(rho)))), nominal,
                               rtol=1e-12, atol=1e-9 * nominal.max())
    w = jnp.asarray(np.random.default_rng(6).normal(size=len(rays)))
    loss = jax.jit(lambda h: jnp.sum(w * opacities(free, (h, jnp.asarray(rho)))))
    grad = np.asarray(jax.grad(loss)(h0))
    eps = 1e-4
    fd = np.zeros(h0.shape)
    for idx in np.ndindex(h0.shape):
        e = np.zeros(h0.shape)
        e[idx] = eps
        fd[idx] = (float(loss(h0 + e)) - float(loss(h0 - e))) / (2 * eps)
    assert np.count_nonzero(np.abs(fd) > 1e-3 * np.abs(fd).max()) >= 3  # several knots are seen by the rays
    np.testing.assert_allclose(grad, fd, rtol=0, atol=1e-6 * np.abs(fd).max())
    # a height outside the box's z range is refused, naming the argument
    with pytest.raises(ValueError, match=r"params\[0\] \(heights\) must be in the box's z range"):
        free.check_params((np.asarray(fixed.heights) + 1e3, rho))
    with pytest.raises(ValueError, match=r"must be \(heights, fill params\)"):
        free.check_params(rho)
