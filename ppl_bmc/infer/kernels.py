"""NumPyro's NUTS and HMC kernels as the runners of :mod:`ppl_bmc.infer.mcmc` build them, and how
chains are laid out over devices."""

from __future__ import annotations

from typing import Sequence

import jax
import numpy as np
from numpyro.infer import HMC, NUTS, init_to_median

from ppl_bmc import _checks

#: Kernels known to :func:`make_kernel`.
KERNELS = ("nuts", "hmc")

#: Chain methods (see :func:`default_chain_method`).
CHAIN_METHODS = ("parallel", "vectorized", "sequential")


def default_chain_method(num_chains: int) -> str:
    """``parallel`` when there are enough devices (host devices on CPU), ``vectorized`` on one
    accelerator, ``sequential`` otherwise.

    On CPU, ``numpyro.set_host_device_count(n)`` must run before JAX starts for ``parallel`` to
    be possible (the ``ppl-bmc`` command does this).
    """
    if num_chains <= 1:
        return "sequential"
    if jax.local_device_count() >= num_chains:
        return "parallel"
    if jax.default_backend() != "cpu":
        return "vectorized"
    return "sequential"


def chain_devices(num_chains: int) -> int:
    """How many local devices ``chain_method="parallel"`` splits ``num_chains`` chains over: the
    most (up to all) that share them evenly; each runs ``num_chains / that`` chains vectorised."""
    return max(d for d in range(1, jax.local_device_count() + 1) if num_chains % d == 0)


def make_kernel(
    model,
    *,
    kernel: str = "nuts",
    dense_mass: bool | Sequence[tuple[str, ...]] = False,
    target_accept_prob: float = 0.8,
    max_tree_depth: int = 10,
    num_steps: int | None = None,
    trajectory_length: float | None = None,
    init_strategy=init_to_median,
):
    """A NumPyro ``NUTS`` or ``HMC`` kernel for ``model``.

    Parameters
    ----------
    kernel : {"nuts", "hmc"}
    dense_mass : bool or sequence of tuples of site names
        ``True``: a dense (full covariance) mass matrix instead of a diagonal one, adapted during
        warmup; a structured one as NumPyro takes it, e.g. ``[("efficiency", "sky_norm")]``: a
        dense block over those latent sites, diagonal elsewhere (cheap where a few nuisances
        trade against each other beside thousands of voxels).
    target_accept_prob : float in (0, 1)
        Step-size adaptation target.
    max_tree_depth : int ≥ 1
        NUTS only: at most ``2**max_tree_depth - 1`` leapfrog steps per draw.
    num_steps, trajectory_length :
        HMC only: a fixed number of leapfrog steps, or the trajectory length (in the
        unconstrained parameter space; default 2π) from which it follows.
    """
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    if not 0.0 < target_accept_prob < 1.0:
        raise ValueError(f"target_accept_prob must be in (0, 1), got {target_accept_prob}")
    dense_mass = _dense_mass(dense_mass)
    common = dict(dense_mass=dense_mass if isinstance(dense_mass, bool) else list(dense_mass),  # NumPyro wants a list
                  target_accept_prob=float(target_accept_prob), init_strategy=init_strategy)
    if kernel == "nuts":
        if num_steps is not None or trajectory_length is not None:
            raise ValueError("num_steps and trajectory_length apply to kernel='hmc' only")
        max_tree_depth = _checks.positive_int(max_tree_depth, "max_tree_depth")
        return NUTS(model, max_tree_depth=max_tree_depth, **common)
    if num_steps is not None:
        num_steps = _checks.positive_int(num_steps, "num_steps")
    if trajectory_length is not None and not trajectory_length > 0:
        raise ValueError(f"trajectory_length must be > 0, got {trajectory_length}")
    if num_steps is not None and trajectory_length is not None:
        raise ValueError("give num_steps or trajectory_length for HMC, not both")
    # numpyro adapts the step size only when one of the two is None (trajectory length 2π by default)
    kw = {"trajectory_length": None} if num_steps is not None else {} if trajectory_length is None else {
        "trajectory_length": float(trajectory_length)}
    return HMC(model, num_steps=num_steps, **kw, **common)


def _dense_mass(value):
    """``dense_mass`` as a bool, or as a tuple of tuples of site names (comparable, picklable)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    try:
        blocks = None if isinstance(value, str) or any(isinstance(b, str) for b in value) else \
            tuple(tuple(block) for block in value)
    except TypeError:
        blocks = None
    if not blocks or not all(blocks) or not all(isinstance(n, str) for block in blocks for n in block):
        raise ValueError(f"dense_mass must be a bool or a sequence of tuples of latent site names, e.g. "
                         f"[('a', 'b')], got {value!r}")
    return blocks


__all__ = ["CHAIN_METHODS", "KERNELS", "chain_devices", "default_chain_method", "make_kernel"]
