"""Vectorised passes over posterior draws: constrained values, posterior predictive, pointwise
log-likelihood.

Every function maps a dict of draws with ``batch_ndims`` leading sample axes (``(chain, draw)``
by default) through the model in one ``vmap`` (``jax.vmap`` over all draws at once, or over
chunks of ``batch_size`` draws to bound the memory) — never a Python loop over draws.
"""

from __future__ import annotations

import math

import jax
import numpy as np
from numpyro.handlers import seed, substitute, trace
from numpyro.infer import Predictive
from numpyro.infer import log_likelihood as _numpyro_log_likelihood
from numpyro.primitives import Messenger

from ppl_bmc import _checks


def _batch_shape(draws: dict, batch_ndims: int):
    shapes = {k: np.shape(v)[:batch_ndims] for k, v in draws.items()}
    if not shapes:
        raise ValueError("draws must hold at least one site, got an empty dict")
    first = next(iter(shapes.values()))
    if len(first) != batch_ndims or any(s != first for s in shapes.values()):
        raise ValueError(f"draws must share their {batch_ndims} leading sample axes, got shapes {shapes}")
    return first


def _check_batch_size(batch_size):
    return None if batch_size is None else _checks.positive_int(batch_size, "batch_size")


def _chunked(fn, draws: dict, batch_ndims: int, batch_size, *, with_keys=None):
    """Apply ``fn(flat_draws (n, ...), key) -> dict (n, ...)`` over all draws in chunks of
    ``batch_size`` (one vectorised call per chunk) and restore the sample axes."""
    shape = _batch_shape(draws, batch_ndims)
    n = math.prod(shape)
    flat = {k: np.reshape(np.asarray(v), (n,) + np.shape(v)[batch_ndims:]) for k, v in draws.items()}
    step = n if batch_size is None else min(batch_size, n)
    parts = []
    for lo in range(0, n, step):
        chunk = {k: v[lo : lo + step] for k, v in flat.items()}
        key = None if with_keys is None else jax.random.fold_in(with_keys, lo)
        parts.append(jax.device_get(fn(chunk, key)))
    out = {k: np.concatenate([p[k] for p in parts], axis=0) for k in parts[0]}
    return {k: np.reshape(v, shape + v.shape[1:]) for k, v in out.items()}


def map_draws(fn, draws: dict, *, batch_ndims: int = 2, batch_size: int | None = None) -> dict:
    """``jax.vmap(fn)`` over draws with ``batch_ndims`` leading axes; ``fn`` maps one draw
    (a dict) to a dict.  Returns numpy arrays with the sample axes in front."""
    batch_size = _check_batch_size(batch_size)
    return _chunked(lambda chunk, _: jax.vmap(fn)(chunk), draws, batch_ndims, batch_size)


class _Uncondition(Messenger):
    """Turn the named observed sites back into latent ones (to re-sample them)."""

    def __init__(self, fn, sites):
        self.sites = frozenset(sites)
        super().__init__(fn)

    def process_message(self, msg):
        if msg["type"] == "sample" and msg.get("is_observed") and msg["name"] in self.sites:
            msg["value"] = None
            msg["is_observed"] = False


def trace_model(model, params=None, *, rng_key=None, **model_kwargs):
    """One run of ``model(**model_kwargs)`` with ``params`` substituted: the NumPyro trace."""
    rng_key = jax.random.key(0) if rng_key is None else rng_key
    fn = model if params is None else substitute(model, data=params)
    return trace(seed(fn, rng_key)).get_trace(**model_kwargs)


def observed_sites(model, params=None, **model_kwargs) -> dict:
    """Observed sites of ``model(**model_kwargs)``: name → observed value (numpy array)."""
    tr = trace_model(model, params, **model_kwargs)
    return {k: np.asarray(s["value"]) for k, s in tr.items() if s["type"] == "sample" and s["is_observed"]}


def latent_sites(model, params=None, **model_kwargs) -> list[str]:
    """Names of the latent (sampled, not observed) sites of ``model(**model_kwargs)``."""
    tr = trace_model(model, params, **model_kwargs)
    return [k for k, s in tr.items() if s["type"] == "sample" and not s["is_observed"]]


