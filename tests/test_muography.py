"""transmitted_flux: BMC through a slab against the quadrature, its adjoints, decay, scattering, bad input."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ppl_bmc import AutodiffAdjoint, ForwardSensitivity, ReplayAdjoint, muography


def replicates(opacity, zenith, n_rep=16, n_particles=20_000, adjoint=ReplayAdjoint()):
    """Values and d/d opacity of independent BMC estimates (for a computed standard error)."""
    fn = lambda x, k: muography.transmitted_flux(x, zenith, method="bmc", key=k, n_particles=n_particles, adjoint=adjoint)
    vg = [jax.value_and_grad(fn)(jnp.asarray(opacity), jax.random.key(100 + i)) for i in range(n_rep)]
    return np.array([float(v) for v, _ in vg]), np.array([float(g) for _, g in vg])


@pytest.mark.parametrize("zenith", [0.0, 30.0, 60.0])
@pytest.mark.parametrize("opacity", [1.0, 30.0, 300.0, 3000.0])
def test_bmc_agrees_with_quadrature_within_4_standard_errors(opacity, zenith):
    values, grads = replicates(opacity, zenith)
    n = len(values)
    q, dq = jax.value_and_grad(lambda x: muography.transmitted_flux(x, zenith))(jnp.asarray(opacity))
    se = values.std(ddof=1) / math.sqrt(n)
    assert abs(values.mean() - float(q)) < 4 * se, (values.mean(), float(q), se)
    se_g = grads.std(ddof=1) / math.sqrt(n)
    assert abs(grads.mean() - float(dq)) < 4 * se_g, (grads.mean(), float(dq), se_g)


@pytest.mark.parametrize("adjoint", [AutodiffAdjoint(), ForwardSensitivity()])
def test_each_adjoint_gradient_agrees_with_the_quadrature(adjoint):
    _, grads = replicates(100.0, 30.0, n_rep=8, adjoint=adjoint)
    dq = float(jax.grad(lambda x: muography.transmitted_flux(x, 30.0))(100.0))
    se = grads.std(ddof=1) / math.sqrt(len(grads))
    assert abs(grads.mean() - dq) < 4 * se


def test_slab_adjoints_agree_in_float64(x64):
    # the energy path depends on the opacity: ReplayAdjoint walks backward with the inverse step
    fn = lambda a: (lambda x: muography.transmitted_flux(x, 20.0, method="bmc", key=jax.random.key(3),
                                                         n_particles=3000, n_steps=8, adjoint=a))
    ref = float(jax.grad(fn(AutodiffAdjoint()))(200.0))
    for adjoint in (ForwardSensitivity(), ReplayAdjoint()):
        assert abs(float(jax.grad(fn(adjoint))(200.0)) / ref - 1) < 1e-9


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        ((-1.0, 0.0), {}, r"opacity_mwe must be >= 0"),
        ((10.0, 90.0), {}, r"zenith_deg must be in \[0, 90\)"),
        ((10.0, -5.0), {}, r"zenith_deg must be in \[0, 90\)"),
        ((10.0, 0.0), dict(k_min=0.0), r"k_min < k_max"),
        ((10.0, 0.0), dict(k_min=10.0, k_max=1.0), r"k_min < k_max"),
        ((10.0, 0.0), dict(material="cheese"), r"material must be a ppl_bmc.materials.Material or one of concrete, dry_air"),
        ((10.0, 0.0), dict(method="mc"), r"method must be 'bmc', 'quadrature'"),
        ((10.0, 0.0), dict(method="bmc"), r"key must be a JAX PRNG key"),
        ((float("nan"), 0.0), {}, r"opacity_mwe must be finite"),
    ],
)
def test_bad_input(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        muography.transmitted_flux(*args, **kwargs)


def test_decay_weight_matters_in_air_and_not_in_rock():
    # 1 m.w.e. of dry air is 830 m: low-energy muons decay on the way; in rock the path is 0.38 m.
    air = [float(muography.transmitted_flux(1.0, 0.0, material="dry_air", decay=d)) for d in (True, False)]
    rock = [float(muography.transmitted_flux(1.0, 0.0, material="standard_rock", decay=d)) for d in (True, False)]
    assert air[0] < 0.9 * air[1]
    assert abs(rock[0] / rock[1] - 1) < 1e-3
    # BMC carries the same decay weight
    bmc = float(muography.transmitted_flux(1.0, 0.0, material="dry_air", method="bmc", key=jax.random.key(0),
                                           n_particles=200_000))
    assert abs(bmc / air[0] - 1) < 0.02


def test_scattering_adjoints_agree_and_match_finite_differences(x64):
    # with scattering the path moves with the opacity; each step is inverted exactly
    fn = lambda a: (lambda x: muography.transmitted_flux(x, 30.0, method="bmc", key=jax.random.key(3), n_particles=2000,
                                                         n_steps=16, scattering=True, adjoint=a))
    ref = float(jax.grad(fn(AutodiffAdjoint()))(300.0))
    for adjoint in (ForwardSensitivity(), ReplayAdjoint()):
        assert abs(float(jax.grad(fn(adjoint))(300.0)) / ref - 1) < 1e-9
    h = 1e-4  # the fixed-key estimator is smooth in the opacity
    fd = (float(fn(AutodiffAdjoint())(300.0 + h)) - float(fn(AutodiffAdjoint())(300.0 - h))) / (2 * h)
    assert abs(fd / ref - 1) < 1e-6


def test_scattering_barely_changes_the_integrated_flux():
    # penetrating muons are energetic: deflections of mrad lengthen paths by ~1e-6
    runs = {s: np.array([float(muography.transmitted_flux(300.0, 30.0, method="bmc", key=jax.random.key(i),
                                                          n_particles=20_000, n_steps=16, scattering=s))
                         for i in range(6)]) for s in (False, True)}
    diff = runs[True] - runs[False]  # same keys: the estimates are strongly correlated
    assert abs(diff.mean()) < 4 * diff.std(ddof=1) / math.sqrt(len(diff)) + 1e-3 * runs[False].mean()
    with pytest.raises(ValueError, match="scattering=True needs method='bmc'"):
        muography.transmitted_flux(300.0, 30.0, scattering=True)
