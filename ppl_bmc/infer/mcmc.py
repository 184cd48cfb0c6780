"""NUTS/HMC runners around ``numpyro.infer.MCMC``."""

from __future__ import annotations

import jax
from numpyro.infer import HMC, MCMC, NUTS, init_to_median

from ppl_bmc import _checks

#: Extra per-draw fields kept for diagnostics (divergences, energy for BFMI, tree depth).
EXTRA_FIELDS = ("diverging", "energy", "num_steps", "accept_prob", "potential_energy")


def default_chain_method(num_chains: int) -> str:
    """``parallel`` when there are enough devices (host devices on CPU), ``vectorized`` on one
    accelerator, ``sequential`` otherwise."""
    if num_chains <= 1:
        return "sequential"
    if jax.local_device_count() >= num_chains:
        return "parallel"
    if jax.default_backend() != "cpu":
        return "vectorized"
    return "sequential"


def run_nuts(
    model,
    *,
    rng_key,
    num_warmup: int = 500,
    num_samples: int = 500,
    num_chains: int = 2,
    chain_method: str | None = None,
    dense_mass: bool = False,
    target_accept_prob: float = 0.8,
    init_strategy=init_to_median,
    progress_bar: bool = False,
    kernel: str = "nuts",
    **model_kwargs,
) -> MCMC:
    """Run NUTS (or HMC with ``kernel="hmc"``) on a NumPyro ``model(**model_kwargs)``.

    Returns the finished ``numpyro.infer.MCMC`` with :data:`EXTRA_FIELDS` collected; turn it
    into ArviZ data with :func:`ppl_bmc.infer.to_inference_data`.
    """
    rng_key = _checks.prng_key(rng_key, "rng_key")
    for name, value, minimum in (("num_warmup", num_warmup, 0), ("num_samples", num_samples, 1), ("num_chains", num_chains, 1)):
        _checks.positive_int(value, name, minimum=minimum)
    if not 0.0 < target_accept_prob < 1.0:
        raise ValueError(f"target_accept_prob must be in (0, 1), got {target_accept_prob}")
    if kernel == "nuts":
        sampler = NUTS(model, dense_mass=dense_mass, target_accept_prob=target_accept_prob, init_strategy=init_strategy)
    elif kernel == "hmc":
        sampler = HMC(model, dense_mass=dense_mass, target_accept_prob=target_accept_prob, init_strategy=init_strategy)
    else:
        raise ValueError(f"kernel must be 'nuts' or 'hmc', got {kernel!r}")
    mcmc = MCMC(
        sampler,
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        chain_method=chain_method or default_chain_method(num_chains),
        progress_bar=progress_bar,
    )
    mcmc.run(rng_key, extra_fields=EXTRA_FIELDS, **model_kwargs)
    return mcmc


__all__ = ["run_nuts", "default_chain_method", "EXTRA_FIELDS"]
