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


# --- a survey's nuisances -------------------------------------------------------------------

def _survey():
    from ppl_bmc import Scene, Telescope
    from ppl_bmc.geometry import Layers

    tels = tuple(Telescope((0.0, 0.0, 0.0), az, 50.0, n_pixels=3, pixel_m=0.2, separation_m=1.0, exposure_s=2e6,
                           efficiency=0.9) for az in (0.0, 180.0))
    opens = tuple(Telescope((0.0, 0.0, 200.0), az, 60.0, n_pixels=3, pixel_m=0.2, separation_m=1.0, exposure_s=2e5,
                            efficiency=0.9) for az in (0.0, 180.0))
    scene = Scene(Layers((-2000.0, -2000.0), (2000.0, 2000.0), z_edges=[0.0, 200.0]))
    return scene, jnp.full(1, 2650.0), tels, opens


def test_tilt_interpolation_against_the_tilted_flux():
    import dataclasses

    from ppl_bmc.physics.flux import Tilted

    scene, rho, tels, _ = _survey()
    sy = nppl.Systematics(tilt=dist_normal(0.0, 0.05))
    base = ppl_bmc.expected_counts(scene, rho, tels, method="quadrature")
    # between the interpolation nodes (±tilt_step = ±0.05, where it is exact by construction); one
    # tilt in the fast suite (each direct tilted flux is tabulated anew, ~10 s)
    for tilt in (-0.03,):
        direct = ppl_bmc.expected_counts(dataclasses.replace(scene, sky=Tilted(scene.sky, tilt)), rho, tels,
                                         method="quadrature")
        interp = nppl._with_tilt(scene, rho, tels, sy, tilt, dict(method="quadrature"))
        # the tilt moves the counts by up to 3–9 %; the quadratic interpolation in log is good to 1e-5
        assert float(jnp.max(jnp.abs(direct / base - 1))) > 0.02
        np.testing.assert_allclose(np.asarray(interp), np.asarray(direct), rtol=1e-5)


def dist_normal(loc, scale):
    import numpyro.distributions as dist

    return dist.Normal(loc, scale)


def test_survey_counts_formula():
    import numpyro
    import numpyro.distributions as dist

    scene, rho, tels, opens = _survey()
    sy = nppl.Systematics(background=dist.LogNormal(0.0, 1.0), efficiency=dist.Uniform(0.5, 1.2),
                          sky_norm=dist.Normal(1.0, 0.05), density_bias=dist.Normal(0.0, 100.0))
    values = {"background": jnp.array([0.3, 0.05]), "efficiency": jnp.array([0.8, 1.1]), "sky_norm": 1.04,
              "density_bias": -120.0}
    model = lambda: nppl.survey_counts(scene, rho, tels, sy, open_sky=opens)
    out = numpyro.handlers.substitute(numpyro.handlers.seed(model, 0), data=values)()
    geo = nppl.geometric_factor(tels)
    signal = np.asarray(ppl_bmc.expected_counts(scene, rho - 120.0, tels, method="quadrature"))
    want = np.array([0.8, 1.1])[:, None] * (1.04 * signal + np.array([0.3, 0.05])[:, None] * geo)
    np.testing.assert_allclose(np.asarray(out["counts"]), want, rtol=1e-5)
    sky = np.asarray(ppl_bmc.expected_counts(scene, jnp.zeros(1), opens, method="quadrature"))
    want_open = np.array([0.8, 1.1])[:, None] * (1.04 * sky + np.array([0.3, 0.05])[:, None]
                                                 * nppl.geometric_factor(opens))
    np.testing.assert_allclose(np.asarray(out["open_sky_counts"]), want_open, rtol=1e-5)
    # the geometric factor: exposure × efficiency × acceptance (m² s sr)
    np.testing.assert_allclose(geo[0], 2e6 * 0.9 * tels[0].acceptance())
    # no systematics: the plain counts site
    tr = numpyro.handlers.trace(numpyro.handlers.seed(lambda: nppl.survey_counts(scene, rho, tels), 0)).get_trace()
    assert {k for k, v in tr.items() if v["type"] == "sample"} == {"counts"}
    np.testing.assert_allclose(np.asarray(tr["counts"]["fn"].rate),
                               np.asarray(ppl_bmc.expected_counts(scene, rho, tels, method="quadrature")), rtol=1e-6)
    with pytest.raises(ValueError, match="open_sky must have one"):
        numpyro.handlers.seed(lambda: nppl.survey_counts(scene, rho, tels, sy, open_sky=opens[:1]), 0)()
    with pytest.raises(ValueError, match="background must be a numpyro Distribution"):
        nppl.Systematics(background=0.3)


def _fit_nuisances(data, sy, seed):
    from ppl_bmc import infer

    scene, rho, tels, opens = _survey()
    model = lambda counts=None, open_sky_counts=None: nppl.survey_counts(
        scene, rho, tels, sy, observed=counts, open_sky=opens, open_observed=open_sky_counts)
    mcmc = infer.run_nuts(model, rng_key=jax.random.key(seed), num_warmup=300, num_samples=400, num_chains=1,
                          counts=data["counts"], open_sky_counts=data["open_sky_counts"])
    return mcmc.get_samples()


