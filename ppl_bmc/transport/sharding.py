"""One BMC estimate over several devices: the readings (bins, lines of sight) split between them.

Every array of the walk has the readings as its leading axis (``(C, P, ...)``: readings ×
particles), and a reading's particles never meet another reading's, so the readings are the
natural axis to split: :func:`readings_mesh` builds a one-axis :class:`jax.sharding.Mesh`
named ``"readings"`` and :func:`shard_readings` lays a pytree's leading axis over it
(``NamedSharding(mesh, PartitionSpec("readings"))``); XLA partitions the rest of the walk, its
replay and the sum of the parameters' gradient over the readings (one all-reduce).  The random
numbers are drawn for all readings at once and partitioned the same way (JAX's partitionable
threefry: each number depends on its index only), so the same key gives the same estimate on
one device or many, to float rounding.  When the readings do not divide evenly, the last
reading is repeated to fill the last device and the copies are dropped at the end (a repeated
reading draws its own numbers at its own index; it does not change the others').  Both hold
with ``jax_threefry_partitionable`` on (JAX's default since 0.5); with it off, a padded split
draws different numbers (an equally valid estimate, not the same one).

On CPU, ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` (set before JAX starts) makes N
host devices, one per core; on GPU, the GPUs.
"""

from __future__ import annotations

import math

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = ["AXIS", "readings_mesh", "pad_readings", "shard_readings"]

#: The mesh axis the readings are split along.
AXIS = "readings"


def readings_mesh(devices) -> Mesh | None:
    """A one-axis mesh named :data:`AXIS` over ``devices``: ``None`` or 1 (no mesh: one device),
    an int n ≥ 1 (the first n local devices), ``"all"`` (every local device) or a sequence of
    :class:`jax.Device`.  ``ValueError`` naming ``devices`` and how many there are otherwise."""
    if devices is None:
        return None
    local = jax.local_devices()
    if isinstance(devices, str):
        if devices != "all":
            raise ValueError(f"devices must be None, an int >= 1, 'all' or a sequence of jax devices, got {devices!r}")
        chosen = local
    elif isinstance(devices, (int, np.integer)) and not isinstance(devices, bool):
        if not 1 <= devices <= len(local):
            raise ValueError(f"devices={devices} but this process has {len(local)} local device(s) "
                             f"({local[0].platform}); on CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N "
                             "set before JAX starts makes N")
        chosen = local[:devices]
    else:
        try:
            chosen = list(devices)
        except TypeError:
            chosen = None
        if not chosen or not all(isinstance(d, jax.Device) for d in chosen) or len(set(chosen)) != len(chosen):
            raise ValueError(f"devices must be None, an int >= 1, 'all' or a sequence of distinct jax devices, "
                             f"got {devices!r}")
    if len(chosen) == 1:
        return None
    return Mesh(np.asarray(chosen), (AXIS,))


def pad_readings(tree, n_readings: int, mesh: Mesh | None):
    """``(tree, C_padded)``: the leaves' leading axis (``n_readings``) padded with copies of the
    last reading up to a multiple of the mesh size (unchanged without a mesh)."""
    if mesh is None or n_readings % mesh.size == 0:
        return tree, n_readings
    padded = math.ceil(n_readings / mesh.size) * mesh.size
    index = np.minimum(np.arange(padded), n_readings - 1)
    return jax.tree_util.tree_map(lambda x: x[index], tree), padded


def shard_readings(tree, mesh: Mesh | None):
    """Lay every leaf's leading axis over ``mesh`` (a sharding constraint, inside ``jit``);
    unchanged without a mesh."""
    if mesh is None:
        return tree
    spec = NamedSharding(mesh, PartitionSpec(AXIS))
    return jax.tree_util.tree_map(lambda x: jax.lax.with_sharding_constraint(x, spec), tree)
