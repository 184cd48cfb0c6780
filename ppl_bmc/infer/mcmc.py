"""NUTS/HMC runners: a block-wise sampler that can be checkpointed and resumed.

:func:`run_mcmc` (and its two spellings :func:`run_nuts`, :func:`run_hmc`) runs NumPyro's
kernels in *blocks* of iterations: the block is one compiled ``lax.scan`` of ``kernel.sample``
(compiled once, reused for every block), the sampler's full state comes back to the host after
each block, and a ``checkpoint`` callback receives a :class:`Checkpoint` that :func:`run_mcmc`
can later ``resume`` from.  Warmup adaptation is driven by the state's iteration counter, so a
block may straddle the end of warmup and a resumed run continues the adaptation exactly where it
stopped.  Chains on several devices are split with ``shard_map``.  All three return one type,
:class:`McmcResult`, which reads like a finished ``numpyro.infer.MCMC``.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, PartitionSpec
from numpyro.infer import init_to_median

from ppl_bmc import _checks
# (checkpoints pickled before the split name ppl_bmc.infer.mcmc.Checkpoint: this import resolves them)
from ppl_bmc.infer.checkpoint import Checkpoint, _to_device, _to_host
from ppl_bmc.infer.kernels import CHAIN_METHODS, _dense_mass, chain_devices, default_chain_method, make_kernel

#: Extra per-draw fields kept for diagnostics (divergences, energy for BFMI, tree depth).
EXTRA_FIELDS = ("diverging", "energy", "num_steps", "accept_prob", "potential_energy")

def _check_sizes(num_warmup, num_samples, num_chains):
    for name, value, minimum in (("num_warmup", num_warmup, 0), ("num_samples", num_samples, 1), ("num_chains", num_chains, 1)):
        _checks.positive_int(value, name, minimum=minimum)


def run_nuts(model, **options) -> McmcResult:
    """NUTS on a NumPyro ``model(**model_kwargs)``: :func:`run_mcmc` with ``kernel="nuts"``.

    Every runner of this package returns one type, :class:`McmcResult`, which reads like a
    finished ``numpyro.infer.MCMC`` (``get_samples``, ``get_extra_fields``, ``print_summary``)
    and goes to ArviZ through :func:`ppl_bmc.infer.to_inference_data`.  The options
    (``rng_key``, ``num_warmup``, ``num_samples``, ``num_chains``, ``chain_method``,
    ``dense_mass``, ``target_accept_prob``, ``max_tree_depth``, ``init_strategy``,
    ``block_size``, ``checkpoint``, ``resume``, ``progress_bar``) are :func:`run_mcmc`'s;
    remaining keywords go to the model.  Chains on several devices run through ``shard_map``
    (no ``pmap``).
    """
    if "kernel" in options:
        raise ValueError("run_nuts: kernel is 'nuts' (use run_hmc or run_mcmc(kernel=...))")
    return run_mcmc(model, kernel="nuts", **options)


def run_hmc(model, **options) -> McmcResult:
    """Static-trajectory HMC on ``model(**model_kwargs)``: :func:`run_mcmc` with ``kernel="hmc"``
    (step size and mass matrix adapted in warmup; ``num_steps`` leapfrog steps per draw, or
    ``trajectory_length`` / step size).  Options and return value as :func:`run_nuts`.
    """
    if "kernel" in options:
        raise ValueError("run_hmc: kernel is 'hmc' (use run_nuts or run_mcmc(kernel=...))")
    return run_mcmc(model, kernel="hmc", **options)


# --------------------------------------------------------------------------- block sampler

#: Per-draw sampler fields collected by :func:`run_mcmc` (``step_size`` is the adapted one).
STAT_FIELDS = EXTRA_FIELDS + ("step_size",)


@dataclass
class McmcResult:
    """Draws of :func:`run_mcmc`.

    Attributes
    ----------
    samples : dict[str, numpy.ndarray (num_chains, num_samples, ...)]
        Latent sites in their constrained space and the model's deterministic sites.
    stats : dict[str, numpy.ndarray (num_chains, num_samples)]
        :data:`STAT_FIELDS` per draw.
    z : dict[str, numpy.ndarray (num_chains, num_samples, ...)]
        The latent sites in the unconstrained space the sampler moves in.
    checkpoint : Checkpoint
        The final state (resume it with a larger ``num_samples`` to draw more).
    kernel : str
        ``"nuts"`` or ``"hmc"``.
    max_tree_depth : int
        NUTS's limit (for the tree-depth diagnostic).
    chain_method : str
    elapsed : float
        Wall time of this call in seconds (compilation included).
    model, model_kwargs :
        The model and its keyword arguments (for :func:`ppl_bmc.infer.to_inference_data`).
    """

    samples: dict
    stats: dict
    z: dict
    checkpoint: Checkpoint
    kernel: str
    max_tree_depth: int
    chain_method: str
    elapsed: float
    model: Any = field(default=None, repr=False)
    model_kwargs: dict | None = field(default=None, repr=False)

    @property
    def num_chains(self) -> int:
        return self.checkpoint.num_chains

    @property
    def num_samples(self) -> int:
        return self.checkpoint.num_samples

    # numpyro.infer.MCMC's read interface, so code written against a finished MCMC works as is

    def get_samples(self, group_by_chain: bool = False) -> dict:
        """The draws: ``{site: array (num_chains, num_samples, ...)}`` with ``group_by_chain``,
        else chains concatenated, ``(num_chains * num_samples, ...)`` (as ``MCMC.get_samples``)."""
        return {k: v if group_by_chain else v.reshape((-1,) + v.shape[2:]) for k, v in self.samples.items()}

    def get_extra_fields(self, group_by_chain: bool = False) -> dict:
        """Per-draw sampler fields (:data:`STAT_FIELDS`), shaped as :meth:`get_samples`."""
        return {k: v if group_by_chain else v.reshape((-1,) + v.shape[2:]) for k, v in self.stats.items()}

    def print_summary(self, prob: float = 0.9, exclude_deterministic: bool = True) -> None:
        """NumPyro's summary table (mean, sd, median, ``prob`` interval, n_eff, r̂) of the latent
        sites (and the deterministic ones with ``exclude_deterministic=False``), then the number
        of divergences."""
        from numpyro.diagnostics import print_summary

        sites = {k: v for k, v in self.samples.items() if not exclude_deterministic or k in self.z}
        print_summary(sites, prob=prob, group_by_chain=True)
        print(f"Number of divergences: {int(np.sum(self.stats['diverging']))}")


def _collect(state):
    return {
        "z": state.z,
        "diverging": state.diverging,
        "energy": state.energy,
        "num_steps": state.num_steps,
        "accept_prob": state.accept_prob,
        "potential_energy": state.potential_energy,
        "step_size": state.adapt_state.step_size,
    }


def _block_runner(sampler, model_kwargs, block_size, chain_method, num_chains):
    """``run(state (C, ...)) -> (state, collected (C, block_size, ...))``, compiled once.

    The sampler was initialised with a batch of keys, so ``sampler.sample`` is vectorised over a
    leading chain axis: ``vectorized`` runs all chains in one call, ``sequential`` one chain
    (a batch of one) after the other, ``parallel`` splits the chains evenly over devices
    (``shard_map`` over a one-axis ``Mesh`` named ``"chains"``; each device runs its share
    vectorised, so chains = devices × k).
    """

    def batched(state):
        def body(s, _):
            s = sampler.sample(s, (), model_kwargs)
            return s, _collect(s)

        state, out = lax.scan(body, state, None, length=block_size)
        return state, jax.tree_util.tree_map(lambda x: jnp.swapaxes(x, 0, 1), out)

    if chain_method == "vectorized":
        return jax.jit(batched)
    if chain_method == "parallel":
        mesh = Mesh(np.asarray(jax.local_devices()[:chain_devices(num_chains)]), ("chains",))
        spec = PartitionSpec("chains")  # every leaf of the state and the draws: chains first
        return jax.jit(jax.shard_map(batched, mesh=mesh, in_specs=spec, out_specs=spec, check_vma=False))
    single = jax.jit(batched)

    def sequential(state):
        outs = [single(jax.tree_util.tree_map(lambda x: x[c : c + 1], state)) for c in range(num_chains)]
        return jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs), *outs)

    return sequential


def _init_states(sampler, keys, num_warmup, model_kwargs):
    """Initial states of all chains, ``(C, ...)``; leaves ``sampler.sample`` vectorised over chains.

    Compiled (as NumPyro does for parallel chains): faster than NumPyro's eager initialisation.
    """
    try:
        return jax.jit(lambda k: sampler.init(k, num_warmup, None, (), model_kwargs))(keys)
    except RuntimeError as err:  # "Cannot find valid initial parameters": bad data or prior
        raise ValueError(f"no valid initial point for the chains: {str(err).splitlines()[0]}") from None


def _progress(enabled, total, desc):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm ships with numpyro
        return None
    return tqdm(total=total, desc=desc, unit="it", file=sys.stderr, dynamic_ncols=True)


def run_mcmc(
    model,
    *,
    rng_key=None,
    num_warmup: int = 500,
    num_samples: int = 500,
    num_chains: int = 2,
    kernel: str = "nuts",
    dense_mass: bool | Sequence[tuple[str, ...]] = False,
    target_accept_prob: float = 0.8,
    chain_method: str | None = None,
    max_tree_depth: int = 10,
    num_steps: int | None = None,
    trajectory_length: float | None = None,
    init_strategy=init_to_median,
    block_size: int | None = None,
    checkpoint: Callable[[Checkpoint], None] | None = None,
    resume: Checkpoint | None = None,
    progress_bar: bool = False,
    meta: dict | None = None,
    **model_kwargs,
) -> McmcResult:
    """NUTS or HMC on ``model(**model_kwargs)`` in blocks of ``block_size`` iterations.

    Each block is one compiled call (compiled once for the run); after each block the sampler's
    state and the draws so far go to ``checkpoint(Checkpoint)`` if given.  ``resume=`` continues a
    :class:`Checkpoint` (the same model and kernel settings; ``num_samples`` may differ: the run
    ends when there are ``num_samples`` post-warmup draws per chain).  An interrupted run
    (``KeyboardInterrupt`` between or inside blocks) loses at most the block in progress.

    Parameters
    ----------
    rng_key : JAX PRNG key
        Seeds the chains' initial points and the sampler (not the likelihood: its key is part of
        ``model_kwargs``).  Not needed with ``resume``.
    num_warmup : int ≥ 0, num_samples : int ≥ 1, num_chains : int ≥ 1
        Iterations per chain.
    chain_method : {"parallel", "vectorized", "sequential"} or None
        ``None``: :func:`default_chain_method`.
    kernel, dense_mass, target_accept_prob, max_tree_depth, num_steps, trajectory_length :
        See :func:`make_kernel`.
    block_size : int ≥ 1 or None
        Iterations per block; default ``ceil((num_warmup + num_samples) / 20)``.  The last block
        may run past ``num_samples``; the extra draws are kept in the checkpoint, not returned.
    progress_bar : bool
        A ``tqdm`` bar on stderr, advanced per block.
    meta : dict
        Stored in the checkpoints as :attr:`Checkpoint.meta`.

    Returns
    -------
    McmcResult
    """
    _check_sizes(num_warmup, num_samples, num_chains)
    settings = dict(kernel=kernel, dense_mass=_dense_mass(dense_mass), target_accept_prob=float(target_accept_prob),
                    max_tree_depth=int(max_tree_depth), num_steps=num_steps, trajectory_length=trajectory_length)
    if resume is not None:
        saved = {k: resume.settings.get(k) for k in settings}
        bad = [k for k in settings if saved[k] != settings[k]]
        if bad:
            raise ValueError("resume: kernel settings differ from the checkpoint's: "
                             + ", ".join(f"{k}={settings[k]!r} (saved {saved[k]!r})" for k in bad))
        if resume.num_chains != num_chains or resume.num_warmup != num_warmup:
            raise ValueError(f"resume: num_chains/num_warmup must be the checkpoint's ({resume.num_chains}, "
                             f"{resume.num_warmup}), got ({num_chains}, {num_warmup})")
        block_size = resume.block_size  # the chain method may change: the state is per chain either way
    elif rng_key is None:
        raise ValueError("rng_key must be a JAX PRNG key, e.g. jax.random.key(0), got None")
    if block_size is None:
        block_size = max(1, math.ceil((num_warmup + num_samples) / 20))
    block_size = _checks.positive_int(block_size, "block_size")
    chain_method = chain_method or default_chain_method(num_chains)
    if chain_method not in CHAIN_METHODS:
        raise ValueError(f"chain_method must be one of {CHAIN_METHODS}, got {chain_method!r}")
    if chain_method == "parallel" and chain_devices(num_chains) < 2:
        raise ValueError(f"chain_method='parallel' needs at least 2 devices that share num_chains ({num_chains}) "
                         f"evenly, got {jax.local_device_count()} device(s); on CPU call "
                         "numpyro.set_host_device_count first")
    settings["chain_method"] = chain_method

    t0 = time.perf_counter()
    sampler = make_kernel(model, init_strategy=init_strategy, **{k: v for k, v in settings.items() if k != "chain_method"})
    if resume is None:
        rng_key = _checks.prng_key(rng_key, "rng_key")
        state = _init_states(sampler, jax.random.split(rng_key, num_chains), num_warmup, model_kwargs)
        ckpt = Checkpoint(state=_to_host(state), z={}, stats={}, iteration=0, num_warmup=num_warmup,
                          num_samples=num_samples, num_chains=num_chains, block_size=block_size,
                          settings=dict(settings), meta=dict(meta or {}))
    else:
        # kernel.init builds the sampler's transition function (its adaptation schedule follows
        # num_warmup); the state it returns is replaced by the saved one.
        _init_states(sampler, _to_device(resume.state).rng_key, num_warmup, model_kwargs)
        state = _to_device(resume.state)
        ckpt = Checkpoint(state=resume.state, z=dict(resume.z), stats=dict(resume.stats), iteration=resume.iteration,
                          num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains,
                          block_size=block_size, settings=dict(settings), meta=dict(meta or resume.meta))

    run_block = _block_runner(sampler, model_kwargs, block_size, chain_method, num_chains)
    total = num_warmup + num_samples
    bar = _progress(progress_bar, total, f"{kernel} ({num_chains} chains)")
    if bar is not None:
        bar.update(min(ckpt.iteration, total))
    try:
        while ckpt.iteration < total:
            state, out = run_block(state)
            out = jax.device_get(out)
            start = ckpt.iteration
            keep = max(0, start + block_size - max(num_warmup, start))  # post-warmup iterations in this block
            if keep:
                sl = slice(block_size - keep, block_size)
                new_z = {k: v[:, sl] for k, v in out["z"].items()}
                new_stats = {k: v[:, sl] for k, v in out.items() if k != "z"}
                ckpt.z = {k: np.concatenate([ckpt.z[k], v], axis=1) if k in ckpt.z else v for k, v in new_z.items()}
                ckpt.stats = {k: np.concatenate([ckpt.stats[k], v], axis=1) if k in ckpt.stats else v
                              for k, v in new_stats.items()}
            ckpt.iteration = start + block_size
            ckpt.state = _to_host(state)
            state = _to_device(ckpt.state)  # the same input layout every block: no recompilation
            if checkpoint is not None:
                checkpoint(ckpt)
            if bar is not None:
                n_div = int(ckpt.stats["diverging"].sum()) if "diverging" in ckpt.stats else 0
                bar.set_description(f"{kernel} {'warmup' if ckpt.iteration < num_warmup else 'sample'}")
                bar.set_postfix(divergences=n_div, step_size=f"{float(np.mean(out['step_size'][:, -1])):.3g}")
                bar.update(min(ckpt.iteration, total) - min(start, total))
    finally:
        if bar is not None:
            bar.close()

    z = {k: v[:, :num_samples] for k, v in ckpt.z.items()}
    stats = {k: v[:, :num_samples] for k, v in ckpt.stats.items()}
    constrain = sampler.postprocess_fn((), model_kwargs)
    from ppl_bmc.infer.predictive import map_draws

    samples = map_draws(constrain, z, batch_ndims=2)
    return McmcResult(samples=samples, stats=stats, z=z, checkpoint=ckpt, kernel=kernel,
                      max_tree_depth=int(max_tree_depth), chain_method=chain_method,
                      elapsed=time.perf_counter() - t0, model=model, model_kwargs=dict(model_kwargs))


__all__ = [
    "EXTRA_FIELDS",
    "McmcResult",
    "STAT_FIELDS",
    "run_hmc",
    "run_mcmc",
    "run_nuts",
]
