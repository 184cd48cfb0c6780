"""The NumPyro model of the toy: NUTS recovers the truth, MAP, ArviZ outputs, demo files."""

import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pytest
from numpyro.infer import Predictive

import paper_toy
from ppl_bmc import infer, toy

THETAS = jnp.array(toy.PAPER_THETAS)


@pytest.fixture(scope="module")
def simulated():
    """Data simulated at a known node, as in the paper (noise-free BMC flux, rounded)."""
    return jnp.asarray(paper_toy.simulate_observed(toy.PAPER_TRUTH, key=jax.random.key(100), n_particles=400_000))


def _nuts(simulated, warmup, samples):
    mcmc = infer.run_nuts(
        paper_toy.model, rng_key=jax.random.key(1), num_warmup=warmup, num_samples=samples, num_chains=2,
        thetas=THETAS, observed=simulated, sim_key=jax.random.key(2), n_particles=2000,
    )
    return mcmc, infer.to_inference_data(mcmc)


@pytest.fixture(scope="module")
def nuts_run(simulated):
    """A converged run (2 chains × (500 + 1000)): 85 s on 2 cores, for the slow stage."""
    return _nuts(simulated, 500, 1000)


@pytest.fixture(scope="module")
def short_run(simulated):
    """A short run for the output checks (not converged)."""
    return _nuts(simulated, 50, 50)


def test_simulated_data_is_close_to_the_paper_observation(simulated):
    # The paper's observed fluxes are a rounded simulation at the same truth (3 decimals).
    np.testing.assert_allclose(simulated, toy.PAPER_OBSERVED, atol=2e-3)


@pytest.mark.slow
def test_nuts_recovers_the_truth(nuts_run):
    mcmc, data = nuts_run
    table = infer.summary(data, var_names=["node"])
    assert table["r_hat"].max() <= 1.01, table
    assert int(np.asarray(mcmc.get_extra_fields()["diverging"]).sum()) == 0
    truth = np.array(toy.PAPER_TRUTH)
    inside = (table["ci_lower"].to_numpy() <= truth) & (truth <= table["ci_upper"].to_numpy())
    assert inside.all(), table


def test_inference_data_groups_and_netcdf_roundtrip(short_run, tmp_path):
    _, data = short_run
    for name in ("posterior", "sample_stats", "observed_data", "log_likelihood"):
        assert name in infer.groups(data)
    table = infer.write_results(data, tmp_path, var_names=["node"])
    for name in ("posterior.nc", "summary.csv", "trace.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp")]
    back = infer.from_netcdf(tmp_path / "posterior.nc")
    np.testing.assert_array_equal(
        infer.group(back, "posterior")["node"].values, infer.group(data, "posterior")["node"].values
    )
    assert "r_hat" in open(tmp_path / "summary.csv").readline()
    assert list(table.columns) == list(infer.SUMMARY_COLUMNS)


def test_summary_interval_is_equal_tailed(short_run):
    _, data = short_run
    table = infer.summary(data, var_names=["node"], ci_prob=0.9)
    draws = infer.group(data, "posterior")["node"].values.reshape(-1, 3)
    np.testing.assert_allclose(table["ci_lower"], np.quantile(draws, 0.05, axis=0), rtol=1e-3)
    np.testing.assert_allclose(table["ci_upper"], np.quantile(draws, 0.95, axis=0), rtol=1e-3)
    # float32 rounding of the sum, relative to the largest draw (a mean near 0 has no relative precision)
    np.testing.assert_allclose(table["mean"], draws.mean(0), rtol=1e-6, atol=1e-6 * np.abs(draws).max())


def test_map_moves_toward_the_data():
    fit = infer.fit_map(
        paper_toy.model, rng_key=jax.random.key(0), num_steps=400, learning_rate=0.05,
        thetas=THETAS, observed=jnp.array(toy.PAPER_OBSERVED), sim_key=jax.random.key(3), n_particles=2000,
    )
    node = fit.params["node"]
    assert node.shape == (3,) and np.all(np.isfinite(node))
    assert fit.losses[-1] < fit.losses[0]
    # the MAP flux fits the data better than the prior mean's flux
    flux = lambda n: np.asarray(toy.flux(n, THETAS, key=jax.random.key(3), n_particles=2000))
    err = lambda n: np.sum((flux(n) - np.array(toy.PAPER_OBSERVED)) ** 2)
    assert err(node) < err(np.array(toy.PAPER_START))


def test_weak_prior_keeps_sigma2_positive_and_predictive_simulates():
    pred = Predictive(paper_toy.model, num_samples=50)
    out = pred(jax.random.key(0), thetas=THETAS, sim_key=jax.random.key(1), n_particles=200, prior="weak")
    assert out["sigma2"].shape == (50,) and np.all(out["sigma2"] > 0)
    assert out["obs"].shape == (50, 3) and np.all(np.isfinite(out["obs"]))


def test_model_log_density_is_deterministic_with_a_fixed_key():
    # common random numbers: the log-density NUTS sees is a function of node only
    from numpyro.infer.util import log_density

    kw = dict(thetas=THETAS, observed=jnp.array(toy.PAPER_OBSERVED), sim_key=jax.random.key(7), n_particles=500)
    params = {"node": jnp.array([-0.5, 5.0, 9.0])}
    a, _ = log_density(paper_toy.model, (), kw, params)
    b, _ = log_density(paper_toy.model, (), kw, params)
    assert float(a) == float(b) and math.isfinite(float(a))


def test_unknown_prior_is_rejected():
    with pytest.raises(ValueError, match="prior must be one of"):
        with numpyro.handlers.seed(rng_seed=0):
            paper_toy.model(THETAS, sim_key=jax.random.key(0), prior="flat")


def test_main_writes_the_demo_outputs(tmp_path):
    out = tmp_path / "paper_toy"
    rc = paper_toy.main(["--num-warmup", "50", "--num-samples", "50", "--num-chains", "1",
                         "--n-particles", "200", "--out", str(out)])
    assert rc == 0
    for name in ("posterior.nc", "summary.csv", "trace.png"):
        assert (out / name).stat().st_size > 0
    assert "r_hat" in (out / "summary.csv").read_text().splitlines()[0]


def test_cli_toy_flux_and_bad_input(capsys):
    from ppl_bmc import cli

    assert cli.main(["toy-flux", "--n-particles", "1000"]) == 0
    assert capsys.readouterr().out.count("flux =") == 3
    assert cli.main(["toy-flux", "--node", "0", "5", "-1"]) == 2
    assert "σ² and must be > 0" in capsys.readouterr().err


@pytest.mark.slow
def test_fig2_reproduction():
    # Paper's Fig. 2: mean of the last 200 iterates ≈ (−1.0033, 4.9891, 9.9611).
    _, mean = paper_toy.reproduce_fig2(key=jax.random.key(0))
    assert np.all(np.abs(mean - np.array(toy.PAPER_FIG2_RESULT)) < np.array([0.03, 0.01, 0.02])), mean
