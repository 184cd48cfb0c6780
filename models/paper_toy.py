"""The paper's toy as a NumPyro model (Grinis, JETP 2022, arXiv 2108.10245).

Three detector readings at angles π·(0, 0.1, −0.08); a Gaussian mixture of two materials
with unknown ``node = (μx, μy, σ²)``; observed fluxes with Gaussian noise σ_obs = 1/√1000
(the paper's log-likelihood −500·Σ(obs − flux)²).  The likelihood's key is fixed and passed
in (common random numbers), so the log-density NUTS sees is a deterministic, smooth function
of ``node``.

Run ``python models/paper_toy.py --help``; ``make demo`` runs it with the defaults.  The CLI
protocol (``DEFAULTS``, ``simulate``, ``build``, ``OBSERVED``, ``VAR_NAMES``, ``validate_data``)
lets ``ppl-bmc simulate/fit/summarize paper_toy`` drive it too.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

import ppl_bmc
from ppl_bmc import infer, toy

#: Observation noise of the paper: −500·Σ(obs − flux)² is a Normal log-likelihood with σ² = 1/1000.
SIGMA_OBS = 1.0 / math.sqrt(1000.0)
PRIORS = ("paper", "weak")

#: Configuration keys of the ``ppl-bmc`` protocol and their defaults (a literal: the CLI reads it
#: without running this file, so a wrong key is reported before JAX starts).
DEFAULTS = {
    "n_particles": 2_000,  # BMC particles per reading in the likelihood
    "n_steps": 2,  # steps per particle
    "prior": "paper",  # "paper" (node ~ N((0, 5, 10), I)) or "weak" (see model())
    "sigma_obs": 0.03162277660168379,  # observation noise (flux units): SIGMA_OBS = 1/√1000
    "thetas_over_pi": [0.0, 0.1, -0.08],  # reading angles / π (the paper's)
    "truth": [-1.0, 5.0, 10.0],  # node the data are simulated at: toy.PAPER_TRUTH
    "sim_particles": 400_000,  # particles per reading of the simulated data
    "decimals": 3,  # the simulated fluxes are rounded as in the paper
}
#: Observed sites.
OBSERVED = ("obs",)
#: Sites of summary tables and trace plots (``node`` is deterministic under the weak prior).
VAR_NAMES = ["node"]
#: Names of the elements of ``node`` on figures and in the report (the toy is dimensionless).
LABELS = {"node": ("μx", "μy", "σ²"), "mu": ("μx", "μy"), "sigma2": "σ²"}
#: Axis names of the sites in posterior.nc (``obs`` gets ``reading`` from its plate).
DIMS = {"node": ("parameter",), "flux": ("reading",)}


def model(
    thetas=toy.PAPER_THETAS,
    observed=None,
    *,
    sim_key,
    n_particles: int = 10_000,
    n_steps: int = 2,
    prior: str = "paper",
    sigma_obs: float = SIGMA_OBS,
    adjoint: ppl_bmc.Adjoint = ppl_bmc.ReplayAdjoint(),
):
    """NumPyro model of the toy.

    Parameters
    ----------
    thetas : array (R,)
        Reading angles (radians).
    observed : array (R,) or None
        Observed fluxes (dimensionless); ``None`` to simulate.
    sim_key : jax PRNG key
        The likelihood's fixed key (common random numbers): the same for every evaluation.
    n_particles, n_steps : int
        BMC particles per reading and steps per particle.
    prior : {"paper", "weak"}
        ``"paper"``: node ~ N((0, 5, 10), I) as in the paper.  ``"weak"``: μ ~ N((0, 5), 5²·I)
        and σ² ~ LogNormal(log 10, 0.5), which keeps σ² > 0.
    sigma_obs : float
        Observation noise (dimensionless flux units).
    """
    if prior == "paper":
        node = numpyro.sample("node", dist.Normal(jnp.array(toy.PAPER_START), 1.0).to_event(1))
    elif prior == "weak":
        mu = numpyro.sample("mu", dist.Normal(jnp.array(toy.PAPER_START[:2]), 5.0).to_event(1))
        sigma2 = numpyro.sample("sigma2", dist.LogNormal(math.log(toy.PAPER_START[2]), 0.5))
        node = numpyro.deterministic("node", jnp.concatenate([mu, sigma2[None]]))
    else:
        raise ValueError(f"prior must be one of {PRIORS}, got {prior!r}")
    flux = toy.flux(node, thetas, key=sim_key, n_particles=n_particles, n_steps=n_steps, adjoint=adjoint)
    numpyro.deterministic("flux", flux)
    with numpyro.plate("reading", len(thetas)):
        numpyro.sample("obs", dist.Normal(flux, sigma_obs), obs=observed)


def simulate_observed(node=toy.PAPER_TRUTH, thetas=toy.PAPER_THETAS, *, key, n_particles=1_000_000, decimals=3):
    """Noise-free synthetic data as in the paper: the BMC flux at ``node``, rounded."""
    flux = toy.flux(jnp.asarray(node), thetas, key=key, n_particles=n_particles)
    return np.round(np.asarray(flux), decimals)


def _config(config):
    cfg = dict(DEFAULTS)
    for key, value in (config or {}).items():
        if key not in DEFAULTS:
            raise ValueError(f"unknown paper_toy option {key!r}; valid: {', '.join(sorted(DEFAULTS))}")
        cfg[key] = value
    return cfg


def simulate(config=None, *, key):
    """Synthetic data as in the paper: the BMC flux at ``config["truth"]`` with
    ``sim_particles`` particles per reading, rounded to ``decimals``.

    Returns ``(data, truth)``: ``data = {"obs": (R,), "thetas": (R,) radians}``,
    ``truth = {"node": (3,)}``.
    """
    cfg = _config(config)
    thetas = np.asarray(cfg["thetas_over_pi"], dtype=float) * math.pi
    obs = simulate_observed(cfg["truth"], thetas, key=key, n_particles=int(cfg["sim_particles"]),
                            decimals=int(cfg["decimals"]))
    return {"obs": np.asarray(obs, dtype=np.float64), "thetas": thetas}, {"node": np.asarray(cfg["truth"], dtype=float)}


def validate_data(data):
    """``obs`` must be a 1-D array of finite fluxes >= 0, one per reading angle."""
    obs = np.asarray(data["obs"])
    if obs.ndim != 1 or obs.size == 0:
        raise ValueError(f"obs must be a 1-D array of fluxes, got shape {obs.shape}")
    if not np.all(np.isfinite(obs)) or np.any(obs < 0):
        raise ValueError(f"obs must be finite fluxes >= 0, got {obs}")
    if "thetas" in data and np.shape(data["thetas"]) != obs.shape:
        raise ValueError(f"thetas {np.shape(data['thetas'])} and obs {obs.shape} must have the same shape")


def build(config, data, *, key):
    """The NumPyro model and its keyword arguments, ``obs`` conditioned on ``data["obs"]``.

    The reading angles are ``data["thetas"]`` (radians) if present, else
    ``config["thetas_over_pi"]``·π.  ``key`` is the likelihood's fixed key.
    """
    cfg = _config(config)
    if cfg["prior"] not in PRIORS:
        raise ValueError(f"prior must be one of {PRIORS}, got {cfg['prior']!r}")
    thetas = data.get("thetas") if data is not None else None
    thetas = np.asarray(cfg["thetas_over_pi"], dtype=float) * math.pi if thetas is None else np.asarray(thetas)
    observed = None if data is None else jnp.asarray(data["obs"])
    kwargs = dict(thetas=jnp.asarray(thetas), observed=observed, sim_key=key, n_particles=int(cfg["n_particles"]),
                  n_steps=int(cfg["n_steps"]), prior=cfg["prior"], sigma_obs=float(cfg["sigma_obs"]))
    return model, kwargs


def reproduce_fig2(
    *,
    key,
    n_iterations: int = 1001,
    n_particles: int = 100_000,
    learning_rate: float = 0.05,
    start=toy.PAPER_START,
    readings=(1, 2),
    n_average: int = 200,
):
    """Fig. 2: gradient ascent on −500·Σ(obs − flux)² over readings 2 and 3, fresh randomness
    each iteration (``fold_in(key, i)``).

    Returns ``(iterates (n_iterations + 1, 3), mean of the last n_average iterates (3,))``.
    """
    thetas = jnp.array([toy.PAPER_THETAS[i] for i in readings])
    observed = jnp.array([toy.PAPER_OBSERVED[i] for i in readings])

    @jax.jit
    def update(node, k):
        loglik = lambda n: -500.0 * jnp.sum((observed - toy.flux(n, thetas, key=k, n_particles=n_particles)) ** 2)
        return node + learning_rate * jax.grad(loglik)(node)

    node = jnp.asarray(start, dtype=jnp.result_type(float))
    iterates = [node]
    for i in range(n_iterations):
        node = update(node, jax.random.fold_in(key, i))
        iterates.append(node)
    iterates = np.asarray(jnp.stack(iterates))
    return iterates, iterates[-n_average:].mean(axis=0)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-warmup", type=int, default=500)
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--num-chains", type=int, default=2)
    parser.add_argument("--n-particles", type=int, default=2_000)
    parser.add_argument("--n-steps", type=int, default=2)
    parser.add_argument("--prior", choices=PRIORS, default="paper")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join("results", "paper_toy"))
    parser.add_argument("--fig2", action="store_true", help="also reproduce Fig. 2 (gradient ascent)")
    parser.add_argument("--progress-bar", action="store_true")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    numpyro.set_host_device_count(max(args.num_chains, 1))
    key = jax.random.key(args.seed)
    k_lik, k_map, k_nuts, k_fig2 = jax.random.split(key, 4)
    thetas, observed = jnp.array(toy.PAPER_THETAS), jnp.array(toy.PAPER_OBSERVED)
    common = dict(thetas=thetas, observed=observed, sim_key=k_lik, n_particles=args.n_particles, n_steps=args.n_steps, prior=args.prior)
    print(f"ppl_bmc {ppl_bmc.__version__}, jax {jax.__version__} on {jax.default_backend()}, numpyro {numpyro.__version__}")
    print(f"readings θ/π = {np.round(np.asarray(thetas) / math.pi, 3)}, observed = {np.asarray(observed)}")

    t0 = time.perf_counter()
    fit = infer.fit_map(model, rng_key=k_map, num_steps=2000, learning_rate=0.02, **common)
    print(f"MAP ({time.perf_counter() - t0:.1f} s, converged={fit.converged}): "
          + ", ".join(f"{k} = {np.round(v, 4)}" for k, v in fit.params.items()))

    t0 = time.perf_counter()
    mcmc = infer.run_nuts(model, rng_key=k_nuts, num_warmup=args.num_warmup, num_samples=args.num_samples,
                          num_chains=args.num_chains, progress_bar=args.progress_bar, **common)
    data = infer.to_inference_data(mcmc)
    var_names = ["node"] if args.prior == "paper" else ["mu", "sigma2"]
    table = infer.write_results(data, args.out, var_names=var_names)
    n_div = int(np.asarray(mcmc.get_extra_fields()["diverging"]).sum())
    print(f"NUTS ({time.perf_counter() - t0:.1f} s, {args.num_chains} chains × {args.num_samples} draws, {n_div} divergences)")
    print(table.round(4).to_string())
    print(f"wrote {os.path.join(args.out, 'posterior.nc')}, summary.csv, trace.png")

    if args.fig2:
        t0 = time.perf_counter()
        _, mean = reproduce_fig2(key=k_fig2)
        print(f"Fig. 2 ({time.perf_counter() - t0:.1f} s): mean of last 200 iterates = {np.round(mean, 4)}; "
              f"paper: {toy.PAPER_FIG2_RESULT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
