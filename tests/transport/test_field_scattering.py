"""Multiple scattering in field scenes (2-D and 3-D): the turn inverts exactly, the adjoints stay
exact while the paths move with the densities, the deflections follow Highland, and a layer with
scattering agrees with the slab that has it."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl_bmc
from ppl_bmc import AutodiffAdjoint, BMC, Detector, ForwardSensitivity, ReplayAdjoint, flux, materials
from ppl_bmc.detectors import readings
from ppl_bmc.geometry import Layers, Scene, VoxelGrid
from ppl_bmc.physics.constants import MUON_MASS, MWE
from ppl_bmc.transport import loop
from ppl_bmc.transport.csda import MuonKernel
from ppl_bmc.transport.paths import FieldPath, LineOfSight

ROCK = materials.get("standard_rock")


def _ctx(detector, dtype=jnp.float64):
    r = readings([detector])
    return {k: jnp.asarray(np.asarray(r[k]), dtype) for k in ("origin", "lo", "hi", "omega", "k_min", "frame", "tent")}


def _one(ctx, i):
    return {k: v[i] for k, v in ctx.items()}


@pytest.mark.parametrize("ndim", [2, 3])
def test_the_turn_is_undone_by_the_opposite_angle(x64, ndim):
    if ndim == 2:
        det = Detector((0.0, 0.0), np.linspace(-60, 60, 5))
    else:  # bins from the zenith to the horizon, all around: every polar frame is exercised
        det = Detector((0.0, 0.0, 0.0), np.linspace(0, 85, 5), np.linspace(-180, 180, 5))
    path = FieldPath(VoxelGrid((-50.0,) * (ndim - 1) + (0.0,), (50.0,) * (ndim - 1) + (60.0,), (2,) * ndim), 1.0)
    ctx = _ctx(det)
    rng = np.random.default_rng(0)
    n_read, n = ctx["lo"].shape[0], 64
    u = jnp.asarray(rng.uniform(size=(n_read, n, ndim - 1)))
    angles = jnp.asarray(rng.normal(0.0, 0.2, size=(n_read, n, ndim - 1)))
    turn = jax.vmap(jax.vmap(path.turn, in_axes=(0, 0, None)), in_axes=(0, 0, 0))
    start = jax.vmap(jax.vmap(path.start, in_axes=(None, 0)), in_axes=(0, 0))
    _, d, _ = start(ctx, u)
    d2, ok = turn(d, angles, ctx)
    back, ok_back = turn(d2, -angles, ctx)
    assert bool(jnp.all(ok)) and bool(jnp.all(ok_back))
    np.testing.assert_allclose(np.linalg.norm(np.asarray(d2), axis=-1), 1.0, atol=1e-12)
    np.testing.assert_allclose(np.asarray(back), np.asarray(d), atol=1e-12)  # exact to float64 rounding
    # to first order in the angles, the direction turns by |angle| (the projections are orthogonal)
    turned = np.arccos(np.clip(np.sum(np.asarray(d) * np.asarray(d2), axis=-1), -1, 1))
    size = np.linalg.norm(np.asarray(angles), axis=-1)
    assert np.all(np.abs(turned - size) <= 0.6 * size ** 2 + 1e-9), np.max(np.abs(turned - size) / size ** 2)
    # and the check can fail: undoing with the same sign is not the identity
    wrong, _ = turn(d2, angles, ctx)
    assert float(jnp.max(jnp.abs(wrong - d))) > 0.1


def test_a_turn_through_the_polar_axis_is_not_ok(x64):
    det = Detector((0.0, 0.0, 0.0), [0.0, 10.0], [0.0, 10.0])
    path = FieldPath(VoxelGrid((-50.0, -50.0, 0.0), (50.0, 50.0, 60.0), (2, 2, 2)), 1.0)
    ctx = _one(_ctx(det), 0)
    _, d, _ = path.start(ctx, jnp.asarray([0.5, 0.5]))
    assert bool(path.turn(d, jnp.asarray([0.3, 0.0]), ctx)[1])
    assert not bool(path.turn(d, jnp.asarray([2.0, 0.0]), ctx)[1])  # ϑ ≈ π/2 + 2 > π


def _voxel_scene(ndim, scattering=True):
    if ndim == 2:
        grid = VoxelGrid((-30.0, 0.0), (30.0, 40.0), (4, 3))
        dets = [Detector((-10.0, 0.0), np.linspace(-30, 30, 3), exposure_s=86400.0)]
    else:
        grid = VoxelGrid((-30.0, -30.0, 0.0), (30.0, 30.0, 40.0), (3, 3, 2))
        dets = [Detector((0.0, 5.0, 0.0), [0.0, 20.0, 40.0], [-180.0, 0.0, 180.0], exposure_s=86400.0)]
    rho = jnp.asarray(np.random.default_rng(1).uniform(1500.0, 2800.0, grid.shape))
    return Scene(grid, step_m=5.0, scattering=scattering, k_max=1e4), rho, dets


@pytest.mark.slow  # 23-33 s each (four compilations of a bending walk); the turn's exact inverse is fast
@pytest.mark.parametrize("ndim", [2, 3])
def test_three_adjoints_agree_with_scattering_in_a_field(x64, ndim):
    # The paths bend with the densities (each deflection depends on the density where the step
    # ends, and every later step on the bent direction): the replay adjoint still inverts each
    # step exactly, so the three adjoints give one gradient to float64 rounding.
    scene, rho, dets = _voxel_scene(ndim)
    loglik = lambda adjoint: lambda r: jnp.sum(jnp.log(ppl_bmc.expected_counts(
        scene, r, dets, method=BMC(jax.random.key(3), n_particles=64, adjoint=adjoint))))
    grads = {type(a).__name__: np.asarray(jax.grad(loglik(a))(rho)) for a in
             (ReplayAdjoint(), AutodiffAdjoint(), ForwardSensitivity())}
    ref = grads["AutodiffAdjoint"]
    assert np.all(np.isfinite(ref)) and np.max(np.abs(ref)) > 0
    for name in ("ReplayAdjoint", "ForwardSensitivity"):
        np.testing.assert_allclose(grads[name], ref, rtol=1e-7, atol=1e-9 * np.max(np.abs(ref)), err_msg=name)
    # the paths do move with the densities: without scattering the gradient differs
    straight, _, _ = _voxel_scene(ndim, scattering=False)
    g0 = np.asarray(jax.grad(lambda r: jnp.sum(jnp.log(ppl_bmc.expected_counts(
        straight, r, dets, method=BMC(jax.random.key(3), n_particles=64)))))(rho))
    assert np.max(np.abs(g0 - ref)) > 1e-4 * np.max(np.abs(ref))


@pytest.mark.slow  # ~40 s
def test_the_gradient_with_scattering_is_the_derivative_of_the_expectation(x64):
    # Each deflection's width depends on the density where its step ends, and that density jumps
    # at voxel faces: a path whose step end crosses a face when the densities change is a jump the
    # pathwise gradient does not see.  Such terms are second order in the deflection widths; this
    # checks they are below the Monte-Carlo noise: over independent keys, the replay gradient along
    # a direction v and the central difference of the same estimator (common random numbers,
    # h = 3 % of the densities, which includes every jump in between) agree in mean within 4
    # standard errors.  Low energies (k_max 30 GeV) make the deflections wide.  The comparison
    # resolves a few per cent: a gradient 10 % too large fails it.  Measured: gradient 2.732,
    # difference 2.737, their gap -0.005 ± 0.008; without scattering the gap is -0.003 ± 0.0001
    # (the central difference's own O(h²) curvature), so no boundary term shows above 0.3 %.
    grid = VoxelGrid((-30.0, 0.0), (30.0, 30.0), (6, 3))
    scene = Scene(grid, step_m=2.0, scattering=True, k_max=30.0)
    dets = [Detector((-10.0, 0.0), np.linspace(-40, 40, 5), exposure_s=86400.0)]
    rho = jnp.asarray(np.random.default_rng(2).uniform(1500.0, 2800.0, grid.shape))
    v = jnp.asarray(np.random.default_rng(3).normal(size=grid.shape))
    h = 0.03 * 2000.0

    @jax.jit
    def pair(key):
        f = lambda r: jnp.sum(ppl_bmc.expected_counts(scene, r, dets, method=BMC(key, n_particles=2000)))
        g = jnp.vdot(jax.grad(f)(rho), v)
        return g, (f(rho + h * v) - f(rho - h * v)) / (2 * h)

    out = np.array([pair(jax.random.key(i)) for i in range(12)])
    diff = out[:, 0] - out[:, 1]
    se = diff.std(ddof=1) / math.sqrt(len(diff))
    assert abs(diff.mean()) < 4 * se, (out.mean(0), se)
    assert abs(diff.mean()) < 0.05 * abs(out[:, 1].mean())
    wrong = 1.1 * out[:, 0] - out[:, 1]
    assert abs(wrong.mean()) > 4 * wrong.std(ddof=1) / math.sqrt(len(wrong)), (wrong.mean(), out.mean(0))


@pytest.mark.slow  # ~25 s; the slab's Highland check stays in the fast suite
def test_field_deflections_follow_highland():
    # A 3-D block of standard rock crossed vertically by muons of one detector-side energy: the two
    # projections of the exit direction against the start direction each have the Highland width
    # θ0 = 13.6 MeV/(βcp)·√(x/X0)·(1 + 0.038 ln(x/X0)) (PDG, accurate to ~11 %; X0 = 26.54 g/cm²
    # for standard rock), p at the mean of the two ends.  Tolerance 20 % as for the slab.
    k0, height = 30.0, 10.0
    block = VoxelGrid((-200.0, -200.0, 0.0), (200.0, 200.0, height), (1, 1, 1))
    det = Detector((0.0, 0.0, 0.0), [0.0, 2.0], [0.0, 360.0])
    path = FieldPath(block, 1.0)
    kernel = MuonKernel(path, ROCK, flux.gccly, k0 * (1 + 1e-6), scattering=True)
    ctx = _ctx(det, jnp.float32)
    ctx["k_min"] = jnp.full_like(ctx["k_min"], k0)
    rho = jnp.full((1, 1, 1), ROCK.density, jnp.float32)
    streams = loop.Streams(jax.random.key(0), 1, 20_000)
    start, _ = loop.init(kernel, rho, ctx, streams, jnp.float32)
    state, log_w = loop.run(kernel, rho, ctx, streams, 50, jnp.float32)
    alive = np.isfinite(np.asarray(log_w[0]))
    d0, d1 = np.asarray(start.direction[0])[alive], np.asarray(state.direction[0])[alive]
    e1 = np.cross(d0, [1.0, 0.0, 0.0])
    e1 /= np.linalg.norm(e1, axis=-1, keepdims=True)
    e2 = np.cross(d0, e1)
    along = np.sum(d1 * d0, axis=-1)
    proj = [np.arctan2(np.sum(d1 * e, axis=-1), along) for e in (e1, e2)]
    k_sky = float(np.mean(np.asarray(state.energy.kinetic_energy[0])[alive]))
    k_mean = 0.5 * (k0 + k_sky)
    p = math.sqrt(k_mean * (k_mean + 2 * MUON_MASS))
    x = ROCK.density * height / 10 / 26.54  # g/cm² over X0
    highland = 0.0136 / p * math.sqrt(x) * (1 + 0.038 * math.log(x))
    assert alive.mean() > 0.99
    for angle in proj:
        assert abs(np.std(angle) / highland - 1) < 0.2, (np.std(angle), highland)
    # and the check can fail: without scattering the directions do not move
    plain = MuonKernel(path, ROCK, flux.gccly, k0 * (1 + 1e-6))
    still, _ = loop.run(plain, rho, ctx, streams, 50, jnp.float32)
    assert np.max(np.abs(np.asarray(still.direction) - np.asarray(start.direction))) == 0


@pytest.mark.slow  # ~30 s
def test_a_layer_with_scattering_agrees_with_the_slab_with_scattering():
    # A wide horizontal layer seen vertically is the slab's geometry: with scattering on both, their
    # BMC fluxes agree within their Monte-Carlo errors (the two walk differently: the slab's steps
    # cross equal grammage along its axis, the field's have equal length).  Through a laterally
    # uniform layer scattering itself moves the flux by < 0.1 % (path lengthening only), but the
    # comparison resolves 1 %: a slab 1 % thicker fails it.
    thickness, n_particles = 30.0, 50_000
    layer = Layers((-2000.0,), (2000.0,), z_edges=[0.0, thickness])
    rho = jnp.full(1, ROCK.density)
    one = lambda v: jnp.asarray(np.asarray(v, dtype=float)[None])
    fctx = {"origin": one(np.zeros(2)), "lo": one([0.0]), "hi": one([0.0]), "omega": one(1.0), "k_min": one(1e-2),
            "frame": one(np.eye(2)), "tent": one(0.0)}
    sctx = {"zenith": one(0.0), "k_min": one(1e-2)}
    opacity = ROCK.density * thickness / MWE

    def weights(kernel, params, ctx, n_steps, key):
        state, log_w = loop.run(kernel, params, ctx, loop.Streams(key, 1, n_particles), n_steps, jnp.float32)
        w = np.exp(np.asarray(log_w[0], np.float64))
        return w.mean(), w.std() / math.sqrt(w.size)

    n = 24
    field = weights(MuonKernel(FieldPath(layer, thickness / n), ROCK, flux.gccly, 1e6, scattering=True),
                    rho, fctx, n + 8, jax.random.key(1))
    slab = weights(MuonKernel(LineOfSight(n), ROCK, flux.gccly, 1e6, scattering=True),
                   jnp.asarray(opacity), sctx, n, jax.random.key(2))
    thicker = weights(MuonKernel(LineOfSight(n), ROCK, flux.gccly, 1e6, scattering=True),
                      jnp.asarray(1.01 * opacity), sctx, n, jax.random.key(2))
    assert abs(field[0] - slab[0]) < 4 * math.hypot(field[1], slab[1]), (field, slab)
    assert abs(field[0] - thicker[0]) > 4 * math.hypot(field[1], thicker[1]), (field, thicker)


def test_the_quadrature_refuses_a_scattering_scene():
    scene, rho, dets = _voxel_scene(2)
    counts = ppl_bmc.expected_counts(scene, rho, dets, method=BMC(jax.random.key(0), n_particles=16))
    assert counts.shape == (1, 2) and bool(jnp.all(jnp.isfinite(counts) & (counts > 0)))  # BMC takes it
    with pytest.raises(ValueError, match="scattering=True needs method='bmc'"):
        ppl_bmc.expected_counts(scene, rho, dets, method="quadrature")
    with pytest.raises(ValueError, match="scattering must be True or False"):
        Scene(scene.field, scattering="yes")
    with pytest.raises(ValueError, match=r"FieldPath\(n_steps=None\)"):
        MuonKernel(FieldPath(scene.field, 5.0, n_steps=4), ROCK, flux.gccly, 1e4, scattering=True)


def _fermi_eyges_blur(rock, thickness_m, void_m, height_m, k):
    """Weights (per ln K at the detector, of what a void of ``void_m`` of rock less adds) and the
    angular blur (rad) of the void's shadow for each detector-side energy K (GeV): the lateral
    spread of a backward walk at the void's height L, σ_y² = ∫₀^L (L − s)² ρ ds/λ(K(s)) (the
    Fermi-Eyges small-angle variance with PUMAS's transport path λ, along the CSDA energies K(s)),
    seen from the detector, σ_y/L.  Independent of the transport kernel: tables and the sky flux."""
    rho = rock.density
    s_k = np.asarray(rock.stopping_power(k))

    def integrand(grammage):  # flux per ln K behind a straight vertical line (CSDA, no decay)
        k_sky = np.asarray(rock.kinetic_energy_at_range(np.asarray(rock.csda_range(k)) + grammage))
        return k * np.asarray(flux.gccly(k_sky, 1.0)) * np.asarray(rock.stopping_power(k_sky)) / s_k

    w = integrand(rho * (thickness_m - void_m)) - integrand(rho * thickness_m)
    s = np.linspace(0.0, height_m, 200)
    ks = np.asarray(rock.kinetic_energy_at_range(np.asarray(rock.csda_range(k))[:, None] + rho * s[None, :]))
    var = np.trapezoid((height_m - s) ** 2 * rho / np.asarray(rock.transport_path(ks)), s, axis=1)
    return w / w.sum(), np.sqrt(var) / height_m


@pytest.mark.slow  # ~30 s on 2 cores (96 000 scattered walks of ~40 steps, twice)
def test_the_shadow_of_a_small_void_is_blurred_by_the_expected_angular_width():
    # 12 m of rock over a detector, a 1.5 m × 2 m void 6-8 m up.  Without scattering its shadow
    # (the excess of counts over the full block, per 0.5° bin) has sharp edges; with scattering
    # the edges blur.  Expected: the straight shadow convolved with the Fermi-Eyges blur of each
    # detector-side energy, weighted by what the void adds at that energy (computed from the
    # tables alone).  Measured (20 000 particles per bin, 100 bins): rms gap 0.0015 to the
    # expectation against 0.017 for the unblurred shadow; here the scattered shadow must be 4×
    # closer to the expected blur than to the sharp shadow, and to blurs of half or twice the
    # expected width (the check fails on a wrong width).
    grid = VoxelGrid((-20.0, 0.0), (20.0, 12.0), (24, 80))  # 0.5 m voxels
    xc, zc = grid.centres(0), grid.centres(1)
    void = (np.abs(xc[None, :]) < 0.75) & (np.abs(zc[:, None] - 7.0) < 1.0)
    full, hole = jnp.full(grid.shape, 2650.0), jnp.asarray(np.where(void, 0.0, 2650.0))
    edges = np.linspace(-12.0, 12.0, 49)
    det = [Detector((0.0, 0.0), edges, exposure_s=1.0)]
    shadow = {}
    for scattering in (False, True):
        scene = Scene(grid, step_m=0.5, scattering=scattering, k_max=1e4)
        method = BMC(jax.random.key(0), n_particles=2000)  # the same key: the ratio is smooth
        shadow[scattering] = (np.asarray(ppl_bmc.expected_counts(scene, hole, det, method=method))[0]
                              / np.asarray(ppl_bmc.expected_counts(scene, full, det, method=method))[0] - 1)
    k = np.geomspace(1e-3, 1e4, 800)
    w, blur = _fermi_eyges_blur(ROCK, 12.0, 2.0, 7.0, k)
    centres = np.radians(0.5 * (edges[1:] + edges[:-1]))

    def blurred(factor):
        out = np.zeros_like(shadow[False])
        for wi, si in zip(w, factor * blur):
            kernel = np.exp(-0.5 * ((centres[:, None] - centres[None, :]) / max(si, 1e-5)) ** 2)
            out += wi * (kernel / kernel.sum(1, keepdims=True)) @ shadow[False]
        return out

    rms = lambda a: float(np.sqrt(np.mean((shadow[True] - a) ** 2)))
    expected = rms(blurred(1.0))
    assert 4 * expected < rms(shadow[False]), (expected, rms(shadow[False]))
    for wrong in (0.5, 2.0):
        assert 2 * expected < rms(blurred(wrong)), (wrong, expected, rms(blurred(wrong)))
