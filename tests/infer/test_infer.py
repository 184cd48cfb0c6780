"""ppl_bmc.infer: block sampler and resume, HMC, Laplace, vectorised predictive passes,
ArviZ groups, diagnostics and the Monte-Carlo-noise diagnostic.

Most tests use a conjugate Gaussian model whose posterior is known exactly:
μ ~ N(0, 2²), y_i ~ N(μ, 1) for 5 observations, so μ | y ~ N(Σy / 5.25, 1 / 5.25).
"""

import copy
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

from ppl_bmc import infer

Y = jnp.array([0.5, 1.2, 0.8, 1.6, 0.9])
POST_MEAN = float(Y.sum()) / 5.25
POST_SD = math.sqrt(1 / 5.25)


def gaussian(y=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 2.0))
    numpyro.deterministic("mu2", 2.0 * mu)
    with numpyro.plate("data", 5):
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)


def noisy(y=None, key=None, amp=0.0):
    """The Gaussian model plus a smooth, key-dependent error of the log-likelihood, as a
    simulated likelihood with common random numbers has: ``amp·sin(3 w μ + φ)``."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 2.0))
    w, phi = jax.random.normal(key, (2,))
    numpyro.factor("sim_error", amp * jnp.sin(3.0 * w * mu + phi))
    with numpyro.plate("data", 5):
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)


def exact_draws(shape, seed=0):
    return {"mu": np.random.default_rng(seed).normal(POST_MEAN, POST_SD, shape)}


@pytest.fixture(scope="module")
def blocks():
    """An uninterrupted block run (2 chains, 30 warmup + 40 draws, blocks of 10) with every
    checkpoint it passed through."""
    seen = []
    result = infer.run_mcmc(gaussian, rng_key=jax.random.key(0), num_warmup=30, num_samples=40, num_chains=2,
                            chain_method="sequential", block_size=10, checkpoint=lambda c: seen.append(copy.deepcopy(c)),
                            y=Y)
    return result, seen


def test_run_mcmc_draws_and_stats(blocks):
    result, seen = blocks
    assert [c.iteration for c in seen] == [10, 20, 30, 40, 50, 60, 70]
    assert result.samples["mu"].shape == (2, 40) and result.samples["mu2"].shape == (2, 40)
    np.testing.assert_allclose(result.samples["mu2"], 2 * result.samples["mu"], rtol=1e-6)
    for name in infer.mcmc.STAT_FIELDS:
        assert result.stats[name].shape == (2, 40), name
    # 80 correlated draws: the mean is within 5 posterior sd / sqrt(20) of the exact one
    assert abs(result.samples["mu"].mean() - POST_MEAN) < 5 * POST_SD / math.sqrt(20)


@pytest.mark.parametrize("stop", [1, 4])  # during warmup (iteration 20 < 30), and after 10 draws
def test_resumed_run_equals_the_uninterrupted_one(blocks, stop, tmp_path):
    result, seen = blocks
    path = seen[stop].save(tmp_path / "ckpt.pkl")
    resumed = infer.run_mcmc(gaussian, num_warmup=30, num_samples=40, num_chains=2, chain_method="sequential",
                             resume=infer.Checkpoint.load(path), y=Y)
    # the saved state is exact, so the continuation repeats the same computation
    np.testing.assert_array_equal(resumed.samples["mu"], result.samples["mu"])
    np.testing.assert_array_equal(resumed.stats["energy"], result.stats["energy"])


def test_resume_can_extend_the_run_but_not_change_the_kernel(blocks):
    result, seen = blocks
    longer = infer.run_mcmc(gaussian, num_warmup=30, num_samples=55, num_chains=2, chain_method="sequential",
                            resume=seen[-1], y=Y)
    assert longer.samples["mu"].shape == (2, 55)
    np.testing.assert_array_equal(longer.samples["mu"][:, :40], result.samples["mu"])
    with pytest.raises(ValueError, match="dense_mass"):
        infer.run_mcmc(gaussian, num_warmup=30, num_samples=40, num_chains=2, dense_mass=True, resume=seen[-1], y=Y)
    with pytest.raises(ValueError, match="num_chains"):
        infer.run_mcmc(gaussian, num_warmup=30, num_samples=40, num_chains=3, resume=seen[-1], y=Y)


def test_bad_sampler_arguments():
    with pytest.raises(ValueError, match="chain_method must be one of"):
        infer.run_mcmc(gaussian, rng_key=jax.random.key(0), num_chains=2, chain_method="threads", y=Y)
    if jax.local_device_count() == 1:
        with pytest.raises(ValueError, match="at least 2 devices"):
            infer.run_mcmc(gaussian, rng_key=jax.random.key(0), num_chains=2, chain_method="parallel", y=Y)
    with pytest.raises(ValueError, match="kernel must be one of"):
        infer.make_kernel(gaussian, kernel="mala")
    with pytest.raises(ValueError, match="target_accept_prob must be in"):
        infer.make_kernel(gaussian, target_accept_prob=1.5)
    with pytest.raises(ValueError, match="num_samples must be an integer >= 1"):
        infer.run_mcmc(gaussian, rng_key=jax.random.key(0), num_samples=0, y=Y)
    with pytest.raises(ValueError, match="rng_key must be a JAX PRNG key"):
        infer.run_mcmc(gaussian, num_samples=5, y=Y)
    with pytest.raises(ValueError, match="apply to kernel='hmc' only"):
        infer.run_nuts(gaussian, rng_key=jax.random.key(0), num_steps=5, y=Y)
    with pytest.raises(ValueError, match="run_nuts: kernel is 'nuts'"):
        infer.run_nuts(gaussian, rng_key=jax.random.key(0), kernel="hmc", y=Y)
    for bad in (["mu"], [()], 3):  # a block is a tuple of site names, not a name
        with pytest.raises(ValueError, match="dense_mass must be a bool or a sequence of tuples"):
            infer.make_kernel(gaussian, dense_mass=bad)


def test_mcmc_result_reads_like_numpyro_mcmc(blocks, capsys):
    """run_nuts, run_hmc and run_mcmc return one type; it answers MCMC's read calls."""
    result, _ = blocks
    assert isinstance(result, infer.McmcResult)
    flat, grouped = result.get_samples(), result.get_samples(group_by_chain=True)
    assert flat["mu"].shape == (80,) and grouped["mu"].shape == (2, 40)
    np.testing.assert_array_equal(flat["mu"][40:], grouped["mu"][1])  # chains concatenated in order
    extra = result.get_extra_fields()
    assert set(extra) == set(infer.mcmc.STAT_FIELDS) and extra["diverging"].shape == (80,)
    result.print_summary(prob=0.9)
    out = capsys.readouterr().out
    assert "mu " in out and "mu2" not in out and "Number of divergences" in out  # deterministic mu2 excluded
    result.print_summary(exclude_deterministic=False)
    assert "mu2" in capsys.readouterr().out


