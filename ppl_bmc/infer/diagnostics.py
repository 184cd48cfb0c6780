"""When not to trust a posterior: sampler diagnostics.

:func:`diagnostics` reads an ArviZ object and reports r̂, bulk/tail ESS, divergences, the
energy BFMI and NUTS tree depth against the usual thresholds.  The simulated likelihood's own
noise is :func:`ppl_bmc.infer.noise.mc_noise`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np

from ppl_bmc.infer import _arviz

#: r̂ above this is a convergence failure (Vehtari et al. 2021, Bayesian Analysis 16, 667).
R_HAT_MAX = 1.01
#: Bulk and tail ESS below this many per chain are too few for reliable intervals (same reference).
ESS_PER_CHAIN_MIN = 100
#: Energy BFMI below this signals poor exploration of the energy levels (Betancourt 2016).
BFMI_MIN = 0.3
class DiagnosticWarning(UserWarning):
    """A sampler diagnostic is outside its recommended range."""


def bfmi(energy) -> np.ndarray:
    """Energy Bayesian fraction of missing information per chain.

    ``energy`` : array ``(chain, draw)`` of the Hamiltonian at each draw.  Returns ``(chain,)``:
    ``mean(diff(E)²) / var(E)``; values below :data:`BFMI_MIN` mean the momentum resampling
    explores the energy distribution poorly (heavy tails, bad mass matrix).
    """
    energy = np.asarray(energy, dtype=float)
    if energy.ndim != 2 or energy.shape[1] < 3:
        raise ValueError(f"energy must have shape (chain, draw) with draw >= 3, got {energy.shape}")
    return np.mean(np.diff(energy, axis=1) ** 2, axis=1) / np.var(energy, axis=1)


@dataclass
class Diagnostics:
    """Result of :func:`diagnostics` (NaN/None where a quantity does not apply).

    Attributes
    ----------
    num_chains, num_draws : int
    r_hat_max : float
        Largest rank-normalised split r̂ over all scalar parameters.
    ess_bulk_min, ess_tail_min : float
        Smallest bulk and tail effective sample sizes (draws, all chains together).
    divergences : int
        Post-warmup divergent transitions (all chains).
    bfmi : list[float]
        Energy BFMI per chain.
    tree_depth_max : int or None
        Deepest NUTS tree; ``max_tree_depth_hits`` draws reached ``max_tree_depth``.
    warnings : list[str]
        One line per failed check (empty when all is well).
    """

    num_chains: int
    num_draws: int
    r_hat_max: float = math.nan
    ess_bulk_min: float = math.nan
    ess_tail_min: float = math.nan
    divergences: int = 0
    bfmi: list = field(default_factory=list)
    tree_depth_max: int | None = None
    max_tree_depth: int | None = None
    max_tree_depth_hits: int = 0
    warnings: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.warnings

    def as_dict(self) -> dict:
        return _jsonable(asdict(self))


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return None if not math.isfinite(float(obj)) else float(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def diagnostics(data, *, var_names=None, max_tree_depth: int | None = 10, r_hat_max: float = R_HAT_MAX,
                ess_per_chain_min: float = ESS_PER_CHAIN_MIN, bfmi_min: float = BFMI_MIN,
                warn: bool = False) -> Diagnostics:
    """r̂, ESS, divergences, BFMI and tree depth of an ArviZ posterior.

    Parameters
    ----------
    data : InferenceData or DataTree
        With a ``posterior`` group, and ``sample_stats`` (``diverging``, ``energy``,
        ``tree_depth``) where available.
    var_names : list of str or None
        Parameters checked for r̂/ESS (default all posterior variables).
    max_tree_depth : int or None
        The NUTS limit; draws whose ``tree_depth`` reaches it are counted.  ``None`` skips the
        check (HMC, Laplace draws).
    r_hat_max, ess_per_chain_min, bfmi_min : float
        Thresholds (defaults :data:`R_HAT_MAX`, :data:`ESS_PER_CHAIN_MIN`, :data:`BFMI_MIN`).
    warn : bool
        Also issue each finding as a :class:`DiagnosticWarning`.
    """
    post = _arviz.group(data, "posterior")
    num_chains, num_draws = int(post.sizes["chain"]), int(post.sizes["draw"])
    out = Diagnostics(num_chains=num_chains, num_draws=num_draws, max_tree_depth=max_tree_depth)
    if num_draws >= 4:
        table = _arviz.summary(data, var_names=var_names)
        out.r_hat_max = float(np.nanmax(table["r_hat"])) if len(table) else math.nan
        out.ess_bulk_min = float(np.nanmin(table["ess_bulk"])) if len(table) else math.nan
        out.ess_tail_min = float(np.nanmin(table["ess_tail"])) if len(table) else math.nan
        if num_chains > 1 and out.r_hat_max > r_hat_max:
            out.warnings.append(f"r_hat up to {out.r_hat_max:.3f} > {r_hat_max}: chains have not converged")
        ess_min = ess_per_chain_min * num_chains
        if min(out.ess_bulk_min, out.ess_tail_min) < ess_min:
            out.warnings.append(f"ESS bulk/tail down to {out.ess_bulk_min:.0f}/{out.ess_tail_min:.0f} < {ess_min:.0f} "
                                f"({ess_per_chain_min:g} per chain): draw more")
    stats = _arviz.group(data, "sample_stats") if "sample_stats" in _arviz.groups(data) else None
    if stats is not None and "diverging" in stats:
        out.divergences = int(np.asarray(stats["diverging"]).sum())
        if out.divergences:
            out.warnings.append(f"{out.divergences} divergent transitions: the posterior may be biased "
                                f"(raise target_accept, reparameterise)")
    if stats is not None and "energy" in stats and num_draws >= 3:
        out.bfmi = [float(b) for b in bfmi(np.asarray(stats["energy"]))]
        low = [b for b in out.bfmi if b < bfmi_min]
        if low:
            out.warnings.append(f"energy BFMI {min(low):.2f} < {bfmi_min} in {len(low)} chain(s): poor exploration")
    if stats is not None and "tree_depth" in stats and max_tree_depth is not None:
        depth = np.asarray(stats["tree_depth"])
        out.tree_depth_max = int(depth.max())
        out.max_tree_depth_hits = int(np.sum(depth >= max_tree_depth))
        if out.max_tree_depth_hits:
            out.warnings.append(f"{out.max_tree_depth_hits} draws reached the maximum tree depth {max_tree_depth}: "
                                f"trajectories were cut short")
    if warn:
        for line in out.warnings:
            warnings.warn(line, DiagnosticWarning, stacklevel=2)
    return out


__all__ = [
    "BFMI_MIN",
    "DiagnosticWarning",
    "Diagnostics",
    "ESS_PER_CHAIN_MIN",
    "R_HAT_MAX",
    "bfmi",
    "diagnostics",
]
