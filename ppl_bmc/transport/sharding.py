"""One BMC estimate over several devices: the readings (bins, lines of sight) split between them.

Every array of the walk has the readings as its leading axis (``(C, P, ...)``: readings ×
particles), and a reading's particles never meet another reading's, so the readings are the
natural axis to split: :func:`readings_mesh` builds a one-axis :class:`jax.sharding.Mesh`
named ``"readings"`` and :func:`shard_readings` lays a pytree's leading axis over it
(``NamedSharding(mesh, PartitionSpec("readings"))``); XLA partitions the rest of the walk, its
replay and the sum of the parameters' gradient over the readings (one all-reduce), and the
estimate comes back whole on every device (one all-gather of ``C`` numbers).  The random numbers
are counter-based (:mod:`ppl_bmc.transport.streams`): each depends on its (step, reading,
particle, stream) index only, so the same key gives the same estimate on one device or many,
to float rounding.  When the readings do not divide evenly, the last reading is repeated to fill
the last device and the copies are dropped at the end (a repeated reading draws its own numbers
at its own index; it does not change the others').

A mesh whose axis is named ``"particles"`` (``readings_mesh(devices, PARTICLES)``) splits each
reading's particles instead (axis 1 of the walk's arrays; the readings' data stays whole on
every device): for few readings of many particles, such as the paper's toy (3 readings).  The
mean over particles is then a cross-device sum; the particle count must divide evenly.

On CPU, ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` (set before JAX starts) makes N
host devices, one per core; on GPU, the GPUs.  **Several hosts**: start the same program on
each, call :func:`join_hosts` first (``jax.distributed``: a coordinator address, the number of
processes and this one's index, or detected from SLURM / Open MPI / … when omitted), and the
devices of every process form the mesh — ``BMC(devices="all")`` then splits one likelihood over
all hosts, each computing its readings, with the same estimate and gradient in every process.
Every process runs the same computation on the same inputs (SPMD); on CPU the hosts exchange
their shares through JAX's CPU collectives (gloo).
"""

from __future__ import annotations

import math

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ppl_bmc._hosts import check_hosts

__all__ = ["AXIS", "PARTICLES", "readings_mesh", "splits_particles", "pad_readings", "shard_readings", "shard_ctx",
           "replicate", "join_hosts"]

#: The mesh axis the readings are split along.
AXIS = "readings"
#: The mesh axis each reading's particles are split along.
PARTICLES = "particles"


def readings_mesh(devices, split: str = AXIS) -> Mesh | None:
    """A one-axis mesh over ``devices``, named ``split`` (:data:`AXIS`: the readings are split
    between the devices; :data:`PARTICLES`: each reading's particles).  ``devices``: ``None`` or 1
    (no mesh: one device), an int n ≥ 1 (the first n devices), ``"all"`` (every device: of every
    process after :func:`join_hosts`) or a sequence of :class:`jax.Device`.  ``ValueError``
    naming ``devices`` (and how many there are) or ``split`` otherwise."""
    if split not in (AXIS, PARTICLES):
        raise ValueError(f"split must be {AXIS!r} or {PARTICLES!r}, got {split!r}")
    if devices is None:
        return None
    available = jax.devices()  # all processes' devices (this process's alone without jax.distributed)
    if isinstance(devices, str):
        if devices != "all":
            raise ValueError(f"devices must be None, an int >= 1, 'all' or a sequence of jax devices, got {devices!r}")
        chosen = available
    elif isinstance(devices, (int, np.integer)) and not isinstance(devices, bool):
        if not 1 <= devices <= len(available):
            raise ValueError(f"devices={devices} but this run has {len(available)} device(s) "
                             f"({available[0].platform}); on CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N "
                             "set before JAX starts makes N")
        chosen = available[:devices]
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
    return Mesh(np.asarray(chosen), (split,))


def splits_particles(mesh: Mesh | None) -> bool:
    """Whether ``mesh`` splits each reading's particles (rather than the readings)."""
    return mesh is not None and PARTICLES in mesh.axis_names


def pad_readings(tree, n_readings: int, mesh: Mesh | None):
    """``(tree, C_padded)``: the leaves' leading axis (``n_readings``) padded with copies of the
    last reading up to a multiple of the mesh size (unchanged without a mesh, or on a mesh that
    splits particles)."""
    if mesh is None or splits_particles(mesh) or n_readings % mesh.size == 0:
        return tree, n_readings
    padded = math.ceil(n_readings / mesh.size) * mesh.size
    index = np.minimum(np.arange(padded), n_readings - 1)
    return jax.tree_util.tree_map(lambda x: x[index], tree), padded


def shard_readings(tree, mesh: Mesh | None):
    """Lay the walk's arrays (every leaf ``(C, P, ...)``) over ``mesh`` — their readings axis, or
    on a :data:`PARTICLES` mesh their particles axis (a sharding constraint, inside ``jit``);
    unchanged without a mesh."""
    if mesh is None:
        return tree
    spec = NamedSharding(mesh, PartitionSpec(None, PARTICLES) if splits_particles(mesh) else PartitionSpec(AXIS))
    return jax.tree_util.tree_map(lambda x: jax.lax.with_sharding_constraint(x, spec), tree)


def shard_ctx(tree, mesh: Mesh | None):
    """Lay the readings' data (every leaf ``(C, ...)``) over ``mesh``: split by reading, or whole
    on every device when the mesh splits particles; unchanged without a mesh."""
    return replicate(tree, mesh) if splits_particles(mesh) else shard_readings(tree, mesh)


def replicate(tree, mesh: Mesh | None):
    """Every leaf whole on every device of ``mesh`` (a sharding constraint: an all-gather of a
    split array); unchanged without a mesh.  Results leave a split computation this way, so that
    every process of a several-host run can read them."""
    if mesh is None:
        return tree
    spec = NamedSharding(mesh, PartitionSpec())
    return jax.tree_util.tree_map(lambda x: jax.lax.with_sharding_constraint(x, spec), tree)


def join_hosts(coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None):
    """Join this process to a several-host run (:func:`jax.distributed.initialize`); call it
    before any other JAX computation, with the same program started in every process.

    Parameters
    ----------
    coordinator : str or None
        ``"host:port"`` of process 0's coordination service (every process passes the same).
    num_processes : int ≥ 1 or None
        How many processes take part.
    process_id : int in [0, num_processes) or None
        This process's index.
    All three ``None``: detected from the cluster's environment (SLURM, Open MPI, …; see
    :func:`jax.distributed.initialize`).

    Returns
    -------
    ``(process_id, process_count)`` as JAX sees them.
    """
    if check_hosts(coordinator, num_processes, process_id):
        jax.distributed.initialize(coordinator_address=coordinator, num_processes=int(num_processes),
                                   process_id=int(process_id))
    else:
        jax.distributed.initialize()
    return jax.process_index(), jax.process_count()
