"""Maximum a posteriori fits with SVI and an ``AutoDelta`` guide."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import optax
from numpyro.infer import SVI, Trace_ELBO, init_to_median
from numpyro.infer.autoguide import AutoDelta

from ppl_bmc import _checks


@dataclass
class MapResult:
    """Result of :func:`fit_map`.

    Attributes
    ----------
    params : dict[str, numpy.ndarray]
        MAP values of the latent sites (constrained space), keyed by site name.
    losses : numpy.ndarray (num_steps,)
        Negative log joint density along the optimisation.
    converged : bool
        Whether the mean loss over the last 10% of steps changed by less than ``rtol``
        (relative) from the 10% before.
    model, model_kwargs :
        The model and its keyword arguments (for :func:`ppl_bmc.infer.to_inference_data`).
    """

    params: dict
    losses: np.ndarray
    converged: bool
    model: object = field(default=None, repr=False)
    model_kwargs: dict | None = field(default=None, repr=False)


def fit_map(
    model,
    *,
    rng_key,
    num_steps: int = 2000,
    learning_rate: float = 0.01,
    rtol: float = 1e-3,
    init_strategy=init_to_median,
    progress_bar: bool = False,
    **model_kwargs,
) -> MapResult:
    """MAP estimate of ``model(**model_kwargs)`` by SVI with ``AutoDelta`` and Adam (optax).

    ``rng_key`` seeds the SVI state only; the likelihood's own key (common random numbers)
    is part of ``model_kwargs``.  ``num_steps`` ≥ 10 Adam steps of size ``learning_rate`` > 0
    (in the unconstrained space); ``progress_bar`` shows NumPyro's SVI bar (tqdm).  The
    convergence test is reported in :attr:`MapResult.converged`, not enforced.
    """
    rng_key = _checks.prng_key(rng_key, "rng_key")
    num_steps = _checks.positive_int(num_steps, "num_steps", minimum=10)
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate}")
    guide = AutoDelta(model, init_loc_fn=init_strategy)
    svi = SVI(model, guide, optax.adam(learning_rate), Trace_ELBO())
    result = svi.run(rng_key, num_steps, progress_bar=progress_bar, **model_kwargs)
    losses = np.asarray(result.losses)
    tail = max(num_steps // 10, 1)
    last, before = np.mean(losses[-tail:]), np.mean(losses[-2 * tail : -tail])
    converged = bool(np.isfinite(last) and abs(last - before) <= rtol * max(abs(last), 1.0))
    median = guide.median(result.params)
    params = {name: np.asarray(value) for name, value in median.items()}
    return MapResult(params=params, losses=losses, converged=converged, model=model, model_kwargs=dict(model_kwargs))


__all__ = ["fit_map", "MapResult"]