def test_inference_data_of_a_block_run(blocks, tmp_path):
    result, _ = blocks
    data = infer.to_inference_data(result, rng_key=jax.random.key(1))
    assert set(infer.groups(data)) == {"posterior", "sample_stats", "observed_data", "posterior_predictive",
                                       "log_likelihood"}
    ll = infer.group(data, "log_likelihood")["y"]
    assert ll.dims == ("chain", "draw", "data") and ll.shape == (2, 40, 5)  # named by its plate
    mu = result.samples["mu"][..., None]
    expected = -0.5 * (np.asarray(Y) - mu) ** 2 - 0.5 * math.log(2 * math.pi)
    np.testing.assert_allclose(ll.values, expected, rtol=1e-5, atol=1e-6)
    assert infer.group(data, "observed_data")["y"].dims == ("data",)  # named by its plate
    assert int(infer.group(data, "sample_stats")["tree_depth"].min()) >= 1
    infer.to_netcdf(data, tmp_path / "p.nc")
    back = infer.from_netcdf(tmp_path / "p.nc")
    np.testing.assert_array_equal(infer.group(back, "posterior")["mu"].values, result.samples["mu"])


def test_run_hmc_and_run_nuts_give_five_groups():
    import arviz as az

    for run in (infer.run_hmc, infer.run_nuts):
        # NUTS with a structured mass matrix: a dense block over the named sites (here the only one)
        kw = {"num_steps": 5} if run is infer.run_hmc else {"dense_mass": [("mu",)]}
        mcmc = run(gaussian, rng_key=jax.random.key(2), num_warmup=100, num_samples=200, num_chains=1, y=Y, **kw)
        assert isinstance(mcmc, infer.McmcResult) and mcmc.kernel == run.__name__[4:]
        data = infer.to_inference_data(mcmc)
        assert len(infer.groups(data)) == 5
        draws = infer.group(data, "posterior")["mu"].values
        # 200 draws: within 5 sd / sqrt(50) (ESS ≥ 50 assumed) of the exact mean
        assert abs(draws.mean() - POST_MEAN) < 5 * POST_SD / math.sqrt(50), run.__name__
        # ArviZ's LOO works on the in-memory object on both stacks (log_likelihood group present)
        assert infer.group(data, "log_likelihood")["y"].dims == ("chain", "draw", "data")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # Pareto-k of 200 draws: not the point here
            loo = az.loo(data)
        elpd = float(loo.elpd if hasattr(loo, "elpd") else loo["elpd_loo"])  # ArviZ 1.x / 0.23
        # 5 observations of N(μ, 1) near μ ≈ 0.95: elpd ≈ Σ log N(y | μ, 1 + 1/5.25) ≈ −5.3
        assert -8.0 < elpd < -4.0, elpd


