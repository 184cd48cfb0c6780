"""Gradient strategies as values (passed as ``adjoint=``, as diffrax does).

All three compute the same estimator — the mean BMC weight per reading — from the same
particle keys, and differ only in how the gradient with respect to the parameters is
obtained.  For one key they agree to float rounding.

* :class:`AutodiffAdjoint` — plain reverse mode through the ``lax.scan`` of steps.  The
  reference; memory grows linearly with the number of steps.
* :class:`ForwardSensitivity` — the paper's recursion ``∇W_k = W_{k-1}∇w_k + w_k∇W_{k-1}``,
  carried along each trajectory in its logarithmic form ``∇log W_k = ∇log W_{k-1} + ∇log w_k``
  (together with the tangent of the state).  Memory O(1) in the number of steps; cost grows
  with the number of parameters.
* :class:`ReplayAdjoint` — a ``jax.custom_vjp``: the forward pass keeps only each particle's
  final state and weight; the backward pass replays every trajectory from its saved key and
  accumulates vector-Jacobian products step by step.  Memory O(1) in the number of steps,
  cost independent of the number of parameters.

Kernels (:class:`ppl_bmc.transport.Kernel`) and parameters (any pytree of float arrays) are
the strategies' only inputs, so the muon transport and voxel fields use them unchanged.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
from jax import lax
from jax.flatten_util import ravel_pytree

from ppl_bmc import _checks
from ppl_bmc.transport import loop
from ppl_bmc.transport.sharding import pad_readings, replicate, shard_ctx, shard_readings, splits_particles

__all__ = ["Adjoint", "AutodiffAdjoint", "ForwardSensitivity", "ReplayAdjoint", "mean_weight"]


class Adjoint(ABC):
    """Base class of the gradient strategies (immutable, hashable values)."""

    @abstractmethod
    def mean_weight(self, kernel, params, ctx, streams, n_steps: int):
        """Mean weight per reading, shape ``(C,)``; see :func:`mean_weight`."""


def _primal(kernel, params, ctx, streams, n_steps):
    """The estimator without any gradient machinery: mean weight per reading, ``(C,)``."""
    _, log_w = loop.run(kernel, params, ctx, streams, n_steps, _dtype(params))
    return jnp.mean(jnp.exp(log_w), axis=1)


def _dtype(params):
    """Float dtype of the computation: the parameters' (float32 by default, float64 with x64)."""
    return jnp.result_type(*jax.tree_util.tree_leaves(params))


@dataclass(frozen=True)
class AutodiffAdjoint(Adjoint):
    """Reverse-mode AD through the whole scan (the reference; memory O(n_steps))."""

    def mean_weight(self, kernel, params, ctx, streams, n_steps):
        return _primal(kernel, params, ctx, streams, n_steps)


@dataclass(frozen=True)
class ForwardSensitivity(Adjoint):
    """The paper's forward recursion for ``∇W`` along each trajectory (memory O(1) in steps).

    The forward pass carries, for every particle, the tangent of the state and of the
    log-weight with respect to each (flattened) parameter, so its cost is about
    ``(1 + n_params)`` primal passes.  Use it for a few parameters.
    """

    def mean_weight(self, kernel, params, ctx, streams, n_steps):
        return _forward_sensitivity(kernel, n_steps, params, ctx, streams)


@partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _forward_sensitivity(kernel, n_steps, params, ctx, streams):
    return _primal(kernel, params, ctx, streams, n_steps)  # no tangents without differentiation


def _forward_sensitivity_fwd(kernel, n_steps, params, ctx, streams):
    dtype = _dtype(params)
    flat, unravel = ravel_pytree(params)
    n = flat.shape[0]
    basis = jnp.eye(n, dtype=flat.dtype)

    def lin_step(state, flat_p, ctx, u, k, state_dot):
        f = lambda s, p: kernel.step(s, unravel(p), ctx, u, k)
        out, f_jvp = jax.linearize(f, state, flat_p)
        out_dot = jax.vmap(f_jvp)(state_dot, basis)
        return out, out_dot

    def lin_init(flat_p, ctx, u):
        f = lambda p: kernel.init(unravel(p), ctx, u)
        out, f_jvp = jax.linearize(f, flat_p)
        return out, jax.vmap(f_jvp)(basis)

    def lin_final(state, flat_p, ctx, state_dot):
        f = lambda s, p: kernel.final(s, unravel(p), ctx)
        out, f_jvp = jax.linearize(f, state, flat_p)
        return out, jax.vmap(f_jvp)(state_dot, basis)

    vv = loop.vmap2
    u0 = streams.uniforms(0, kernel.n_init_uniforms, dtype)
    (state, log_w), (state_dot, log_w_dot) = vv(lin_init, (None, None, 0), (None, 0, 0))(flat, ctx, u0)

    def body(carry, k):
        state, state_dot, log_w, log_w_dot = carry
        u = streams.uniforms(k, kernel.n_step_uniforms, dtype)
        (state, inc), (state_dot, inc_dot) = vv(
            lin_step, (0, None, None, 0, None, 0), (0, None, 0, 0, None, 0)
        )(state, flat, ctx, u, k, state_dot)
        return (state, state_dot, log_w + inc, log_w_dot + inc_dot), None

    carry = (state, state_dot, log_w, log_w_dot)
    (state, state_dot, log_w, log_w_dot), _ = lax.scan(body, carry, jnp.arange(1, n_steps + 1))
    fin, fin_dot = vv(lin_final, (0, None, None, 0), (0, None, 0, 0))(state, flat, ctx, state_dot)
    log_w = log_w + jnp.broadcast_to(fin, log_w.shape)
    log_w_dot = log_w_dot + jnp.broadcast_to(fin_dot, log_w_dot.shape)
    weight = jnp.exp(log_w)  # (C, P)
    # ∇W = W ∇log W; a zero weight contributes nothing (its tangent may be undefined).
    grad_w = jnp.where(weight[..., None] > 0, weight[..., None] * log_w_dot, 0.0)
    jac = jnp.mean(grad_w, axis=1)  # (C, n_params)
    return jnp.mean(weight, axis=1), (jac, params)


