"""The paper's toy: flux values, common random numbers, dtypes, trajectories."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ppl_bmc import ReplayAdjoint, toy
from ppl_bmc.transport import ToyKernel, loop


def per_particle_weights(node, thetas, key, n_particles, n_steps=2):
    """The weights whose mean toy.flux returns: (R, P)."""
    streams = loop.Streams(key, len(thetas), n_particles)
    dtype = jnp.result_type(float)
    _, log_w = loop.run(ToyKernel(), jnp.asarray(node, dtype), jnp.asarray(thetas, dtype), streams, n_steps, dtype)
    return np.asarray(jnp.exp(log_w))


def test_flux_matches_paper_within_4_standard_errors():
    key = jax.random.key(2022)
    n = 1_000_000
    f = np.asarray(toy.flux(toy.PAPER_START, toy.PAPER_THETAS, key=key, n_particles=n))
    w = per_particle_weights(toy.PAPER_START, toy.PAPER_THETAS, key, n)
    np.testing.assert_allclose(w.mean(axis=1), f, rtol=1e-5)  # flux is the mean weight
    # The paper's figures are themselves 1e5-particle estimates: their standard error is
    # std(w)/sqrt(1e5), ours std(w)/sqrt(1e6); rounding to 4 decimals adds ±5e-5.
    std = w.std(axis=1, ddof=1)
    se = np.sqrt(std**2 / n + std**2 / 1e5 + (5e-5) ** 2 / 3)
    z = (f - np.array(toy.PAPER_FLUX_AT_START)) / se
    assert np.all(np.abs(z) < 4), f"flux {f}, paper {toy.PAPER_FLUX_AT_START}, z = {z}"


def test_flux_shape_and_default_dtype():
    f = toy.flux(toy.PAPER_START, [0.0, 0.1], key=jax.random.key(0), n_particles=10)
    assert f.shape == (2,) and f.dtype == jnp.float32


def test_flux_is_float64_under_x64(x64):
    f = toy.flux(toy.PAPER_START, [0.0], key=jax.random.key(0), n_particles=10)
    assert f.dtype == jnp.float64


def test_common_random_numbers_bit_identical():
    node = jnp.array([0.3, 4.0, 8.0])
    a = toy.flux(node, toy.PAPER_THETAS, key=jax.random.key(5), n_particles=1000, n_steps=5)
    b = toy.flux(node, toy.PAPER_THETAS, key=jax.random.key(5), n_particles=1000, n_steps=5)
    c = toy.flux(node, toy.PAPER_THETAS, key=jax.random.key(6), n_particles=1000, n_steps=5)
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))
    legacy = toy.flux(node, toy.PAPER_THETAS, key=jax.random.PRNGKey(5), n_particles=1000, n_steps=5)
    assert np.array_equal(np.asarray(a), np.asarray(legacy))


def test_single_step_expectation_matches_quadrature(x64):
    # With one step along θ = 0 the flux is E_L[(ρ(0, L)·A + (1 − ρ)·B)·exp(−0.1 L)],
    # L ~ U(0.8, 1): a 1-D integral we evaluate by Gauss-Legendre quadrature.
    node = np.array([0.5, 3.0, 4.0])
    x, wq = np.polynomial.legendre.leggauss(64)
    length = 0.9 + 0.1 * x
    rho = np.exp(-((0 - node[0]) ** 2 + (length - node[1]) ** 2) / node[2])
    exact = 0.5 * np.sum(wq * (rho * 0.9 + (1 - rho) * 0.01) * np.exp(-0.1 * length))
    n = 400_000
    key = jax.random.key(3)
    f = float(toy.flux(node, [0.0], key=key, n_particles=n, n_steps=1)[0])
    se = per_particle_weights(node, [0.0], key, n, n_steps=1).std(ddof=1) / math.sqrt(n)
    assert abs(f - exact) < 4 * se, (f, exact, se)


def test_trajectories_follow_the_paper_geometry():
    pts = toy.trajectories([0.0, math.pi / 2], key=jax.random.key(1), n_particles=500, n_steps=3)
    assert pts.shape == (2, 500, 4, 2)
    assert np.all(pts[:, :, 0] == 0)
    steps = np.linalg.norm(np.diff(pts, axis=2), axis=-1)
    assert np.all((steps >= 0.8 - 1e-6) & (steps <= 1.0 + 1e-6))  # length 1 − 0.2·U
    # step 1 goes along the rotation of (0, 1) by θ: θ = π/2 points to −x
    np.testing.assert_allclose(pts[0, :, 1, 0], 0, atol=1e-6)
    np.testing.assert_allclose(pts[1, :, 1, 1], 0, atol=1e-6)
    assert np.all(pts[1, :, 1, 0] < 0)
    # later steps turn by at most 0.025·π
    d1, d2 = np.diff(pts, axis=2)[0, :, 0], np.diff(pts, axis=2)[0, :, 1]
    cosang = np.sum(d1 * d2, -1) / np.linalg.norm(d1, axis=-1) / np.linalg.norm(d2, axis=-1)
    assert np.all(np.arccos(np.clip(cosang, -1, 1)) <= 0.025 * math.pi + 1e-4)


def test_flux_is_traceable_inside_jit_and_vmap():
    f = jax.jit(lambda n: toy.flux(n, toy.PAPER_THETAS, key=jax.random.key(0), n_particles=100))
    g = jax.vmap(lambda n: toy.flux(n, toy.PAPER_THETAS, key=jax.random.key(0), n_particles=100))
    nodes = jnp.array([toy.PAPER_START, toy.PAPER_TRUTH])
    np.testing.assert_allclose(g(nodes)[0], f(nodes[0]), rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(node=[0.0, 5.0]), r"node must have shape \(3,\)"),
        (dict(node=[[0.0, 5.0, 10.0]]), r"node must have shape \(3,\)"),
        (dict(node=[0.0, 5.0, 0.0]), r"node\[2\] is σ² and must be > 0"),
        (dict(node=[0.0, 5.0, -1.0]), r"node\[2\] is σ² and must be > 0"),
        (dict(node=[np.nan, 5.0, 10.0]), r"node must be finite"),
        (dict(node="abc"), r"node must be an array of real numbers"),
        (dict(thetas=[]), r"thetas must hold at least one"),
        (dict(thetas=[np.inf]), r"thetas must be finite"),
        (dict(thetas=0.0), r"thetas must have 1 dimension"),
        (dict(n_particles=0), r"n_particles must be an integer >= 1"),
        (dict(n_particles=-5), r"n_particles must be an integer >= 1"),
        (dict(n_particles=10.5), r"n_particles must be an integer >= 1"),
        (dict(n_steps=0), r"n_steps must be an integer >= 1"),
        (dict(key=0), r"key must be a JAX PRNG key"),
        (dict(key=None), r"key must be a JAX PRNG key"),
        (dict(key=jnp.zeros(3)), r"key must be a JAX PRNG key"),
        (dict(key=jax.random.split(jax.random.key(0), 2)), r"key must be a JAX PRNG key.*a single key, shape \(\)"),
        (dict(adjoint="replay"), r"adjoint must be an instance of ppl_bmc.Adjoint"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(kwargs, match):
    args = dict(node=toy.PAPER_START, thetas=toy.PAPER_THETAS, key=jax.random.key(0), n_particles=10)
    args.update(kwargs)
    node, thetas = args.pop("node"), args.pop("thetas")
    with pytest.raises(ValueError, match=match):
        toy.flux(node, thetas, **args)


def test_replay_adjoint_rejects_unknown_mode():
    with pytest.raises(ValueError, match="replay must be"):
        ReplayAdjoint("sideways")