def test_laplace_is_exact_for_a_gaussian_posterior():
    fit = infer.laplace(gaussian, rng_key=jax.random.key(3), num_samples=4000, num_steps=300, learning_rate=0.1, y=Y)
    # Newton steps refine the SVI mode to float32 precision; the Hessian is the exact precision
    np.testing.assert_allclose(fit.mode["mu"], POST_MEAN, atol=1e-4)
    np.testing.assert_allclose(fit.cov, [[POST_SD**2]], rtol=1e-4)
    assert fit.positive_definite and fit.importance_efficiency > 0.999
    draws = fit.samples["mu"]
    assert draws.shape == (4000,) and fit.samples["mu2"].shape == (4000,)
    # 4000 independent draws: mean within 4 standard errors, sd within 5 %
    assert abs(draws.mean() - POST_MEAN) < 4 * POST_SD / math.sqrt(4000)
    assert abs(draws.std() / POST_SD - 1) < 0.05
    data = infer.to_inference_data(fit)
    assert infer.group(data, "posterior")["mu"].shape == (1, 4000)
    assert {"lp", "log_q"} <= set(infer.group(data, "sample_stats").data_vars)


@jax.custom_vjp
def _half_square(x):
    """x²/2 with only a reverse-mode rule, like the replay adjoint's primitive."""
    return 0.5 * x**2


_half_square.defvjp(lambda x: (0.5 * x**2, x), lambda x, g: (g * x,))


def custom_vjp_model():
    mu = numpyro.sample("mu", dist.Normal(0.0, 2.0))
    numpyro.factor("lik", -4.0 * _half_square(mu - 1.0))  # precision 4 around 1


def test_laplace_needs_no_forward_mode():
    with pytest.raises(TypeError, match="forward-mode"):  # a custom_vjp primitive has no JVP
        jax.jacfwd(_half_square)(1.0)
    fit = infer.laplace(custom_vjp_model, rng_key=jax.random.key(4), num_samples=10, num_steps=200, learning_rate=0.1)
    # posterior N(4/4.25, 1/4.25): the reverse-over-reverse Hessian is the exact precision
    np.testing.assert_allclose(fit.mode["mu"], 4.0 / 4.25, atol=1e-4)
    np.testing.assert_allclose(fit.hessian, [[4.25]], rtol=1e-5)


