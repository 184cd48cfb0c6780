"""The paper's 2-D toy: flux at a detector through a Gaussian mixture of two materials.

R. Grinis, "Differentiable programming for particle physics simulations", JETP 2022
(arXiv 2108.10245), Fig. 1–3 and Appendix.  The kernel is
:class:`ppl_bmc.transport.ToyKernel`; this module is its public entry point.

Example
-------
>>> import jax, ppl_bmc
>>> from ppl_bmc import toy
>>> f = toy.flux([0.0, 5.0, 10.0], toy.PAPER_THETAS, key=jax.random.key(0), n_particles=100_000)
>>> [round(float(x), 3) for x in f]     # the paper quotes (0.0487, 0.0427, 0.0446)
[0.048, 0.042, 0.045]
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ppl_bmc import _checks
from ppl_bmc.adjoint import Adjoint, ReplayAdjoint, check_run_args, mean_weight
from ppl_bmc.transport import loop
from ppl_bmc.transport.sharding import PARTICLES, readings_mesh
from ppl_bmc.transport.toy import ToyKernel, mixing_density

__all__ = [
    "PAPER_THETAS",
    "PAPER_OBSERVED",
    "PAPER_TRUTH",
    "PAPER_START",
    "PAPER_FIG2_RESULT",
    "PAPER_FLUX_AT_START",
    "flux",
    "mixing_density",
    "trajectories",
]

# Numbers quoted from the paper and its released notebook (see ../shared/design.md).
#: Reading angles θ in radians: π·(0, 0.1, −0.08).
PAPER_THETAS = tuple(math.pi * t for t in (0.0, 0.1, -0.08))
#: Observed fluxes (rounded simulation at the true node).
PAPER_OBSERVED = (0.04, 0.042, 0.032)
#: The true node (μx, μy, σ²).
PAPER_TRUTH = (-1.0, 5.0, 10.0)
#: The starting node of Fig. 2 and the prior mean.
PAPER_START = (0.0, 5.0, 10.0)
#: Fig. 2: mean of the last 200 SGD iterates.
PAPER_FIG2_RESULT = (-1.0033, 4.9891, 9.9611)
#: Flux at PAPER_START with 1e5 particles, per reading.
PAPER_FLUX_AT_START = (0.0487, 0.0427, 0.0446)

_KERNEL = ToyKernel()


def _check_node(node):
    node = _checks.float_array(node, "node", shape=(3,))
    if _checks.is_concrete(node) and not np.asarray(node)[2] > 0:
        raise ValueError(f"node[2] is σ² and must be > 0, got {np.asarray(node)[2]}")
    return node


def _check_thetas(thetas, dtype):
    thetas = _checks.float_array(thetas, "thetas", ndim=1, dtype=dtype)
    if thetas.shape[0] == 0:
        raise ValueError("thetas must hold at least one reading angle (radians), got an empty array")
    return thetas


@partial(jax.jit, static_argnames=("n_particles", "n_steps", "adjoint", "mesh"))
def _flux(node, thetas, key, n_particles, n_steps, adjoint, mesh=None):
    return mean_weight(
        _KERNEL, node, thetas, key, n_particles=n_particles, n_steps=n_steps, adjoint=adjoint, mesh=mesh
    )


def flux(node, thetas, *, key, n_particles: int, n_steps: int = 2, adjoint: Adjoint = ReplayAdjoint(),
         devices=None):
    """BMC estimate of the flux at the detector for each reading angle.

    Parameters
    ----------
    node : array (3,)
        ``(μx, μy, σ²)``: centre of the Gaussian mixture (length units of the toy) and its
        squared scale (> 0).  Differentiable.
    thetas : array (R,)
        Reading angles in radians (rotation of the direction (0, 1)); R ≥ 1.
    key : jax PRNG key
        Common random numbers: the same key and sizes give bit-identical results.
    n_particles : int ≥ 1
        Particles per reading.
    n_steps : int ≥ 1
        Steps per particle (the paper uses 2).
    adjoint : Adjoint
        Gradient strategy (default :class:`ppl_bmc.ReplayAdjoint`).
    devices : None, int, "all" or a sequence of jax devices
        Split each reading's particles over several devices (e.g. CPU cores through
        ``XLA_FLAGS=--xla_force_host_platform_device_count=N``); ``n_particles`` a multiple of
        their number; the same estimate as on one device, to float rounding.  ``None``: one.

    Returns
    -------
    Array (R,): the mean BMC weight per reading (the flux at the source is 1, so this is
    dimensionless).  float32 by default, float64 when ``jax_enable_x64`` is on.

    Raises
    ------
    ValueError
        For a wrong ``node`` shape, NaN/inf or σ² ≤ 0 in ``node`` (when concrete), empty or
        non-finite ``thetas``, ``n_particles`` < 1, ``n_steps`` < 1, a ``key`` that is not a
        JAX PRNG key, or an unknown ``adjoint``.
    """
    node = _check_node(node)
    thetas = _check_thetas(thetas, node.dtype)
    key, n_particles, n_steps = check_run_args(key, n_particles, n_steps, adjoint)
    return _flux(node, thetas, key, n_particles, n_steps, adjoint, readings_mesh(devices, PARTICLES))


def trajectories(thetas, *, key, n_particles: int, n_steps: int = 2):
    """Positions of BMC trajectories (for figures): array ``(R, n_particles, n_steps + 1, 2)``.

    The first point of each trajectory is the detector at the origin.  The path of the toy
    does not depend on ``node``; the same ``key`` gives the trajectories :func:`flux` uses.
    """
    thetas = _check_thetas(thetas, jnp.result_type(float))
    key, n_particles, n_steps = check_run_args(key, n_particles, n_steps, ReplayAdjoint())
    node = jnp.array(PAPER_START, dtype=thetas.dtype)  # any node: the path is node-free
    streams = loop.Streams(key, thetas.shape[0], n_particles)
    state, _ = loop.init(_KERNEL, node, thetas, streams, thetas.dtype)

    def body(state, k):
        state, _ = loop.step(_KERNEL, state, node, thetas, streams, k, thetas.dtype)
        return state, state[0]

    _, points = lax.scan(body, state, jnp.arange(1, n_steps + 1))
    points = jnp.moveaxis(points, 0, 2)  # (R, P, n_steps, 2)
    origin = jnp.zeros(points.shape[:2] + (1, 2), points.dtype)
    return np.asarray(jnp.concatenate([origin, points], axis=2))
