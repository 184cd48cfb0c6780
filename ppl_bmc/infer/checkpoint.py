"""Checkpoints of the block-wise sampler (:func:`ppl_bmc.infer.run_mcmc`): the sampler's state
on the host, written atomically, read back to resume."""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ppl_bmc._io import atomic_write

__all__ = ["Checkpoint"]


@dataclass(frozen=True)
class _Key:
    """A typed PRNG key array stored as its raw data (picklable without JAX internals)."""

    data: np.ndarray
    impl: str


def _to_host(tree):
    def leaf(x):
        if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return _Key(np.asarray(jax.random.key_data(x)), str(jax.random.key_impl(x)))
        return np.asarray(x)

    return jax.tree_util.tree_map(leaf, tree)


def _to_device(tree):
    def leaf(x):
        if isinstance(x, _Key):
            return jax.random.wrap_key_data(jnp.asarray(x.data), impl=x.impl)
        return jnp.asarray(x)

    return jax.tree_util.tree_map(leaf, tree, is_leaf=lambda x: isinstance(x, _Key))


@dataclass
class Checkpoint:
    """Everything needed to continue a :func:`run_mcmc` run.

    Attributes
    ----------
    state : pytree of numpy arrays
        The sampler's state after the last completed block, one leading ``chain`` axis
        (PRNG keys stored as raw key data).
    z : dict[str, numpy.ndarray (num_chains, n, ...)]
        Post-warmup draws so far in the *unconstrained* space, ``n ≥ 0``.
    stats : dict[str, numpy.ndarray (num_chains, n)]
        The per-draw sampler fields of :data:`ppl_bmc.infer.mcmc.STAT_FIELDS` for the same draws.
    iteration : int
        Iterations done per chain, warmup included.
    num_warmup, num_samples, num_chains, block_size : int
        The run's sizes (``num_samples``: requested post-warmup draws per chain).
    settings : dict
        Kernel settings (kernel, dense_mass, target_accept_prob, max_tree_depth, num_steps,
        trajectory_length, chain_method); a resumed run must use the same ones.
    meta : dict
        Free-form data of the caller (the ``ppl-bmc`` command stores its configuration here).
    """

    state: Any
    z: dict
    stats: dict
    iteration: int
    num_warmup: int
    num_samples: int
    num_chains: int
    block_size: int
    settings: dict
    meta: dict = field(default_factory=dict)

    @property
    def num_draws(self) -> int:
        """Post-warmup draws per chain saved so far."""
        return max(self.iteration - self.num_warmup, 0)

    @property
    def done(self) -> bool:
        return self.num_draws >= self.num_samples

    def save(self, path) -> str:
        """Write the checkpoint atomically (pickle; read it back with :meth:`load`)."""

        def write(tmp):
            with open(tmp, "wb") as fh:
                pickle.dump(self, fh, protocol=pickle.HIGHEST_PROTOCOL)

        return atomic_write(path, write)

    @staticmethod
    def load(path) -> "Checkpoint":
        """Read a checkpoint written by :meth:`save` (a pickle: load only your own files)."""
        with open(os.fspath(path), "rb") as fh:
            ckpt = pickle.load(fh)
        if not isinstance(ckpt, Checkpoint):
            raise ValueError(f"{path} does not hold a ppl_bmc checkpoint")
        return ckpt
