"""The three gradient strategies agree with each other and with finite differences."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ppl_bmc import AutodiffAdjoint, ForwardSensitivity, ReplayAdjoint, toy
from ppl_bmc.transport import ToyKernel

STRATEGIES = {
    "forward_sensitivity": ForwardSensitivity(),
    "replay_forward": ReplayAdjoint("forward"),
    "replay_inverse": ReplayAdjoint("inverse"),
    "replay_auto": ReplayAdjoint(),
}
NODE = (0.3, 4.2, 8.5)


def jacobian(adjoint, n_steps, key=jax.random.key(11), n_particles=2000, node=NODE):
    fn = lambda n: toy.flux(n, toy.PAPER_THETAS, key=key, n_particles=n_particles, n_steps=n_steps, adjoint=adjoint)
    return np.asarray(jax.jacrev(fn)(jnp.asarray(node)))


@pytest.mark.parametrize("n_steps", [2, 16])
@pytest.mark.parametrize("name", list(STRATEGIES))
def test_adjoints_agree_in_float64(x64, name, n_steps):
    ref = jacobian(AutodiffAdjoint(), n_steps)
    got = jacobian(STRATEGIES[name], n_steps)
    rel = np.max(np.abs(got - ref)) / np.max(np.abs(ref))
    assert rel < 1e-8, f"{name}: max relative difference {rel:.2e}"


@pytest.mark.parametrize("n_steps", [2, 16])
def test_autodiff_matches_central_finite_differences(x64, n_steps):
    # With the key fixed the estimator is a smooth function of node; central differences
    # with h = 1e-5 have truncation error O(h²) ~ 1e-10 relative and rounding ~1e-11.
    key = jax.random.key(4)
    ref = jacobian(AutodiffAdjoint(), n_steps, key=key)
    h = 1e-5
    fd = np.zeros_like(ref)
    for j in range(3):
        e = np.zeros(3)
        e[j] = h
        plus = toy.flux(np.add(NODE, e), toy.PAPER_THETAS, key=key, n_particles=2000, n_steps=n_steps)
        minus = toy.flux(np.subtract(NODE, e), toy.PAPER_THETAS, key=key, n_particles=2000, n_steps=n_steps)
        fd[:, j] = (np.asarray(plus) - np.asarray(minus)) / (2 * h)
    rel = np.max(np.abs(fd - ref)) / np.max(np.abs(ref))
    assert rel < 1e-5, f"max relative difference to finite differences {rel:.2e}"


def test_adjoints_agree_in_float32():
    # float32 rounding: the strategies sum the same terms in different orders.
    ref = jacobian(AutodiffAdjoint(), 4)
    for adjoint in STRATEGIES.values():
        np.testing.assert_allclose(jacobian(adjoint, 4), ref, rtol=1e-4, atol=1e-6 * np.abs(ref).max())


def test_gradient_of_a_loss_under_jit(x64):
    obs = jnp.array(toy.PAPER_OBSERVED)

    def loss(node, adjoint):
        f = toy.flux(node, toy.PAPER_THETAS, key=jax.random.key(1), n_particles=500, adjoint=adjoint)
        return -500.0 * jnp.sum((obs - f) ** 2)

    grads = [jax.jit(jax.grad(loss), static_argnums=1)(jnp.asarray(NODE), a) for a in (AutodiffAdjoint(), *STRATEGIES.values())]
    for g in grads[1:]:
        np.testing.assert_allclose(g, grads[0], rtol=1e-9)


def test_forward_replay_refuses_a_parameter_dependent_path():
    from ppl_bmc.adjoint import mean_weight

    with pytest.raises(ValueError, match="replay='inverse'"):
        mean_weight(ToyKernel(path_depends_on_params=True), jnp.asarray(NODE), jnp.zeros(1), jax.random.key(0), n_particles=2, n_steps=2, adjoint=ReplayAdjoint("forward"))


def test_strategies_are_hashable_values():
    assert ReplayAdjoint() == ReplayAdjoint() and hash(ReplayAdjoint()) == hash(ReplayAdjoint())
    assert ForwardSensitivity() != AutodiffAdjoint()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(ctx=jnp.zeros(0)), r"ctx leaves must share a leading axis of at least one reading"),
        (dict(ctx=(jnp.zeros(2), jnp.zeros(3))), r"ctx leaves must share a leading axis"),
        (dict(n_particles=0), r"n_particles must be an integer >= 1"),
        (dict(n_steps=0), r"n_steps must be an integer >= 1"),
        (dict(key=1), r"key must be a JAX PRNG key"),
        (dict(adjoint=None), r"adjoint must be an instance of ppl_bmc.Adjoint"),
    ],
)
def test_mean_weight_rejects_bad_arguments(kwargs, match):
    from ppl_bmc.adjoint import mean_weight

    args = dict(ctx=jnp.zeros(1), key=jax.random.key(0), n_particles=2, n_steps=2, adjoint=ReplayAdjoint())
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        mean_weight(ToyKernel(), jnp.asarray(NODE), args.pop("ctx"), **args)