def test_background_and_efficiency_are_recovered():
    # data with a background floor of 0.02 m⁻² s⁻¹ sr⁻¹ (≈ the flux behind 200 m of rock at 40°
    # from the zenith: the deep lines of sight are mostly background) and efficiencies 0.85 / 1.05
    import numpyro
    import numpyro.distributions as dist

    scene, rho, tels, opens = _survey()
    truth = {"background": jnp.array([0.02, 0.005]), "efficiency": jnp.array([0.85, 1.05]), "sky_norm": 0.97}
    sy = nppl.Systematics(background=dist.LogNormal(math.log(0.01), 1.5), efficiency=dist.Uniform(0.5, 1.5),
                          sky_norm=dist.Normal(1.0, 0.05))
    gen = lambda: nppl.survey_counts(scene, rho, tels, sy, open_sky=opens)
    tr = numpyro.handlers.trace(numpyro.handlers.substitute(numpyro.handlers.seed(gen, 3), data=truth)).get_trace()
    data = {k: np.asarray(tr[k]["value"]) for k in ("counts", "open_sky_counts")}
    post = _fit_nuisances(data, sy, 4)
    for name in ("background", "efficiency", "sky_norm"):
        lo, hi = np.quantile(np.asarray(post[name]), [0.03, 0.97], axis=0)
        t = np.asarray(truth[name])
        assert np.all((lo <= t) & (t <= hi)), (name, lo, hi, t)
    # the same check on a model without the background: the lines of sight through the most
    # rock carry up to 1.6× the transmitted counts, which no efficiency (pinned by the open-sky
    # run) explains — the Poisson deviance at the posterior median is far above its degrees of
    # freedom, while the true model's is consistent with them
    wrong = nppl.Systematics(efficiency=dist.Uniform(0.5, 1.5), sky_norm=dist.Normal(1.0, 0.05))
    post_w = _fit_nuisances(data, wrong, 5)
    dof = data["counts"].size
    for sy_, post_, ok in ((sy, post, True), (wrong, post_w, False)):
        med = {k: jnp.median(v, axis=0) for k, v in post_.items() if k not in ("counts", "open_sky_counts")}
        mu = np.asarray(numpyro.handlers.substitute(numpyro.handlers.seed(
            lambda: nppl.survey_counts(scene, rho, tels, sy_, open_sky=opens), 0), data=med)()["counts"])
        n = data["counts"]
        dev = 2 * np.sum(np.where(n > 0, n * np.log(np.where(n > 0, n, 1) / mu), 0.0) - (n - mu))
        assert (dev < dof + 5 * math.sqrt(2 * dof)) == ok, (dev, dof)


def test_fraction_priors_on_a_composition_give_finite_gradients_and_tell_water_from_air():
    # A rock block with a void filled with water (fraction of rock 0) or air (by volume: rock and
    # water, or rock and dry air).  With the fractions under nppl.fraction_prior, the BMC model's
    # potential and its gradient are finite at 32 prior draws, and Poisson data from the
    # water-filled void prefer water over air (and the reverse): the likelihood sees the material.
    from numpyro.infer import Predictive
    from numpyro.infer.util import potential_energy

    from ppl_bmc import BMC, Scene
    from ppl_bmc.geometry import Composition, VoxelGrid

    grid = VoxelGrid((-40.0, 0.0), (40.0, 60.0), (3, 4))
    det = [Detector((0.0, 0.0), np.linspace(-40, 40, 9), exposure_s=3e5)]
    water = Scene(Composition(("standard_rock", "water"), grid), step_m=6.0)
    air = Scene(Composition(("standard_rock", "dry_air"), grid), step_m=6.0)
    model = nppl.field_model(water, det, lambda: (nppl.fraction_prior((3, 4), mean_fraction=0.8)(),), method="bmc",
                             key=jax.random.key(0), n_particles=64)
    draws = Predictive(model, num_samples=32)(jax.random.key(1))
    counts = np.asarray(draws["counts"][0])
    energy = jax.jit(jax.value_and_grad(lambda z: potential_energy(model, (), {"counts": counts}, z)))
    for i in range(32):
        value, grad = energy({"fraction_logit_white": draws["fraction_logit_white"][i]})
        assert np.isfinite(float(value)) and np.all(np.isfinite(np.asarray(grad["fraction_logit_white"]))), i
    void = np.ones((3, 4))
    void[1:3, 1] = 0.0  # two voxels of the void above the detector
    method = BMC(jax.random.key(2), n_particles=1024)
    rate = {name: np.asarray(ppl_bmc.expected_counts(s, (jnp.asarray(void),), det, method=method))
            for name, s in (("water", water), ("air", air))}
    rng = np.random.default_rng(3)
    for truth, other in (("water", "air"), ("air", "water")):
        data = rng.poisson(rate[truth])
        loglik = lambda mu: float(np.sum(data * np.log(mu) - mu))
        assert loglik(rate[truth]) > loglik(rate[other]) + 10, (truth, rate)
