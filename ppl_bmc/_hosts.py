"""The arguments of a several-host run, checked without importing JAX (the command line answers
argument errors before JAX starts); :func:`ppl_bmc.transport.join_hosts` joins the run."""

from __future__ import annotations

import numbers


def check_hosts(coordinator, num_processes, process_id, names=("coordinator", "num_processes", "process_id")) -> bool:
    """``False`` when all three are ``None`` (one process, or the cluster's own detection);
    ``True`` when they describe a run: ``coordinator`` ``"host:port"``, ``num_processes`` ≥ 1,
    ``process_id`` in ``[0, num_processes)``.  ``ValueError`` naming the argument otherwise (as
    ``names`` spells them: the command line passes its flags)."""
    c, n, i = names
    if coordinator is None and num_processes is None and process_id is None:
        return False
    if not isinstance(coordinator, str) or coordinator.count(":") != 1 or not coordinator.split(":")[0] \
            or not coordinator.split(":")[1].isdigit():
        raise ValueError(f"{c} must be 'host:port' (e.g. '10.0.0.1:1234'), got {coordinator!r}")
    if isinstance(num_processes, bool) or not isinstance(num_processes, numbers.Integral) or num_processes < 1:
        raise ValueError(f"{n} must be an integer >= 1, got {num_processes!r}")
    if isinstance(process_id, bool) or not isinstance(process_id, numbers.Integral) or not 0 <= process_id < num_processes:
        raise ValueError(f"{i} must be an integer in [0, {num_processes}), got {process_id!r}")
    return True