def _fs_bwd(kernel, n_steps, res, g):
    jac, params = res
    _, unravel = ravel_pytree(params)
    return unravel(g @ jac), None, None


_forward_sensitivity.defvjp(_forward_sensitivity_fwd, _fs_bwd)


@dataclass(frozen=True)
class ReplayAdjoint(Adjoint):
    """Custom VJP that replays each trajectory from its key (memory O(1) in steps).

    Parameters
    ----------
    replay : {"auto", "forward", "inverse"}
        ``"forward"`` re-walks each trajectory from the start and needs a kernel whose path
        does not depend on the parameters (``kernel.path_depends_on_params = False``);
        ``"inverse"`` walks backward from the final state with ``kernel.inverse`` and works
        for any kernel that has one (e.g. energies that depend on densities).  ``"auto"``
        picks ``"forward"`` when allowed, else ``"inverse"``.  With a kernel that declares
        ``split_step`` the backward walk evaluates each step's segment once (one ``vjp``
        gives the inverse its value and the step its cotangent).
    """

    replay: str = "auto"

    def __post_init__(self):
        if self.replay not in ("auto", "forward", "inverse"):
            raise ValueError(f"replay must be 'auto', 'forward' or 'inverse', got {self.replay!r}")

    def mean_weight(self, kernel, params, ctx, streams, n_steps):
        mode = self.replay
        if mode == "auto":
            mode = "inverse" if kernel.path_depends_on_params else "forward"
        if mode == "forward" and kernel.path_depends_on_params:
            raise ValueError(
                "ReplayAdjoint(replay='forward') needs a kernel whose path does not depend on "
                f"the parameters; {type(kernel).__name__} does: use replay='inverse'"
            )
        return _replay(kernel, n_steps, mode, params, ctx, streams)


@partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _replay(kernel, n_steps, mode, params, ctx, streams):
    return _primal(kernel, params, ctx, streams, n_steps)


def _replay_fwd(kernel, n_steps, mode, params, ctx, streams):
    state, log_w = loop.run(kernel, params, ctx, streams, n_steps, _dtype(params))
    weight = jnp.exp(log_w)
    return jnp.mean(weight, axis=1), (params, ctx, streams, state, weight)


def _vjp_params(fn, params, cotangent):
    """Cotangent of ``params`` for ``fn(params)`` with output cotangent ``cotangent``."""
    _, vjp_fn = jax.vjp(fn, params)
    return vjp_fn(cotangent)[0]


