"""Gravity from density fields: the prism closed form against choclo and a volume quadrature, a
voxelised sphere against GM/d², terrain columns, differentiability, the NumPyro site, bad input."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

from ppl_bmc.geometry import Elevation, HeightMap, VoxelGrid
from ppl_bmc.gravity import G, MGAL, GravitySurvey, prism_gz
from ppl_bmc.nppl import gravity_site

PRISM = np.array([-40.0, 25.0, -10.0, 30.0, -80.0, -35.0])  # a buried prism (m), z up


def _stations(seed, n=12):
    rng = np.random.default_rng(seed)
    return np.stack([rng.uniform(-100, 100, n), rng.uniform(-100, 100, n), rng.uniform(-20, 10, n)], axis=1)


def test_prism_against_choclo():
    choclo = pytest.importorskip("choclo")
    st = _stations(0)
    mine = prism_gz(PRISM[None], st)[:, 0]
    # choclo returns the upward component (m/s²); ours is downward in mGal
    ref = np.array([-choclo.prism.gravity_u(*s, *PRISM, 1.0) for s in st]) / MGAL
    np.testing.assert_allclose(mine, ref, rtol=1e-10, atol=1e-16)


def test_prism_against_a_volume_quadrature():
    # independent: G ∫ (z_s − z)/r³ dV on 24³ Gauss-Legendre nodes (station outside the prism)
    x, w = np.polynomial.legendre.leggauss(24)
    axes = [(0.5 * (hi + lo) + 0.5 * (hi - lo) * x, 0.5 * (hi - lo) * w) for lo, hi in PRISM.reshape(3, 2)]
    (gx, wx), (gy, wy), (gz, wz) = axes
    X, Y, Z = np.meshgrid(gx, gy, gz, indexing="ij")
    W = wx[:, None, None] * wy[None, :, None] * wz[None, None, :]
    for s in _stations(1, 6):
        d = np.stack([X - s[0], Y - s[1], Z - s[2]])
        r = np.sqrt((d ** 2).sum(0))
        want = G * np.sum(W * (s[2] - Z) / r ** 3) / MGAL
        assert prism_gz(PRISM[None], s[None])[0, 0] == pytest.approx(want, rel=1e-8)


def test_buried_prism_from_voxels_equals_the_closed_form(x64):
    # a 3 × 4 × 5 voxel grid of one density is the prism: superposition to rounding
    grid = VoxelGrid((PRISM[0], PRISM[2], PRISM[4]), (PRISM[1], PRISM[3], PRISM[5]), (3, 4, 5))
    st = _stations(2)
    survey = GravitySurvey(grid, st)
    got = np.asarray(survey(jnp.full(grid.shape, 2670.0)))
    np.testing.assert_allclose(got, 2670.0 * prism_gz(PRISM[None], st)[:, 0], rtol=1e-9)


def test_sphere_from_voxels_against_point_mass():
    # a sphere of radius 30 m centred 60 m deep; voxel fractions from 8³ sub-points per voxel;
    # outside it attracts as its mass at the centre: g = G M (z_s − z_c)/d³.  Tolerance 0.5 %
    # (the issue's), the voxel fractions' volume error is ~0.1 %.
    R, c, n, sub = 30.0, np.array([0.0, 0.0, -60.0]), 24, 8
    lo, hi = c - R * 1.05, c + R * 1.05
    f = (np.arange(sub) + 0.5) / sub
    size = (hi - lo) / n
    centres = [lo[a] + size[a] * (np.arange(n)[:, None] + f[None, :]) for a in range(3)]  # (n, sub) per axis
    inside = ((centres[2][:, None, None, :, None, None] - c[2]) ** 2
              + (centres[1][None, :, None, None, :, None] - c[1]) ** 2
              + (centres[0][None, None, :, None, None, :] - c[0]) ** 2) <= R * R
    frac = inside.mean(axis=(3, 4, 5))  # (n_z, n_y, n_x)
    grid = VoxelGrid(tuple(lo), tuple(hi), (n, n, n), scale=frac)
    st = np.array([[0.0, 0.0, 0.0], [40.0, -10.0, 0.0], [100.0, 60.0, 5.0]])
    got = np.asarray(GravitySurvey(grid, st)(jnp.full(grid.shape, 1000.0)))
    mass = 1000.0 * 4 / 3 * math.pi * R ** 3
    d = st - c
    want = G * mass * d[:, 2] / np.linalg.norm(d, axis=1) ** 3 / MGAL
    np.testing.assert_allclose(got, want, rtol=5e-3)
    # a deliberately wrong sphere (radius 31 m) misses the tolerance
    assert np.max(np.abs(got * (31.0 / R) ** 3 / want - 1)) > 5e-3


def test_terrain_columns(x64):
    # a flat plateau 50 m high over 400 × 400 m is one prism; stations on its top
    x = np.linspace(-200.0, 200.0, 9)
    flat = Elevation(x, x, np.full((9, 9), 50.0)).height_map(floor_m=0.0)
    st = np.array([[0.0, 0.0, 50.0], [150.0, -120.0, 50.0], [300.0, 0.0, 20.0]])
    survey = GravitySurvey(flat, st, sub=2)
    assert survey.sensitivity.shape == (3, 1)
    want = 2500.0 * prism_gz(np.array([[-200.0, 200.0, -200.0, 200.0, 0.0, 50.0]]), st)[:, 0]
    np.testing.assert_allclose(np.asarray(survey(jnp.asarray(2500.0))), want, rtol=1e-9)
    # a tilted surface: the column tops converge as 1/sub² (errors measured against sub = 32)
    gx, gy = np.meshgrid(x, x)
    tilt = Elevation(x, x, 60.0 + 0.1 * gx + 0.05 * gy).height_map(floor_m=0.0)
    st2 = np.array([[0.0, 0.0, 70.0], [100.0, 50.0, 90.0]])
    ref = GravitySurvey(tilt, st2, sub=32).sensitivity
    err = [np.max(np.abs(GravitySurvey(tilt, st2, sub=s).sensitivity / ref - 1)) for s in (2, 4, 8)]
    assert err[0] > err[1] > err[2] and err[2] < 1e-3, err
    # a voxel fill under the terrain with the raster's footprint (50 m): the same columns, cut
    # into 3 layers, sum to the uniform terrain's (superposition, to rounding)
    fill = VoxelGrid(tilt.lower, tilt.upper, (3, 8, 8))
    under = HeightMap(tilt.lower, tilt.upper, tilt.knots, tilt.heights, fill)
    sv = GravitySurvey(under, st2, sub=8)
    np.testing.assert_allclose(sv.sensitivity.sum(1), GravitySurvey(tilt, st2, sub=8).sensitivity[:, 0], rtol=1e-9)


def test_gravity_is_linear_and_differentiable(x64):
    grid = VoxelGrid((-50.0, -50.0, -100.0), (50.0, 50.0, -10.0), (2, 3, 3))
    survey = GravitySurvey(grid, _stations(3, 4))
    rho = jnp.asarray(np.random.default_rng(4).uniform(1500, 3000, grid.shape))
    jac = jax.jacobian(survey)(rho)
    np.testing.assert_allclose(np.asarray(jac).reshape(4, -1), survey.sensitivity, rtol=1e-12)


def test_gravity_site_is_a_normal_likelihood():
    pred = jnp.array([0.1, 0.2, 0.3])
    obs = np.array([0.12, 0.18, 0.33])

    def model():
        gravity_site(pred, obs, noise_mgal=0.02)

    tr = numpyro.handlers.trace(numpyro.handlers.seed(model, 0)).get_trace()
    site = tr["gravity"]
    want = dist.Normal(pred, 0.02).log_prob(obs).sum()
    assert float(site["fn"].log_prob(site["value"]).sum()) == pytest.approx(float(want), rel=1e-6)
    with pytest.raises(ValueError, match="noise_mgal"):
        gravity_site(pred, obs, noise_mgal=0.0)
    with pytest.raises(ValueError, match="observed"):
        gravity_site(pred, obs[:2], noise_mgal=0.1)


def test_bad_gravity_input():
    x = np.linspace(-100.0, 100.0, 5)
    hill = Elevation(x, x, np.full((5, 5), 40.0)).height_map(floor_m=0.0)
    with pytest.raises(ValueError, match="inside the terrain"):
        GravitySurvey(hill, [[0.0, 0.0, 10.0]])
    with pytest.raises(ValueError, match="stations"):
        GravitySurvey(hill, [[0.0, 0.0]])
    with pytest.raises(ValueError, match="sub"):
        GravitySurvey(hill, [[0.0, 0.0, 50.0]], sub=0)
    with pytest.raises(ValueError, match="prisms"):
        prism_gz([[1.0, 0.0, 0.0, 1.0, 0.0, 1.0]], [[0.0, 0.0, 5.0]])
    import dataclasses

    with pytest.raises(ValueError, match="free_heights"):
        GravitySurvey(dataclasses.replace(hill, free_heights=True), [[0.0, 0.0, 50.0]])
