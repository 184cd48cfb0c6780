"""Batching and the step loop: ``vmap`` over readings × particles, ``lax.scan`` over steps.

Shapes: ``C`` readings (leading axis of every leaf of ``ctx``), ``P`` particles per reading.
Random numbers come from :class:`~ppl_bmc.transport.streams.Streams`; states are pytrees whose leaves have shape ``(C, P, ...)``;
log-weights have shape ``(C, P)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from ppl_bmc.transport.sharding import shard_readings
from ppl_bmc.transport.streams import Streams

__all__ = ["Streams", "vmap2", "init", "step", "inverse", "split_parts", "final", "run"]


# (state, params, ctx, uniforms, k): state and uniforms per particle, ctx per reading.
STEP_INNER = (0, None, None, 0, None)
STEP_OUTER = (0, None, 0, 0, None)


def vmap2(fn, inner_axes, outer_axes):
    """``vmap`` over particles (inner) then readings (outer)."""
    return jax.vmap(jax.vmap(fn, in_axes=inner_axes), in_axes=outer_axes)


def init(kernel, params, ctx, streams, dtype):
    """Batched :meth:`Kernel.init`: ``(state, log_w0)`` with leading axes ``(C, P)``."""
    u0 = streams.uniforms(0, kernel.n_init_uniforms, dtype)
    return vmap2(kernel.init, (None, None, 0), (None, 0, 0))(params, ctx, u0)


def step(kernel, state, params, ctx, streams, k, dtype):
    """Batched :meth:`Kernel.step` number ``k`` (uniforms drawn here)."""
    u = streams.uniforms(k, kernel.n_step_uniforms, dtype)
    return vmap2(kernel.step, STEP_INNER, STEP_OUTER)(state, params, ctx, u, k)


def inverse(kernel, state, params, ctx, streams, k, dtype):
    """Batched :meth:`Kernel.inverse` of step ``k``."""
    u = streams.uniforms(k, kernel.n_step_uniforms, dtype)
    return vmap2(kernel.inverse, STEP_INNER, STEP_OUTER)(state, params, ctx, u, k)


def split_parts(kernel, streams, k, dtype):
    """Batched pieces of a split step ``k`` (see :class:`~ppl_bmc.transport.Kernel`), uniforms bound:
    ``(segment(state, params, ctx), advance(state, seg, params, ctx), rewind(state, params, ctx),
    inverse_given(state, seg, params, ctx))``."""
    u = streams.uniforms(k, kernel.n_step_uniforms, dtype)
    seg_axes = (0, 0, None, None, 0, None)  # (state, seg, params, ctx, u, k), inner
    seg_outer = (0, 0, None, 0, 0, None)

    def segment(state, params, ctx):
        return vmap2(kernel.segment, STEP_INNER, STEP_OUTER)(state, params, ctx, u, k)

    def advance(state, seg, params, ctx):
        return vmap2(kernel.advance, seg_axes, seg_outer)(state, seg, params, ctx, u, k)

    def rewind(state, params, ctx):
        return vmap2(kernel.rewind, STEP_INNER, STEP_OUTER)(state, params, ctx, u, k)

    def inverse_given(state, seg, params, ctx):
        return vmap2(kernel.inverse_given, seg_axes, seg_outer)(state, seg, params, ctx, u, k)

    return segment, advance, rewind, inverse_given


def final(kernel, state, params, ctx):
    """Batched :meth:`Kernel.final`: shape ``(C, P)``."""
    out = vmap2(kernel.final, (0, None, None), (0, None, 0))(state, params, ctx)
    return jnp.broadcast_to(out, jax.tree_util.tree_leaves(state)[0].shape[:2])


def run(kernel, params, ctx, streams, n_steps: int, dtype):
    """Walk all particles ``n_steps`` steps: returns ``(final_state, Λ)``, Λ of shape ``(C, P)``.

    Plain ``lax.scan`` with no per-step outputs; reverse-mode AD through it stores the
    per-step residuals (memory O(n_steps)).
    """
    state, log_w = shard_readings(init(kernel, params, ctx, streams, dtype), streams.mesh)

    def body(carry, k):
        state, log_w = carry
        state, inc = step(kernel, state, params, ctx, streams, k, dtype)
        return shard_readings((state, log_w + inc), streams.mesh), None

    (state, log_w), _ = lax.scan(body, (state, log_w), jnp.arange(1, n_steps + 1))
    return state, log_w + final(kernel, state, params, ctx)
