"""The NumPyro glue: GMRF priors, the counts site, priors independent of NumPyro's default initialisation."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl_bmc
from ppl_bmc import nppl
from ppl_bmc.detectors import Detector


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
