"""A BMC particle budget that follows the data: enough particles that Monte-Carlo noise stays
below the Poisson noise of the counts.

:func:`particle_budget` runs a pilot — ``replicas`` independent BMC estimates of
:func:`ppl_bmc.expected_counts` at ``pilot_particles`` and at 4 × ``pilot_particles`` per bin —
measures each bin's Monte-Carlo standard error at both sizes, and finds the fewest particles per
bin that bring every bin's error to at most ``target`` times its Poisson sd √μ: between the two
sizes by the measured power law (with Latin-hypercube uniforms the error falls faster than
1/√N), beyond the larger one as 1/√N (conservative: the stratification gain fades as N grows),
below the smaller one by the measured power law clipped to [1/2, 3/2].

Example
-------
>>> import jax, numpy as np, ppl_bmc
>>> from ppl_bmc.geometry import VoxelGrid
>>> scene = ppl_bmc.Scene(VoxelGrid((-50.0, 0.0), (50.0, 60.0), (3, 3)))
>>> det = ppl_bmc.Detector((0.0, 0.0), [-30.0, 0.0, 30.0], exposure_s=86400.0)
>>> budget = ppl_bmc.particle_budget(scene, np.full((3, 3), 2650.0), det, key=jax.random.key(0))
>>> budget.n_particles >= 16 and bool(np.all(budget.se_over_poisson <= 0.3))
True
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import jax
import numpy as np

from ppl_bmc import _checks
from ppl_bmc.estimators import BMC

__all__ = ["ParticleBudget", "particle_budget", "DEFAULT_TARGET"]

#: Largest MC standard error per bin, in Poisson sd of the bin, that a budget aims for.
DEFAULT_TARGET = 0.3


@dataclass(frozen=True)
class ParticleBudget:
    """Result of :func:`particle_budget`.

    Attributes
    ----------
    n_particles : int
        Particles per bin to use.
    se_over_poisson : ndarray (n_detectors, n_bins)
        Predicted MC standard error of each bin at ``n_particles``, in Poisson sd √μ.
    pilot_particles : tuple of int
        The two pilot sizes (particles per bin).
    pilot_se_over_poisson : ndarray (2, n_detectors, n_bins)
        The pilot's measured MC standard error at each size, in Poisson sd.
    expected : ndarray (n_detectors, n_bins)
        The pilot's mean expected counts μ.
    target : float
        The aim: ``se_over_poisson ≤ target`` in every bin.
    missed : tuple of (detector, bin)
        Bins whose predicted error stays above ``target`` at ``n_particles`` (capped by
        ``max_particles``); empty when the budget is met.
    """

    n_particles: int
    se_over_poisson: np.ndarray
    pilot_particles: tuple
    pilot_se_over_poisson: np.ndarray
    expected: np.ndarray
    target: float
    missed: tuple

    @property
    def met(self) -> bool:
        """Whether every bin meets the target."""
        return not self.missed


def particle_budget(scene, params, detectors, *, key, target: float = DEFAULT_TARGET, pilot_particles: int = 64,
                    replicas: int = 8, min_particles: int = 16, max_particles: int = 1 << 16,
                    method: BMC | None = None, warn: bool = True) -> ParticleBudget:
    """Particles per bin for BMC :func:`ppl_bmc.expected_counts` so that every bin's MC standard
    error is at most ``target`` × its Poisson sd.

    Parameters
    ----------
    scene, params, detectors
        As for :func:`ppl_bmc.expected_counts` (``params``: a representative field, e.g. the
        prior mean; concrete values).
    key : jax PRNG key
        Keys of the pilot replicas.
    target : float > 0
        Largest MC standard error per bin in Poisson sd (default 0.3).
    pilot_particles, replicas : int
        Particles per bin of the smaller pilot (≥ 2; the larger has 4 ×) and independent
        estimates at each size (≥ 3).
    min_particles, max_particles : int
        Bounds of the budget.
    method : BMC or None
        Its ``energy``, ``stratified``, ``n_steps`` are used (its key and particles are not);
        default ``BMC(key)``.
    warn : bool
        ``UserWarning`` naming the bins that miss the target at ``max_particles``.

    Returns
    -------
    :class:`ParticleBudget`
    """
    from ppl_bmc.likelihood import expected_counts  # the front door sits above this module's callers

    key = _checks.prng_key(key)
    if not float(target) > 0:
        raise ValueError(f"target must be > 0 (MC standard error in Poisson sd), got {target}")
    pilot = _checks.positive_int(pilot_particles, "pilot_particles")
    if pilot < 2:
        raise ValueError(f"pilot_particles must be >= 2, got {pilot}")
    replicas = _checks.positive_int(replicas, "replicas")
    if replicas < 3:
        raise ValueError(f"replicas must be >= 3 (a standard error from independent estimates), got {replicas}")
    lo, hi = _checks.positive_int(min_particles, "min_particles"), _checks.positive_int(max_particles, "max_particles")
    if lo > hi:
        raise ValueError(f"min_particles ({lo}) must be <= max_particles ({hi})")
    base = method if method is not None else BMC(key)
    if not isinstance(base, BMC):
        raise ValueError(f"method must be a ppl_bmc.BMC or None, got {method!r}")
    sizes = (pilot, 4 * pilot)
    ratios, mus = [], []
    for size, k_size in zip(sizes, jax.random.split(key)):
        est = []
        for k in jax.random.split(k_size, replicas):
            m = BMC(k, size, base.n_steps, base.adjoint, base.energy, base.stratified)
            est.append(np.asarray(expected_counts(scene, params, detectors, method=m), dtype=float))
        est = np.stack(est)
        mu = est.mean(0)
        mus.append(mu)
        ratios.append(est.std(0, ddof=1) / np.sqrt(np.maximum(mu, 1e-300)))
    mu, pilot_ratio = mus[1], np.stack(ratios)
    n = int(min(max(math.ceil(np.max(_needed(sizes, pilot_ratio, float(target)))), lo), hi))
    ratio = _predicted(sizes, pilot_ratio, n)
    missed = tuple((int(d), int(b)) for d, b in zip(*np.nonzero(ratio > target)))
    if missed and warn:
        worst = np.unravel_index(np.argmax(ratio), ratio.shape)
        warnings.warn(f"particle_budget: {len(missed)} bin(s) keep an MC error above {target:g} Poisson sd at "
                      f"max_particles={hi} (worst: detector {worst[0]}, bin {worst[1]}: {ratio[worst]:.2f}); bins "
                      f"(detector, bin): {list(missed)[:10]}{' ...' if len(missed) > 10 else ''}", stacklevel=2)
    return ParticleBudget(n, ratio, sizes, pilot_ratio, mu, float(target), missed)


def _slopes(sizes, ratios):
    """Per-bin power of the error's fall, -d ln(error)/d ln N, between the two pilot sizes."""
    tiny = 1e-300
    return np.log(np.maximum(ratios[0], tiny) / np.maximum(ratios[1], tiny)) / math.log(sizes[1] / sizes[0])


def _predicted(sizes, ratios, n):
    """Each bin's MC error (Poisson sd) at ``n`` particles from the two pilot errors ``ratios``."""
    a = _slopes(sizes, ratios)
    between = ratios[0] * (n / sizes[0]) ** -np.clip(a, 0.0, None)
    if n >= sizes[1]:
        return ratios[1] * math.sqrt(sizes[1] / n)
    if n >= sizes[0]:
        return between
    return ratios[0] * (sizes[0] / n) ** np.clip(a, 0.5, 1.5)


def _needed(sizes, ratios, target):
    """Per-bin particles (real) that bring the predicted error to ``target``."""
    tiny = 1e-300
    r0, r1 = np.maximum(ratios[0], tiny), np.maximum(ratios[1], tiny)
    a = _slopes(sizes, ratios)
    above = sizes[1] * (r1 / target) ** 2
    with np.errstate(over="ignore"):  # the branches np.where does not pick may overflow
        between = sizes[0] * (r0 / target) ** (1.0 / np.clip(a, 1e-6, None))  # r0 > target >= r1: a > 0
    below = sizes[0] * (r0 / target) ** (1.0 / np.clip(a, 0.5, 1.5))
    return np.where(r1 > target, above, np.where(r0 > target, between, below))
