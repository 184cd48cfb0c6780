"""ArviZ objects from fits (NUTS/HMC, Laplace, MAP) with all five groups, and result files."""

from __future__ import annotations

import datetime
import os

import jax
import numpy as np
import xarray as xr

from ppl_bmc._io import atomic_write
from ppl_bmc.infer import _arviz
from ppl_bmc.infer.laplace import LaplaceResult
from ppl_bmc.infer.map import MapResult
from ppl_bmc.infer.mcmc import McmcResult
from ppl_bmc.infer.predictive import log_likelihood as _log_likelihood
from ppl_bmc.infer.predictive import observed_sites, site_values
from ppl_bmc.infer.predictive import posterior_predictive as _posterior_predictive


def _dataset(values: dict, sample_dims=("chain", "draw"), dims: dict | None = None) -> xr.Dataset:
    data_vars, coords = {}, {}
    for name, v in values.items():
        v = np.asarray(v)
        n_extra = v.ndim - len(sample_dims)
        named = tuple((dims or {}).get(name, ()))
        if len(named) != n_extra or any(coords.get(d) is not None and len(coords[d]) != n
                                        for d, n in zip(named, v.shape[len(sample_dims):])):
            named = tuple(f"{name}_dim_{i}" for i in range(n_extra))
        full = tuple(sample_dims) + named
        data_vars[name] = (full, v)
        coords.update({d: np.arange(n) for d, n in zip(full, v.shape)})
    return xr.Dataset(data_vars, coords=coords)


def plate_dims(model, params=None, **model_kwargs) -> dict:
    """``{site: (dim names)}`` from the plates each sample site sits in (e.g. ``counts`` in the
    ``detector`` and ``bin`` plates gets ``("detector", "bin")``); sites whose axes are not all
    covered by plates are left out (their axes keep the names ``<site>_dim_<i>``)."""
    from ppl_bmc.infer.predictive import trace_model

    out = {}
    for name, site in trace_model(model, params, **model_kwargs).items():
        if site["type"] != "sample":
            continue
        ndim = np.ndim(site["value"])
        frames = {f.dim: f.name for f in site.get("cond_indep_stack", ()) if f.dim is not None}
        names = tuple(frames.get(d - ndim) for d in range(ndim))
        if ndim and all(names):
            out[name] = names
    return out


def inference_data(posterior: dict, *, sample_stats: dict | None = None, observed_data: dict | None = None,
                   posterior_predictive: dict | None = None, log_likelihood: dict | None = None,
                   attrs: dict | None = None, dims: dict | None = None):
    """ArviZ object (``InferenceData`` on ArviZ 0.23, ``DataTree`` on 1.x) from arrays.

    ``posterior``, ``sample_stats``, ``posterior_predictive`` and ``log_likelihood`` map names
    to arrays ``(chain, draw, ...)``; ``observed_data`` to arrays without sample axes.  Extra
    axes are named by ``dims`` (``{name: ("detector", "bin")}``) where given, else
    ``<name>_dim_<i>``; an observed site, its replicas and its pointwise log-likelihood share
    their observation axes.
    """
    if not posterior:
        raise ValueError("posterior must hold at least one variable")
    groups = {"posterior": _dataset(posterior, dims=dims)}
    if sample_stats:
        groups["sample_stats"] = _dataset(sample_stats)
    if observed_data:
        groups["observed_data"] = _dataset(observed_data, sample_dims=(), dims=dims)
    if posterior_predictive:
        groups["posterior_predictive"] = _dataset(posterior_predictive, dims=dims)
    if log_likelihood:
        groups["log_likelihood"] = _dataset(log_likelihood, dims=dims)
    import numpyro

    import ppl_bmc

    base = {
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "inference_library": "numpyro",
        "inference_library_version": numpyro.__version__,
        "ppl_bmc_version": ppl_bmc.__version__,
    }
    base.update(attrs or {})
    return _arviz.from_datasets(groups, attrs=base)


def _mcmc_parts(fit):
    """(samples, stats, model, model_kwargs, method) of a numpyro MCMC or an McmcResult."""
    from numpyro.infer import MCMC, NUTS

    if isinstance(fit, McmcResult):
        s = fit.stats
        stats = {"diverging": s["diverging"].astype(bool), "energy": s["energy"], "n_steps": s["num_steps"],
                 "acceptance_rate": s["accept_prob"], "lp": -s["potential_energy"], "step_size": s["step_size"]}
        if fit.kernel == "nuts":
            stats["tree_depth"] = _tree_depth(s["num_steps"])
        return fit.samples, stats, fit.model, fit.model_kwargs, fit.kernel
    if isinstance(fit, MCMC):
        samples = {k: np.asarray(v) for k, v in fit.get_samples(group_by_chain=True).items()}
        extra = {k: np.asarray(v) for k, v in fit.get_extra_fields(group_by_chain=True).items()}
        rename = {"diverging": "diverging", "energy": "energy", "num_steps": "n_steps", "accept_prob": "acceptance_rate"}
        stats = {new: extra[old] for old, new in rename.items() if old in extra}
        if "potential_energy" in extra:
            stats["lp"] = -extra["potential_energy"]
        nuts = isinstance(fit.sampler, NUTS)
        if nuts and "num_steps" in extra:
            stats["tree_depth"] = _tree_depth(extra["num_steps"])
        return samples, stats, fit.sampler.model, dict(fit._kwargs), "nuts" if nuts else "hmc"
    raise ValueError(f"fit must be a numpyro MCMC, McmcResult, LaplaceResult or MapResult, got {type(fit).__name__}")


