"""Random numbers of the walk: counter-based uniforms indexed by (key, step, reading, particle, stream).

Every uniform is a pure function of where it is used: the key and the step ``k`` make a
per-step key, the flat index ``c·P + p`` of the (reading, particle) pair and the stream number
``j`` make the counter, and one Threefry-2x32 block cipher call turns them into bits.  Nothing is
carried from one draw to the next, so a replay of step ``k`` draws the same numbers again, any
slice of the particles can be drawn alone (a device holding some readings computes only
theirs), and the numbers do not depend on how many readings or particles surround them.

Threefry-2x32 with 20 rounds is the counter-based generator of Salmon, Moraes, Dror and Shaw,
"Parallel random numbers: as easy as 1, 2, 3", SC'11 (2011): it passes the TestU01 BigCrush
battery with 13 rounds or more (their Table 2); 20 is their recommended margin and what
``jax.random`` uses.  Its rotation constants and key-schedule parity come from the Threefish
cipher (Ferguson et al., The Skein Hash Function Family, v1.3, 2010).  ``jax.random`` computes
the same function, but on CPU it lowers the rounds to a loop whose every pass reads and writes
whole arrays; written here as one elementwise expression, XLA fuses all 20 rounds and the
conversion to floats into one pass over the counters (``benchmarks/bench_toy_adjoints.py``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from ppl_bmc.transport.sharding import shard_readings

__all__ = ["threefry2x32", "counter_uniforms", "Streams"]

# Threefish-256 rotation constants for 32-bit words (Salmon et al. 2011, Table 4 / Random123).
_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = 0x1BD11BDA  # key-schedule parity constant (Skein v1.3)
_MAX_COUNTER = 2**32


def _rotl(x, r: int):
    return (x << jnp.uint32(r)) | (x >> jnp.uint32(32 - r))


def threefry2x32(key, x0, x1, rounds: int = 20):
    """The Threefry-2x32 block function: two 32-bit words of output per (key, counter).

    Parameters
    ----------
    key : pair of uint32 arrays (scalars or broadcastable to the counters)
        The two key words.
    x0, x1 : uint32 arrays of one shape
        The two counter words.
    rounds : int
        Number of rounds, 1–20 (20: the published generator; fewer only to show what a
        weakened one does to the quality tests).

    Returns
    -------
    ``(y0, y1)``: uint32 arrays of the counters' shape.
    """
    if not 1 <= rounds <= 20:
        raise ValueError(f"rounds must be between 1 and 20, got {rounds}")
    u32 = jnp.uint32
    k0, k1 = jnp.asarray(key[0], u32), jnp.asarray(key[1], u32)
    ks = (k0, k1, k0 ^ k1 ^ u32(_PARITY))
    x0 = jnp.asarray(x0, u32) + ks[0]
    x1 = jnp.asarray(x1, u32) + ks[1]
    for r in range(rounds):
        x0 = x0 + x1
        x1 = _rotl(x1, _ROTATIONS[(r // 4) % 2][r % 4])
        x1 = x1 ^ x0
        if r % 4 == 3:  # key injection after every four rounds
            s = r // 4 + 1
            x0 = x0 + ks[s % 3]
            x1 = x1 + ks[(s + 1) % 3] + u32(s)
    return x0, x1


def _to_unit(bits_hi, bits_lo, dtype):
    """Uniform floats in [0, 1) from random bits: 23 mantissa bits for float32 (``bits_hi``),
    52 for float64 (both words)."""
    if jnp.dtype(dtype) == jnp.float64:
        u64 = jnp.uint64
        bits = (bits_hi.astype(u64) << u64(32)) | bits_lo.astype(u64)
        one = lax.bitcast_convert_type((bits >> u64(12)) | u64(0x3FF0000000000000), jnp.float64)
    elif jnp.dtype(dtype) == jnp.float32:
        one = lax.bitcast_convert_type((bits_hi >> jnp.uint32(9)) | jnp.uint32(0x3F800000), jnp.float32)
    else:
        raise ValueError(f"dtype must be float32 or float64, got {jnp.dtype(dtype).name}")
    return one - jnp.asarray(1.0, dtype)


def counter_uniforms(key, shape, dtype, rounds: int = 20):
    """Uniforms in [0, 1) of ``shape = (A, B, n)``: element ``(a, b, j)`` is a function of
    ``key``, the counter ``a·B + b`` and the stream ``j`` only.

    float32: one Threefry call gives streams ``2m`` and ``2m + 1``; float64: one call per stream
    (52 bits).  ``key`` is any JAX PRNG key; its per-call key words are two bits draws of it.
    """
    a, b, n = shape
    if a * b >= _MAX_COUNTER:
        raise ValueError(f"readings × particles must be below 2**32 for the counter-based stream, got {a} × {b}")
    words = jax.random.bits(key, (2,), jnp.uint32)
    flat = (lax.broadcasted_iota(jnp.uint32, (a, b), 0) * jnp.uint32(b) + lax.broadcasted_iota(jnp.uint32, (a, b), 1))
    pair = jnp.dtype(dtype) != jnp.float64
    n_calls = (n + 1) // 2 if pair else n
    x0 = jnp.broadcast_to(flat[..., None], (a, b, n_calls))
    x1 = lax.broadcasted_iota(jnp.uint32, (a, b, n_calls), 2)
    y0, y1 = threefry2x32(words, x0, x1, rounds)
    if not pair:
        return _to_unit(y0, y1, dtype)
    both = jnp.stack([_to_unit(y0, None, dtype), _to_unit(y1, None, dtype)], axis=-1)
    return both.reshape(a, b, 2 * n_calls)[..., :n]


@jax.tree_util.register_pytree_node_class
class Streams:
    """The random numbers of all particles: one key and the static sizes ``(C, P)``.

    Step ``k`` draws its uniforms in bulk, ``(C, P, n)`` from :func:`counter_uniforms` with the
    step key ``fold_in(key, k)``; a replay of step ``k`` draws the same numbers again.  Same key
    and sizes → identical draws; the draws of reading ``c`` and particle ``p`` do not depend on
    the number of readings (so padded or split readings keep their numbers).

    ``stratified`` (default): the initial uniforms (step 0: a particle's direction within its
    bin and its energy) are a Latin hypercube over the ``P`` particles of each reading — in
    every coordinate, particle i falls in its own stratum ``[π(i), π(i) + 1)/P`` of a random
    permutation π, at a uniform position within it.  Each particle is still uniform, so the
    estimate stays unbiased and independent keys give independent replicas; its variance is
    never more than ``P/(P − 1)`` times the i.i.d. one (Owen 1997) and falls faster than 1/P
    for smooth integrands.  The per-particle sample variance then over-states the error:
    judge it over independent keys.
    """

    def __init__(self, key, n_ctx: int, n_particles: int, stratified: bool = True, mesh=None):
        self.key, self.n_ctx, self.n_particles, self.stratified = key, n_ctx, n_particles, stratified
        self.mesh = mesh

    def tree_flatten(self):
        return (self.key,), (self.n_ctx, self.n_particles, self.stratified, self.mesh)

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls(children[0], *aux)

    def uniforms(self, k, n: int, dtype):
        """The ``n`` uniforms in [0, 1) of step ``k`` for every particle: ``(C, P, n)``, laid
        over ``mesh`` by reading when there is one (:mod:`ppl_bmc.transport.sharding`)."""
        return shard_readings(self._uniforms(k, n, dtype), self.mesh)

    def _uniforms(self, k, n: int, dtype):
        shape = (self.n_ctx, self.n_particles, n)
        key = jax.random.fold_in(self.key, k)
        if not (self.stratified and isinstance(k, int) and k == 0 and n > 0 and self.n_particles > 1):
            return counter_uniforms(key, shape, dtype)
        k_pos, k_perm = jax.random.split(key)
        within = counter_uniforms(k_pos, shape, dtype)
        # one random permutation of the strata per reading and coordinate
        order = counter_uniforms(k_perm, (self.n_ctx, n, self.n_particles), dtype)
        strata = jnp.swapaxes(jnp.argsort(order, axis=-1), 1, 2).astype(dtype)
        return jnp.minimum((strata + within) / self.n_particles, jnp.asarray(1.0, dtype) - jnp.finfo(dtype).epsneg)
