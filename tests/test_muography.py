"""transmitted_flux: BMC through a slab against the quadrature, its adjoints, decay, scattering, bad input."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ppl_bmc import BMC, AutodiffAdjoint, ForwardSensitivity, LineOfSightEnergy, LogUniformEnergy, ReplayAdjoint, muography
from ppl_bmc.physics import materials
from ppl_bmc.physics.constants import MWE
from ppl_bmc.physics.flux import gccly
from ppl_bmc.transport.csda import straight_line_flux


def replicates(opacity, zenith, n_rep=16, n_particles=2000, adjoint=ReplayAdjoint(), energy=LineOfSightEnergy()):
    """Values and d/d opacity of independent BMC estimates (for a computed standard error)."""
    fn = lambda x, k: muography.transmitted_flux(x, zenith, method=BMC(k, n_particles, adjoint=adjoint, energy=energy))
    vg = [jax.value_and_grad(fn)(jnp.asarray(opacity), jax.random.key(100 + i)) for i in range(n_rep)]
    return np.array([float(v) for v, _ in vg]), np.array([float(g) for _, g in vg])


@functools.partial(jax.jit, static_argnames="n_nodes")
def _straight_line(opacity, cos_zenith, k_min, n_nodes):
    # k_min an argument: XLA would otherwise constant-fold the node set-up, slowly
    mat = materials.get("standard_rock", "material")
    f = lambda x: straight_line_flux(mat, gccly, MWE * x, None, cos_zenith, k_min, 1e6, decay=True, n_nodes=n_nodes)
    return jax.value_and_grad(f)(opacity)


def reference(opacity, zenith):
    """The straight-line CSDA flux and its derivative on 2048 energy nodes, with the change from
    1024 nodes as the reference's own error (an over-estimate: the error falls as 1/n²).  512
    nodes, the quadrature's default, leave 4e-4 of relative error in the derivative at 1 m.w.e.;
    the estimators below are sharper than that."""
    args = tuple(jnp.asarray(v, jnp.float64) for v in (opacity, math.cos(math.radians(zenith)), 1e-3))
    (v0, g0), (v1, g1) = (map(float, _straight_line(*args, n_nodes=n)) for n in (1024, 2048))
    return v1, g1, abs(v1 - v0), abs(g1 - g0)


def unbiased(values, ref, ref_err):
    """|mean − ref| within 4 standard errors (over the replicas, and the reference's own error)."""
    se = values.std(ddof=1) / math.sqrt(len(values))
    return abs(values.mean() - ref) < 4 * math.hypot(se, ref_err), (values.mean(), ref, se, ref_err)


@pytest.mark.parametrize("zenith", [0.0, 30.0, 60.0])
@pytest.mark.parametrize("opacity", [1.0, 30.0, 300.0, 3000.0])
def test_bmc_is_unbiased_against_the_quadrature(opacity, zenith, x64):
    # float64: the default estimator's standard error (~1e-5 relative) is near float32 rounding
    values, grads = replicates(opacity, zenith)
    q, dq, q_err, dq_err = reference(opacity, zenith)
    ok, info = unbiased(values, q, q_err)
    assert ok, info
    assert values.std(ddof=1) < 1e-3 * q  # and the comparison is sharp
    ok, info = unbiased(grads, dq, dq_err)
    assert ok, info


class SkewedEnergy(LineOfSightEnergy):
    """A deliberately wrong proposal: energies drawn from a distorted q, weighted by q's own 1/q."""

    def sample(self, u, *args, **kwargs):
        return super().sample(u ** 1.02, *args, **kwargs)


@pytest.mark.parametrize("opacity", [30.0, 3000.0])
def test_a_biased_proposal_fails_the_unbiasedness_check(opacity, x64):
    values, _ = replicates(opacity, 30.0, energy=SkewedEnergy())
    q, _, q_err, _ = reference(opacity, 30.0)
    assert not unbiased(values, q, q_err)[0]


def test_importance_sampling_and_strata_shrink_the_error_by_orders_of_magnitude():
    # per-estimate relative sd at 300 m.w.e., 30°, 1000 particles: plain (log-uniform, i.i.d.) ≈ 4e-2;
    # line-of-sight energies ≈ 5e-3; with Latin-hypercube strata ≈ 1e-4 (measured 2026-12-02)
    def rel_sd(energy, stratified):
        v = [float(muography.transmitted_flux(300.0, 30.0, method=BMC(jax.random.key(i), 1000, energy=energy,
                                                                      stratified=stratified))) for i in range(12)]
        return np.std(v, ddof=1) / np.mean(v)

    plain = rel_sd(LogUniformEnergy(), False)
    importance = rel_sd(LineOfSightEnergy(), False)
    both = rel_sd(LineOfSightEnergy(), True)
    assert importance < plain / 4 and both < importance / 10, (plain, importance, both)


@pytest.mark.parametrize("adjoint", [AutodiffAdjoint(), ForwardSensitivity()])
def test_each_adjoint_gradient_agrees_with_the_quadrature(adjoint, x64):
    _, grads = replicates(100.0, 30.0, n_rep=8, adjoint=adjoint)
    _, dq, _, dq_err = reference(100.0, 30.0)
    ok, info = unbiased(grads, dq, dq_err)
    assert ok, info


@pytest.mark.slow  # ~17 s cold (the fast suite's budget); the fast suite keeps the step's exact inverse
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


@pytest.mark.slow  # ~24 s cold
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