def test_predictive_passes_are_vectorised_and_batchable():
    draws = exact_draws((2, 7))
    ll = infer.log_likelihood(gaussian, draws, y=Y)["y"]
    assert ll.shape == (2, 7, 5)
    np.testing.assert_array_equal(infer.log_likelihood(gaussian, draws, batch_size=3, y=Y)["y"], ll)
    np.testing.assert_allclose(infer.total_log_likelihood(gaussian, draws, y=Y), ll.sum(-1), rtol=1e-6)
    pp = infer.posterior_predictive(gaussian, draws, rng_key=jax.random.key(0), y=Y)["y"]
    assert pp.shape == (2, 7, 5) and not np.allclose(pp, np.asarray(Y))
    # replicas scatter around each draw's μ with sd 1 (70 values: the mean residual within 0.5)
    assert abs(float(np.mean(pp - draws["mu"][..., None]))) < 0.5
    pp3 = infer.posterior_predictive(gaussian, draws, rng_key=jax.random.key(0), batch_size=3, y=Y)["y"]
    assert pp3.shape == pp.shape
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        infer.log_likelihood(gaussian, draws, batch_size=0, y=Y)
    with pytest.raises(ValueError, match="miss the latent site"):
        infer.log_likelihood(gaussian, {"nu": draws["mu"]}, y=Y)


def test_mc_noise_flags_a_noisy_likelihood_only():
    draws = exact_draws((2, 150))
    kw = lambda k, amp: dict(y=Y, key=jax.random.key(k), amp=amp)  # noqa: E731
    exact = infer.mc_noise(noisy, draws, model_kwargs=kw(0, 0.0), alt_model_kwargs=[kw(1, 0.0), kw(2, 0.0)])
    assert exact.ratio == 0.0 and not exact.flagged and len(exact.ratios) == 2
    # sd(ℓ) ≈ 0.7 nats here; an error of amplitude 2 nats moves ℓ by more than that
    with pytest.warns(infer.MCNoiseWarning, match="increase n_particles"):
        loud = infer.mc_noise(noisy, draws, model_kwargs=kw(0, 2.0), alt_model_kwargs=[kw(k, 2.0) for k in (1, 2, 3)])
    # measured 0.93: the error also widens sd(ℓ₁) itself, so the ratio stays below ~1
    assert loud.flagged and loud.ratio > 0.5 and loud.num_draws == 200  # thinned to max_draws
    # amplitude 0.01 nat: far below both the ratio threshold and the 0.1-nat floor
    with warnings.catch_warnings():
        warnings.simplefilter("error", infer.MCNoiseWarning)
        quiet = infer.mc_noise(noisy, draws, model_kwargs=kw(0, 0.01), alt_model_kwargs=kw(1, 0.01))
    assert not quiet.flagged and quiet.ratio < 0.1
    as_dict = loud.as_dict()
    assert as_dict["flagged"] is True and isinstance(as_dict["ratio"], float)
    with pytest.raises(ValueError, match="at least 3 posterior draws"):
        infer.mc_noise(noisy, exact_draws((1, 2)), model_kwargs=kw(0, 0.0), alt_model_kwargs=kw(1, 0.0))
    with pytest.raises(ValueError, match="threshold must be > 0"):
        infer.mc_noise(noisy, draws, model_kwargs=kw(0, 0.0), alt_model_kwargs=kw(1, 0.0), threshold=0)


def _stats_data(mu, *, diverging=None, energy=None, tree_depth=None):
    c, s = mu.shape
    stats = {"diverging": np.zeros((c, s), bool) if diverging is None else diverging,
             "energy": np.random.default_rng(1).normal(size=(c, s)) if energy is None else energy,
             "tree_depth": np.full((c, s), 3) if tree_depth is None else tree_depth}
    return infer.inference_data({"mu": mu}, sample_stats=stats)


