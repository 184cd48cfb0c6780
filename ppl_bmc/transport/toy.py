"""The 2-D toy of Grinis (JETP 2022, arXiv 2108.10245), Fig. 1 and Appendix, as a kernel.

Geometry: detector at the origin; two materials A = 0.9 and B = 0.01 mixed by the density
``ρ(x) = exp(-|x - μ|² / σ²)`` with parameters ``node = (μx, μy, σ²)`` (the third entry is σ²,
as in the paper's released code).  Step ``k`` has length ``1 - 0.2·U``; step 1 goes along the
reading's direction (the rotation of (0, 1) by the angle θ), every later step turns the
direction by ``0.05·π·(U - 0.5)``.  At each step a fair coin picks the material and the weight
is ``ρ/0.5·A`` or ``(1 - ρ)/0.5·B``, times ``exp(-0.1·length)`` (the paper's Example 1; its
Example 2 prints 0.01, an inconsistency).  The flux at the end is 1.  Units are arbitrary
(lengths in the paper's unit).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax.numpy as jnp
from jax import lax

from ppl_bmc.transport.kernel import Kernel

__all__ = ["ToyKernel", "mixing_density", "MATERIAL_A", "MATERIAL_B", "ATTENUATION", "TURN"]

#: Material weights A and B of the paper's toy.
MATERIAL_A = 0.9
MATERIAL_B = 0.01
#: Attenuation per unit length in the weight ``exp(-ATTENUATION·length)``.
ATTENUATION = 0.1
#: Half-width of the turning angle after the first step, in units of π: 0.05·π·(U - 0.5).
TURN = 0.05


def mixing_density(x, node):
    """Mixture density ``exp(-|x - μ|²/σ²)`` at points ``x`` (..., 2); ``node = (μx, μy, σ²)``."""
    return jnp.exp(-_scaled_sq_distance(x, node))


def _scaled_sq_distance(x, node):
    return jnp.sum((x - node[:2]) ** 2, axis=-1) / node[2]


def _rotate(v, angle):
    c, s = jnp.cos(angle), jnp.sin(angle)
    return _rotate_cs(v, c, s)


def _rotate_cs(v, c, s):
    return jnp.stack([c * v[0] - s * v[1], s * v[0] + c * v[1]])


def _turn(v, angle):
    """``_rotate`` for the turn angle, |angle| ≤ TURN·π/2 ≈ 0.0786: Taylor series of sin to a⁹ and
    cos to a¹⁰ (first omitted terms a¹¹/11! ≈ 1.8e-20 and a¹²/12! ≈ 1.2e-22, below float64
    rounding), a few multiply-adds instead of two range-reduced transcendental functions."""
    a2 = angle * angle
    s = angle * (1 + a2 * (-1 / 6 + a2 * (1 / 120 + a2 * (-1 / 5040 + a2 / 362880))))
    c = 1 + a2 * (-1 / 2 + a2 * (1 / 24 + a2 * (-1 / 720 + a2 * (1 / 40320 - a2 / 3628800))))
    return _rotate_cs(v, c, s)


@dataclass(frozen=True)
class ToyKernel(Kernel):
    """One particle of the paper's toy.

    State: ``(position (2,), direction (2,))``.  Parameters: ``node (3,)``.  Context: the
    reading's angle θ in radians (scalar).  Uniforms per step: length, turn, coin.
    The path does not depend on ``node``; only the weights do.
    """

    n_init_uniforms: int = 0
    n_step_uniforms: int = 3
    path_depends_on_params: bool = False

    def init(self, params, ctx, u):
        del params, u
        direction = _rotate(jnp.array([0.0, 1.0], dtype=ctx.dtype), ctx)
        return (jnp.zeros(2, dtype=ctx.dtype), direction), jnp.zeros((), dtype=ctx.dtype)

    def _move(self, u, k):
        length = 1.0 - 0.2 * u[0]
        turn = jnp.where(k == 1, 0.0, TURN * math.pi * (u[1] - 0.5)).astype(u.dtype)
        return length, turn

    def step(self, state, params, ctx, u, k):
        position, direction = state
        length, turn = self._move(u, k)
        # the barrier keeps the new direction as one array: without it XLA recomputes the turn in
        # each consumer (position, direction, weight); toy forward 6.6 -> 5.6 ms on jax 0.12's CPU
        direction = lax.optimization_barrier(_turn(direction, turn))
        position = position + length * direction
        q = _scaled_sq_distance(position, params)
        log_a = -q + math.log(MATERIAL_A / 0.5)
        log_b = jnp.log(-jnp.expm1(-q)) + math.log(MATERIAL_B / 0.5)
        log_w = jnp.where(u[2] < 0.5, log_a, log_b) - ATTENUATION * length
        return (position, direction), log_w

    def inverse(self, state, params, ctx, u, k):
        del params, ctx
        position, direction = state
        length, turn = self._move(u, k)
        return (position - length * direction, _turn(direction, -turn))
