"""When not to trust a simulated likelihood: its Monte-Carlo noise against the posterior.

:func:`mc_noise` re-evaluates the total log-likelihood at posterior draws with independent
simulation keys and reports how much that moves the log-likelihood, the posterior means (in
posterior sd) and the expected counts of each bin (in Poisson sd).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np

from ppl_bmc import _checks
from ppl_bmc.infer.diagnostics import _jsonable
from ppl_bmc.infer.predictive import total_log_likelihood

#: Default threshold of :func:`mc_noise` on sd(ℓ₁ − ℓ₂) / sd(ℓ₁) (see its docstring).
MC_NOISE_THRESHOLD = 0.5
#: Below this sd of ℓ₁ − ℓ₂ (nats) the noise is harmless whatever the ratio (see :func:`mc_noise`).
MC_NOISE_MIN_SD = 0.1
#: Largest RMS per-bin Monte-Carlo error of the expected counts, in Poisson sd of the bin, that
#: :func:`mc_noise` accepts (issue 13: MC noise below the data's Poisson noise).
MC_BIN_ERROR_MAX = 0.3
#: Largest RMS posterior-mean shift between likelihood keys, in posterior sd, that :func:`mc_noise` accepts.
MC_SHIFT_MAX = 0.1


class MCNoiseWarning(UserWarning):
    """The simulated likelihood's Monte-Carlo noise is large against the posterior's spread."""


@dataclass
class MCNoise:
    """Result of :func:`mc_noise`.

    Attributes
    ----------
    ratio : float
        ``rms_k sd(ℓ₁ − ℓ_k) / sd(ℓ₁)`` over the posterior draws (dimensionless).
    sd_diff : float
        ``rms_k sd(ℓ₁ − ℓ_k)`` in nats.
    sd_loglik : float
        Posterior sd of the total log-likelihood ``ℓ₁`` in nats.
    mean_diff : float
        Mean of ``ℓ₁ − ℓ_k`` in nats (a constant offset: it does not change the posterior).
    ratios : list[float]
        ``sd(ℓ₁ − ℓ_k) / sd(ℓ₁)`` for each alternative key ``k``.
    num_draws : int
        Draws used.
    threshold, min_sd : float
        The log-likelihood rule: flagged when ``ratio > threshold and sd_diff > min_sd``.
    shift : float
        Posterior-mean shift between the fit's key and another, in posterior sd: RMS over the
        latent elements, RMS over the keys (importance reweighting of the draws by
        ``exp(ℓ_k − ℓ₁)``; its own sampling error is ≈ ``sd_diff / √num_draws``).
    shift_max : float
        The largest element's shift (RMS over keys), in posterior sd.
    bin_error : float or None
        Monte-Carlo error of the expected counts of the Poisson-observed sites, in Poisson sd
        √μ of each bin: RMS over bins and over ``bin_draws`` draws of the sd over all keys
        (the fit's and the others).  None when the model observes no Poisson site.
    bin_error_max : float or None
        The worst bin's error (RMS over the draws), in Poisson sd.
    shift_threshold, bin_threshold : float
        Also flagged when ``shift > shift_threshold`` or ``bin_error > bin_threshold``.
    flagged : bool
    message : str
    """

    ratio: float
    sd_diff: float
    sd_loglik: float
    mean_diff: float
    ratios: list
    num_draws: int
    threshold: float
    min_sd: float
    flagged: bool
    message: str
    shift: float = float("nan")
    shift_max: float = float("nan")
    bin_error: float | None = None
    bin_error_max: float | None = None
    shift_threshold: float = MC_SHIFT_MAX
    bin_threshold: float = MC_BIN_ERROR_MAX

    def as_dict(self) -> dict:
        return _jsonable(asdict(self))


def _thin(n: int, max_draws: int | None) -> np.ndarray:
    if max_draws is None or n <= max_draws:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max_draws).round().astype(int))


def mc_noise(
    model,
    draws: dict,
    *,
    model_kwargs: dict,
    alt_model_kwargs,
    alt_model=None,
    loglik=None,
    batch_ndims: int = 2,
    threshold: float = MC_NOISE_THRESHOLD,
    min_sd: float = MC_NOISE_MIN_SD,
    max_draws: int | None = 200,
    batch_size: int | None = None,
    warn: bool = True,
    shift_threshold: float = MC_SHIFT_MAX,
    bin_threshold: float = MC_BIN_ERROR_MAX,
    bin_draws: int = 4,
) -> MCNoise:
    """Monte-Carlo noise of a simulated likelihood, measured at the posterior draws.

    ``ℓ₁(θ)`` is the total log-likelihood the fit used (its simulation key in ``model_kwargs``),
    ``ℓ_k(θ)`` the same with an independent key (``alt_model_kwargs``: one dict, or a list of
    dicts for several keys; ``alt_model`` likewise if the model itself must be rebuilt).  At each
    draw ``θ_s``, ``d_s = ℓ₁(θ_s) − ℓ_k(θ_s)``; the result is
    ``ratio = rms_k sd_s(d) / sd_s(ℓ₁)``.

    Why this ratio, and the default threshold 0.5.  Write ``ℓ_k = ℓ + ε_k`` with ``ℓ`` the exact
    log-likelihood and ``ε_k`` the simulation error for key ``k``.  The fit samples the exact
    posterior tilted by ``exp(ε₁)``.  A constant ``ε`` changes nothing; what matters is how much
    ``ε`` varies *across the posterior*.  For independent keys ``Var(d) ≈ 2 Var(ε)``, so
    ``sd(ε) ≈ sd(d)/√2``.  The tilt moves a posterior mean by ``Cov(θ, ε₁) ≤ sd(θ)·sd(ε)``.  The
    yardstick ``sd(ℓ₁)`` is how much the log-likelihood itself varies over the posterior (≈ √(k/2)
    nats for k parameters the data constrain well).  At ``ratio = 0.5``, ``sd(ε) ≈ 0.35·sd(ℓ)``.
    For a few well-constrained parameters (``sd(ℓ) ≈ 1``) that is ≈ 0.35 nats.  The importance
    weights between the noisy and the exact posterior then keep ``exp(−0.35²) ≈ 88 %`` of the
    draws' effective size, and means move by up to about a third of a posterior sd.  That is
    about the most one should accept silently, so larger ratios are flagged.  Two keys then give
    visibly different posteriors: raise ``n_particles``.  ``min_sd`` (default 0.1 nat) avoids
    flagging a flat likelihood: ``sd(ε) < 0.07`` nat keeps the tilt within ±7 % anyway.

    BMC weights are heavy-tailed, so one alternative key gives a noisy ratio: with the paper's
    toy at 20 particles, single-key ratios range from 0.1 to 3 depending on the keys.  Several
    keys (the ``ppl-bmc`` command uses 4) average that out; the root mean square over keys
    estimates ``sd(ε₁ − ε)`` for a typical independent ``ε``.

    Parameters
    ----------
    model : callable
        The NumPyro model of the fit.
    draws : dict[str, array (*sample_shape, ...)]
        Posterior draws of the latent sites (``batch_ndims`` sample axes).
    model_kwargs : dict
        Keyword arguments of the fit's model.
    alt_model_kwargs : dict or list of dict
        Keyword arguments of the re-evaluation(s), each with another likelihood key.
    loglik : array (*sample_shape,) or None
        ``ℓ₁`` at the draws if already known (e.g. the summed ``log_likelihood`` group).
    max_draws : int or None
        Evenly thinned to at most this many draws (each key costs one likelihood pass).
    warn : bool
        Issue an :class:`MCNoiseWarning` when flagged.
    shift_threshold : float > 0
        Flag a posterior-mean shift between keys above this many posterior sd (default 0.1).
    bin_threshold : float > 0
        Flag an RMS per-bin MC error above this many Poisson sd (default 0.3).
    bin_draws : int >= 1
        Draws (evenly spaced) at which the per-bin error is measured.
    """
    if not threshold > 0:
        raise ValueError(f"threshold must be > 0, got {threshold}")
    if not min_sd >= 0:
        raise ValueError(f"min_sd must be >= 0, got {min_sd}")
    if not shift_threshold > 0:
        raise ValueError(f"shift_threshold must be > 0 (posterior sd), got {shift_threshold}")
    if not bin_threshold > 0:
        raise ValueError(f"bin_threshold must be > 0 (Poisson sd), got {bin_threshold}")
    bin_draws = _checks.positive_int(bin_draws, "bin_draws")
    if max_draws is not None:
        _checks.positive_int(max_draws, "max_draws", minimum=3)
    alts = [alt_model_kwargs] if isinstance(alt_model_kwargs, dict) else list(alt_model_kwargs)
    if not alts:
        raise ValueError("alt_model_kwargs must hold at least one set of keyword arguments")
    models = alt_model if isinstance(alt_model, (list, tuple)) else [alt_model] * len(alts)
    if len(models) != len(alts):
        raise ValueError(f"alt_model must be one model or one per alt_model_kwargs ({len(alts)}), got {len(models)}")
    flat = {}
    n = None
    for k, v in draws.items():
        v = np.asarray(v)
        n_k = int(np.prod(v.shape[:batch_ndims]))
        n = n_k if n is None else n
        flat[k] = v.reshape((n_k,) + v.shape[batch_ndims:])
    if n is None or n < 3:
        raise ValueError(f"mc_noise needs at least 3 posterior draws, got {n or 0}")
    idx = _thin(n, max_draws)
    flat = {k: v[idx] for k, v in flat.items()}
    if loglik is None:
        l1 = total_log_likelihood(model, flat, batch_ndims=1, batch_size=batch_size, **model_kwargs)
    else:
        l1 = np.asarray(loglik, dtype=float).reshape(-1)[idx]
    l1 = np.asarray(l1, dtype=float)
    sd_l = float(np.std(l1, ddof=1))
    diffs = []
    for m, kw in zip(models, alts):
        lk = total_log_likelihood(m or model, flat, batch_ndims=1, batch_size=batch_size, **kw)
        diffs.append(l1 - np.asarray(lk, dtype=float))
    sds = np.array([np.std(d, ddof=1) for d in diffs])
    sd_diff = float(np.sqrt(np.mean(sds**2)))

    def rel(x):
        return x / sd_l if sd_l > 0 else (math.inf if x > 0 else 0.0)

    ratio = rel(sd_diff)
    finite = all(np.all(np.isfinite(d)) for d in diffs)
    shifts = np.stack([_mean_shift(flat, d) for d in diffs])  # (keys, elements)
    shift = float(np.sqrt(np.mean(shifts**2))) if shifts.size else 0.0
    shift_max = float(np.sqrt(np.mean(shifts**2, axis=0)).max()) if shifts.size else 0.0
    sub = {k: v[np.unique(np.linspace(0, len(idx) - 1, min(bin_draws, len(idx))).round().astype(int))]
           for k, v in flat.items()}
    bins = _bin_errors([model] + [m or model for m in models], [model_kwargs] + alts, sub)
    bin_error = None if bins is None else float(np.sqrt(np.mean(bins**2)))
    bin_error_max = None if bins is None else float(np.sqrt(np.mean(bins**2, axis=0)).max())
    loglik_flag = bool(ratio > threshold and sd_diff > min_sd) or not finite
    shift_flag = not shift <= shift_threshold
    bin_flag = bin_error is not None and not bin_error <= bin_threshold
    flagged = loglik_flag or shift_flag or bin_flag
    keys = f"{len(alts)} other key{'s' if len(alts) > 1 else ''}"
    verdict = "large" if flagged else "small"
    parts = [f"sd(ℓ₁ − ℓ_k) = {sd_diff:.3g} nats ({keys}) is {ratio:.2f} × the posterior sd of ℓ ({sd_l:.3g} nats)"
             + (f" > {threshold:g}" if loglik_flag else (f" (under the {min_sd:g}-nat floor)" if ratio > threshold
                                                        else f" <= {threshold:g}")),
             f"posterior means move by {shift:.3g} posterior sd between keys (RMS; worst element {shift_max:.3g})"
             + (f" > {shift_threshold:g}" if shift_flag else f" <= {shift_threshold:g}")]
    if bin_error is not None:
        parts.append(f"the expected counts carry an MC error of {bin_error:.3g} Poisson sd per bin (RMS; worst bin "
                     f"{bin_error_max:.3g})" + (f" > {bin_threshold:g}" if bin_flag else f" <= {bin_threshold:g}"))
    message = f"Monte-Carlo noise of the likelihood is {verdict}: " + "; ".join(parts)
    if flagged:
        message += "; increase n_particles"
    result = MCNoise(ratio=float(ratio), sd_diff=sd_diff, sd_loglik=sd_l,
                     mean_diff=float(np.mean([np.mean(d) for d in diffs])), ratios=[float(rel(x)) for x in sds],
                     num_draws=int(len(idx)), threshold=float(threshold), min_sd=float(min_sd), flagged=flagged,
                     message=message, shift=shift, shift_max=shift_max, bin_error=bin_error,
                     bin_error_max=bin_error_max, shift_threshold=float(shift_threshold),
                     bin_threshold=float(bin_threshold))
    if flagged and warn:
        warnings.warn(message, MCNoiseWarning, stacklevel=2)
    return result


def _mean_shift(flat: dict, d: np.ndarray) -> np.ndarray:
    """Each latent element's posterior-mean shift, in posterior sd, from the fit's posterior to the
    one with ``ℓ_k = ℓ₁ − d``: self-normalised importance weights ``exp(−d)`` on the draws."""
    if not np.all(np.isfinite(d)):
        return np.full(sum(int(np.prod(v.shape[1:])) for v in flat.values()), np.inf)
    logw = -(d - d.min())
    w = np.exp(logw - logw.max())
    w = w / w.sum()
    out = []
    for v in flat.values():
        x = np.asarray(v, dtype=float).reshape(len(d), -1)
        sd = x.std(0)
        keep = sd > 0
        out.append((w @ x[:, keep] - x[:, keep].mean(0)) / sd[keep])
    return np.concatenate(out) if out else np.zeros(0)


def _poisson_rate(fn):
    """The rate of a Poisson distribution, through ``to_event``/``mask`` wrappers; None otherwise."""
    import numpyro.distributions as dist

    while not isinstance(fn, dist.Poisson) and hasattr(fn, "base_dist"):
        fn = fn.base_dist
    return fn.rate if isinstance(fn, dist.Poisson) else None


def _bin_errors(models, kwargs_list, draws: dict) -> np.ndarray | None:
    """Per draw and bin, the sd over the models/keys of the Poisson-observed expected counts, in
    Poisson sd of the bin: array (draws, bins), or None when no observed site is Poisson."""
    from numpyro import handlers

    n = len(next(iter(draws.values()))) if draws else 0
    per_draw = []
    for s in range(n):
        point = {k: v[s] for k, v in draws.items()}
        rates = []
        for m, kw in zip(models, kwargs_list):
            tr = handlers.trace(handlers.substitute(handlers.seed(m, 0), data=point)).get_trace(**kw)
            r = [np.asarray(_poisson_rate(site["fn"]), dtype=float).ravel() for site in tr.values()
                 if site["type"] == "sample" and site.get("is_observed") and _poisson_rate(site["fn"]) is not None]
            if not r:
                return None
            rates.append(np.concatenate(r))
        rates = np.stack(rates)
        per_draw.append(rates.std(0, ddof=1) / np.sqrt(np.maximum(rates.mean(0), 1e-300)))
    return np.stack(per_draw) if per_draw else None


__all__ = [
    "MCNoise",
    "MCNoiseWarning",
    "MC_BIN_ERROR_MAX",
    "MC_NOISE_MIN_SD",
    "MC_NOISE_THRESHOLD",
    "MC_SHIFT_MAX",
    "mc_noise",
]