def _latent_only(model, draws, model_kwargs, batch_ndims):
    point = {k: np.asarray(v)[(0,) * batch_ndims] for k, v in draws.items()}
    names = latent_sites(model, point, **model_kwargs)
    missing = [k for k in names if k not in draws]
    if missing:
        raise ValueError(f"draws miss the latent site(s) {missing} of the model; got {sorted(draws)}")
    return {k: draws[k] for k in names}, point


def posterior_predictive(model, draws: dict, *, rng_key, sites=None, batch_ndims: int = 2,
                         batch_size: int | None = None, **model_kwargs) -> dict:
    """Replicated data: the observed sites re-sampled at every posterior draw.

    Parameters
    ----------
    model : callable
        NumPyro model whose observed sites are conditioned on data in ``model_kwargs``.
    draws : dict[str, array (*sample_shape, ...)]
        Posterior draws of (at least) every latent site; ``sample_shape`` has ``batch_ndims``
        axes, e.g. ``(chain, draw)``.  Deterministic sites are ignored (recomputed).
    rng_key : JAX PRNG key
        Seeds the re-sampling (one key per draw is split from it).
    sites : sequence of str or None
        Sites to re-sample and return; default all observed sites.
    batch_size : int or None
        Draws per vectorised call (``None``: all at once).

    Returns
    -------
    dict[str, numpy.ndarray (*sample_shape, *observed_shape)]
    """
    rng_key = _checks.prng_key(rng_key, "rng_key")
    batch_size = _check_batch_size(batch_size)
    latent, point = _latent_only(model, draws, model_kwargs, batch_ndims)
    sites = list(observed_sites(model, point, **model_kwargs) if sites is None else sites)
    if not sites:
        return {}
    free = _Uncondition(model, sites)

    @jax.jit  # one compiled vectorised pass (eager vmap dispatches op by op: slow for big models)
    def fn(chunk, key):
        pred = Predictive(free, posterior_samples=chunk, return_sites=sites, parallel=True, batch_ndims=1)
        return pred(key, **model_kwargs)

    return _chunked(fn, latent, batch_ndims, batch_size, with_keys=rng_key)


def log_likelihood(model, draws: dict, *, batch_ndims: int = 2, batch_size: int | None = None, **model_kwargs) -> dict:
    """Pointwise log-likelihood of the observed sites at every draw
    (``numpyro.infer.log_likelihood``, vectorised).

    Returns
    -------
    dict[str, numpy.ndarray (*sample_shape, *observed_batch_shape)]
        One value (nats) per observation per draw.
    """
    batch_size = _check_batch_size(batch_size)
    latent, _ = _latent_only(model, draws, model_kwargs, batch_ndims)

    @jax.jit
    def vectorised(chunk):
        return _numpyro_log_likelihood(model, chunk, parallel=True, batch_ndims=1, **model_kwargs)

    return _chunked(lambda chunk, _: vectorised(chunk), latent, batch_ndims, batch_size)


def total_log_likelihood(model, draws: dict, *, batch_ndims: int = 2, batch_size: int | None = None,
                         **model_kwargs) -> np.ndarray:
    """Sum of :func:`log_likelihood` over all observed sites and observations: ``(*sample_shape,)``."""
    ll = log_likelihood(model, draws, batch_ndims=batch_ndims, batch_size=batch_size, **model_kwargs)
    if not ll:
        raise ValueError("the model has no observed site: no log-likelihood")
    return sum(v.reshape(v.shape[:batch_ndims] + (-1,)).sum(-1) for v in ll.values())


def site_values(model, params: dict, **model_kwargs) -> dict:
    """Latent and deterministic site values of one run of the model with ``params`` substituted
    (e.g. the MAP point with its derived quantities)."""
    tr = trace_model(model, params, **model_kwargs)
    return {k: np.asarray(s["value"]) for k, s in tr.items()
            if (s["type"] == "sample" and not s["is_observed"]) or s["type"] == "deterministic"}


__all__ = [
    "log_likelihood",
    "map_draws",
    "observed_sites",
    "posterior_predictive",
    "site_values",
    "total_log_likelihood",
    "trace_model",
]