def test_diagnostics_pass_on_good_draws_and_name_each_failure():
    good = infer.diagnostics(_stats_data(exact_draws((2, 500))["mu"]))
    assert good.ok and good.divergences == 0 and good.r_hat_max < 1.01 and good.ess_bulk_min > 600
    assert good.tree_depth_max == 3 and good.max_tree_depth_hits == 0
    # iid energies: BFMI = E[(ΔE)²] / Var(E) ≈ 2
    assert all(abs(b - 2) < 0.3 for b in good.bfmi)

    rng = np.random.default_rng(2)
    stuck = np.stack([rng.normal(0, 1, 500), rng.normal(3, 1, 500)])  # two chains, two modes
    div = np.zeros((2, 500), bool)
    div[0, :3] = True
    walk = np.cumsum(rng.normal(size=(2, 500)), axis=1)  # energy as a random walk: BFMI ≈ 0
    depth = np.full((2, 500), 4)
    depth[1, :7] = 10
    bad = infer.diagnostics(_stats_data(stuck, diverging=div, energy=walk, tree_depth=depth))
    text = " | ".join(bad.warnings)
    for phrase in ("r_hat", "ESS", "3 divergent", "BFMI", "7 draws reached the maximum tree depth 10"):
        assert phrase in text, text
    assert bad.as_dict()["divergences"] == 3
    with pytest.warns(infer.DiagnosticWarning):
        infer.diagnostics(_stats_data(stuck), warn=True)
    with pytest.raises(ValueError, match="energy must have shape"):
        infer.bfmi(np.zeros(10))