def _replay_bwd(kernel, n_steps, mode, res, g):
    params, ctx, streams, state_n, weight = res
    dtype = _dtype(params)
    n_particles = weight.shape[1]
    shard = partial(shard_readings, mesh=streams.mesh)  # keep every (C, P, ...) array split as the walk is
    # d mean_p(W)/dΛ_p = W_p / P for every particle; a zero weight has a zero cotangent.
    c = shard(g[:, None] * weight / n_particles)
    add = lambda a, b: jax.tree_util.tree_map(jnp.add, a, b)

    if mode == "forward":
        state0, _ = loop.init(kernel, params, ctx, streams, dtype)
        grad = _vjp_params(lambda p: loop.init(kernel, p, ctx, streams, dtype)[1], params, c)
        grad = add(grad, _vjp_params(lambda p: loop.final(kernel, state_n, p, ctx), params, c))

        def body(carry, k):
            state, grad = carry
            # The path is parameter-free: take the step once, with its new state as aux.
            step_k = lambda p: loop.step(kernel, state, p, ctx, streams, k, dtype)[::-1]
            _, vjp_inc, state = jax.vjp(step_k, params, has_aux=True)
            return (shard(state), add(grad, vjp_inc(c)[0])), None

        (_, grad), _ = lax.scan(body, (state0, grad), jnp.arange(1, n_steps + 1))
        return grad, None, None

    # Backward replay: reconstruct s_{k-1} from s_k, then pull (s̄_k, c) back through step k.
    _, vjp_final = jax.vjp(lambda s, p: loop.final(kernel, s, p, ctx), state_n, params)
    state_bar, grad = vjp_final(c)
    state_bar = shard(state_bar)

    def body(carry, k):
        state, state_bar, grad = carry
        if kernel.split_step:
            # One vjp of the segment serves the inverse (its value) and the step (its cotangent).
            segment, advance, rewind, inverse_given = loop.split_parts(kernel, streams, k, dtype)
            path = rewind(state, params, ctx)
            seg, vjp_seg = jax.vjp(lambda s, p: segment(s, p, ctx), path, params)
            prev = inverse_given(state, seg, params, ctx)
            _, vjp_adv = jax.vjp(lambda s, a, p: advance(s, a, p, ctx), prev, seg, params)
            prev_bar, seg_bar, grad_k = vjp_adv((state_bar, c))
            path_bar, grad_seg = vjp_seg(seg_bar)
            prev_bar, grad_k = add(prev_bar, path_bar), add(grad_k, grad_seg)
        else:
            prev = loop.inverse(kernel, state, params, ctx, streams, k, dtype)
            _, vjp_step = jax.vjp(lambda s, p: loop.step(kernel, s, p, ctx, streams, k, dtype), prev, params)
            prev_bar, grad_k = vjp_step((state_bar, c))
        return (shard(prev), shard(prev_bar), add(grad, grad_k)), None

    carry = (shard(state_n), state_bar, grad)
    (_, state_bar, grad), _ = lax.scan(body, carry, jnp.arange(n_steps, 0, -1))
    _, vjp_init = jax.vjp(lambda p: loop.init(kernel, p, ctx, streams, dtype), params)
    grad = add(grad, vjp_init((state_bar, c))[0])
    return grad, None, None


_replay.defvjp(_replay_fwd, _replay_bwd)


def check_run_args(key, n_particles, n_steps, adjoint):
    """Validate the run arguments shared by every entry point; returns ``(key, n_particles, n_steps)``."""
    key = _checks.prng_key(key)
    n_particles = _checks.positive_int(n_particles, "n_particles")
    n_steps = _checks.positive_int(n_steps, "n_steps")
    if not isinstance(adjoint, Adjoint):
        raise ValueError(f"adjoint must be an instance of ppl_bmc.Adjoint, got {adjoint!r}")
    return key, n_particles, n_steps


def mean_weight(kernel, params, ctx, key, *, n_particles: int, n_steps: int, adjoint: Adjoint,
                stratified: bool = True, mesh=None):
    """Mean BMC weight per reading (the flux estimate), differentiable in ``params``.

    Parameters
    ----------
    kernel : Kernel
        The per-particle transport (hashable; static under ``jit``).
    params : pytree of float arrays
        Material parameters; the gradient is taken with respect to them.
    ctx : pytree of arrays
        Per-reading data, every leaf with leading axis ``C`` (number of readings).
    key : jax PRNG key
        Common random numbers: the same key gives bit-identical results.
    n_particles, n_steps : int
        Particles per reading and steps per particle (static).
    adjoint : Adjoint
        Gradient strategy.
    stratified : bool
        Latin-hypercube initial uniforms over each reading's particles (see
        :class:`~ppl_bmc.transport.streams.Streams`); ``False``: independent uniforms.
    mesh : jax.sharding.Mesh or None
        Split the readings (or, on a mesh whose axis is ``"particles"``, each reading's
        particles; ``n_particles`` a multiple of its size) over the devices of this one-axis mesh
        (:func:`ppl_bmc.transport.sharding.readings_mesh`), forward and replay; the same
        estimate as on one device, to float rounding.  ``None``: one device.

    Returns
    -------
    Array of shape ``(C,)``: the mean weight per reading, in the units of the kernel's
    final factor.
    """
    key, n_particles, n_steps = check_run_args(key, n_particles, n_steps, adjoint)
    kernel.check_steps(n_steps)
    leaves = jax.tree_util.tree_leaves(ctx)
    n_ctx = leaves[0].shape[0] if leaves and jnp.ndim(leaves[0]) else 0
    if n_ctx == 0 or any(jnp.shape(leaf)[:1] != (n_ctx,) for leaf in leaves):
        raise ValueError("ctx leaves must share a leading axis of at least one reading (C >= 1)")
    if splits_particles(mesh) and n_particles % mesh.size:
        raise ValueError(f"n_particles={n_particles} must be a multiple of the {mesh.size} devices the particles "
                         "are split over")
    ctx, n_padded = pad_readings(ctx, n_ctx, mesh)
    streams = loop.Streams(key, n_padded, n_particles, bool(stratified), mesh)
    return replicate(adjoint.mean_weight(kernel, params, shard_ctx(ctx, mesh), streams, n_steps), mesh)[:n_ctx]