def _tree_depth(num_steps):
    """NUTS tree depth from the number of leapfrog steps (2**depth - 1 at most)."""
    return np.floor(np.log2(np.maximum(np.asarray(num_steps), 1))).astype(np.int64) + 1


def to_inference_data(fit, *, model=None, model_kwargs: dict | None = None, rng_key=None,
                      posterior_predictive: bool = True, log_likelihood: bool = True,
                      batch_size: int | None = None, attrs: dict | None = None, dims: dict | None = None):
    """ArviZ data with the groups posterior, sample_stats, observed_data, posterior_predictive and
    log_likelihood.

    Parameters
    ----------
    fit : numpyro.infer.MCMC, McmcResult, LaplaceResult or MapResult
        A finished fit.  MCMC: ``(chain, draw)`` as sampled.  Laplace: one chain of independent
        draws from the Gaussian (``sample_stats``: ``lp`` log joint and ``log_q`` Gaussian log
        density).  MAP: one chain with a single draw, the MAP point and its deterministic sites
        (``sample_stats.lp`` = log joint at the point); its r̂/ESS are undefined (NaN).
    model, model_kwargs :
        The NumPyro model and its keyword arguments; taken from ``fit`` when it carries them
        (MCMC objects, and results of :func:`run_mcmc`, :func:`laplace`, :func:`fit_map`).
    rng_key : JAX PRNG key or None
        Seeds the replicated data (default ``jax.random.key(0)``).
    posterior_predictive, log_likelihood : bool
        Compute these groups: the observed sites re-sampled at every draw, and the pointwise
        log-likelihood (nats, one value per observation per draw), each in one vectorised pass
        (chunks of ``batch_size`` draws if given).
    attrs : dict
        Extra attributes for every group (e.g. ``{"method": "nuts"}``).
    dims : dict
        Names of the axes after ``(chain, draw)`` per site, e.g. ``{"log_density": ("z", "x")}``;
        sites inside NumPyro plates get the plates' names without being listed (``counts`` of
        :func:`ppl_bmc.nppl.counts_site` → ``("detector", "bin")``).
    """
    if isinstance(fit, LaplaceResult):
        samples = {k: np.asarray(v)[None] for k, v in fit.samples.items()}
        stats = {"lp": fit.log_density[None], "log_q": fit.log_q[None]}
        method = "laplace"
        model = model or fit.map.model
        model_kwargs = model_kwargs if model_kwargs is not None else fit.map.model_kwargs
    elif isinstance(fit, MapResult):
        model = model or fit.model
        model_kwargs = model_kwargs if model_kwargs is not None else fit.model_kwargs
        if model is None:
            raise ValueError("model must be given for a MapResult without one")
        point = site_values(model, fit.params, **(model_kwargs or {}))
        samples = {k: v[None, None] for k, v in point.items()}
        stats = {"lp": np.array([[-float(fit.losses[-1])]])}
        method = "map"
    else:
        samples, stats, m, kw, method = _mcmc_parts(fit)
        model = model or m
        model_kwargs = model_kwargs if model_kwargs is not None else kw
    if model is None:
        raise ValueError("model must be given: the fit does not carry its model")
    model_kwargs = dict(model_kwargs or {})
    point = {k: v[0, 0] for k, v in samples.items()}
    observed = observed_sites(model, point, **model_kwargs)
    pp = ll = None
    if posterior_predictive and observed:
        key = jax.random.key(0) if rng_key is None else rng_key
        pp = _posterior_predictive(model, samples, rng_key=key, sites=list(observed), batch_size=batch_size, **model_kwargs)
    if log_likelihood and observed:
        ll = _log_likelihood(model, samples, batch_size=batch_size, **model_kwargs)
    all_dims = {**plate_dims(model, point, **model_kwargs), **(dims or {})}
    return inference_data(samples, sample_stats=stats, observed_data=observed, posterior_predictive=pp,
                          log_likelihood=ll, attrs={"method": method, **(attrs or {})}, dims=all_dims)



def write_results(data, folder, *, var_names=None, ci_prob: float = 0.94):
    """Write ``posterior.nc``, ``summary.csv`` and ``trace.png`` to ``folder`` (each atomically).

    Returns the summary ``DataFrame`` (columns :data:`SUMMARY_COLUMNS`).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(folder, exist_ok=True)
    _arviz.to_netcdf(data, os.path.join(folder, "posterior.nc"))
    table = _arviz.summary(data, var_names=var_names, ci_prob=ci_prob)
    atomic_write(os.path.join(folder, "summary.csv"), lambda tmp: table.to_csv(tmp))
    fig = _arviz.plot_trace(data, var_names=var_names)
    atomic_write(os.path.join(folder, "trace.png"), lambda tmp: fig.savefig(tmp, dpi=80, format="png"))
    plt.close("all")
    return table


__all__ = ["inference_data", "plate_dims", "to_inference_data", "write_results"]