def test_summary_of_a_single_draw_is_the_point():
    data = infer.inference_data({"node": np.array([[[1.0, 2.0, 3.0]]])})
    table = infer.summary(data)
    np.testing.assert_array_equal(table["mean"], [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(table["sd"], 0.0)
    assert table["r_hat"].isna().all() and list(table.columns) == list(infer.SUMMARY_COLUMNS)
    assert list(table.index) == ["node[0]", "node[1]", "node[2]"]


def _tilted_mean_shift(key_1, key_k, amp):
    """Reference for mc_noise's shift: the exact Gaussian posterior tilted by exp(ε_k − ε₁) (the
    noisy model's errors for two keys), its mean's move in posterior sd, by a 4001-point grid."""
    mu = np.linspace(POST_MEAN - 10 * POST_SD, POST_MEAN + 10 * POST_SD, 4001)

    def eps(key):
        w, phi = np.asarray(jax.random.normal(key, (2,)), dtype=float)
        return amp * np.sin(3.0 * w * mu + phi)

    dens = np.exp(-0.5 * ((mu - POST_MEAN) / POST_SD) ** 2 + eps(key_k) - eps(key_1))
    return (np.sum(mu * dens) / np.sum(dens) - POST_MEAN) / POST_SD


def test_mc_noise_posterior_shift_matches_the_tilted_posterior():
    draws = exact_draws((2, 400), seed=3)
    amp = 0.3
    kw = lambda k: dict(y=Y, key=jax.random.key(k), amp=amp)  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", infer.MCNoiseWarning)
        out = infer.mc_noise(noisy, draws, model_kwargs=kw(0), alt_model_kwargs=[kw(k) for k in (1, 2, 3)],
                             max_draws=None)
    ref = math.sqrt(np.mean([_tilted_mean_shift(jax.random.key(0), jax.random.key(k), amp) ** 2 for k in (1, 2, 3)]))
    # the reweighting's own sampling error is ≈ sd(d)/√n posterior sd; 4 of those
    tol = 4 * out.sd_diff / math.sqrt(out.num_draws)
    assert abs(out.shift - ref) < tol, (out.shift, ref, tol)
    assert ref > 0.1 and out.flagged and "posterior means move by" in out.message  # above the 0.1 threshold
    # the check can fail: an estimator that ignores the tilt (shift 0) is more than tol off
    assert abs(0.0 - ref) > tol
    with pytest.raises(ValueError, match="shift_threshold must be > 0"):
        infer.mc_noise(noisy, draws, model_kwargs=kw(0), alt_model_kwargs=kw(1), shift_threshold=0.0)


def poisson_noisy(counts=None, key=None, amp=0.0):
    """Three Poisson bins whose expected counts (≈ 400) carry a relative simulation error ``amp``
    per key: an MC error of amp·√μ ≈ 20·amp Poisson sd per bin."""
    log_mu = numpyro.sample("log_mu", dist.Normal(math.log(400.0), 0.05).expand([3]).to_event(1))
    rate = jnp.exp(log_mu) * (1.0 + amp * jax.random.normal(key, (3,)))
    numpyro.sample("counts", dist.Poisson(rate).to_event(1), obs=counts)


def test_mc_noise_measures_the_per_bin_error_in_poisson_sd():
    draws = {"log_mu": np.random.default_rng(0).normal(math.log(400.0), 0.05, (2, 50, 3))}
    counts = jnp.array([390.0, 410.0, 400.0])
    kw = lambda k, amp: dict(counts=counts, key=jax.random.key(k), amp=amp)  # noqa: E731
    alts = lambda amp: [kw(k, amp) for k in range(1, 12)]  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", infer.MCNoiseWarning)
        small = infer.mc_noise(poisson_noisy, draws, model_kwargs=kw(0, 0.005), alt_model_kwargs=alts(0.005))
        large = infer.mc_noise(poisson_noisy, draws, model_kwargs=kw(0, 0.03), alt_model_kwargs=alts(0.03))
    # 12 keys × 4 draws × 3 bins: the sd estimate is good to ~±20 %; truth 20·amp (√μ ≈ 20)
    assert small.bin_error == pytest.approx(0.1, rel=0.3) and small.bin_error <= small.bin_threshold == 0.3
    assert large.bin_error == pytest.approx(0.6, rel=0.3) and large.flagged
    assert "Poisson sd per bin" in large.message and large.bin_error_max >= large.bin_error
    exact = infer.mc_noise(noisy, exact_draws((2, 20)), model_kwargs=dict(y=Y, key=jax.random.key(0), amp=0.0),
                           alt_model_kwargs=dict(y=Y, key=jax.random.key(1), amp=0.0))
    assert exact.bin_error is None and exact.shift < 1e-12  # no Poisson site; an exact likelihood moves nothing


PARALLEL_CHAINS = """
import json, jax, jax.numpy as jnp, numpy as np, numpyro, numpyro.distributions as dist
from ppl_bmc import infer
assert jax.local_device_count() == 2
def gaussian(y=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 2.0))
    with numpyro.plate("data", 5):
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)
y = jnp.array([0.5, 1.2, 0.8, 1.6, 0.9])
out = {}
for method in ("parallel", "vectorized"):
    res = infer.run_mcmc(gaussian, rng_key=jax.random.key(5), num_warmup=50, num_samples=60, num_chains=4,
                         chain_method=method, block_size=40, y=y)
    out[method] = np.asarray(res.samples["mu"]).tolist()
print("RESULT" + json.dumps(out))
"""


def test_parallel_chains_split_over_devices_without_pmap():
    # chain_method="parallel": 4 chains over 2 host devices (2 vectorised chains each, shard_map
    # over a "chains" mesh) draw exactly what the 4 vectorised chains on one device draw (same
    # keys; float32 rounding of the split program: 1e-5 absolute on a posterior sd of 0.44).
    import json
    import os
    import subprocess
    import sys

    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", PARALLEL_CHAINS], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT"))[len("RESULT"):])
    parallel, vectorized = np.asarray(out["parallel"]), np.asarray(out["vectorized"])
    assert parallel.shape == (4, 60)
    np.testing.assert_allclose(parallel, vectorized, rtol=0, atol=1e-5)
    assert np.abs(parallel[0] - parallel[1]).max() > 0.1  # the chains are not copies of one another


def test_a_long_figure_title_is_wrapped_inside_the_figure():
    """The CLI's titles name what is shown ("6 of 16 elements: the sites farthest from …"); a title
    wider than the figure is wrapped, not cut at its edges."""
    import matplotlib

    matplotlib.use("Agg")
    from ppl_bmc.infer import figures

    points = [(f"x[{i}]", "x", (i,), 0.1 * i, 0.05, 0.0, 0.3) for i in range(3)]
    long = "MAP point, curvature sd and 94 % interval (6 of 16 elements: the sites farthest from their field's median)"
    for title, lines in ((long, 2), ("short title", 1)):
        fig = figures.point_figure(points, title=title)
        fig.canvas.draw()
        box, page = fig._suptitle.get_window_extent(), fig.bbox
        assert page.x0 <= box.x0 and box.x1 <= page.x1 and box.y1 <= page.y1, (box, page)
        assert fig._suptitle.get_text().count("\n") + 1 == lines
        assert fig._suptitle.get_text().replace("\n", " ") == title
        matplotlib.pyplot.close(fig)
