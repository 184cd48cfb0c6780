"""One BMC likelihood over several hosts (jax.distributed): two local CPU processes, one device
each, give the same counts, log-likelihood and gradient as one process; bad arguments of
``join_hosts`` are refused before anything starts."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from ppl_bmc.transport import join_hosts

SCRIPT = textwrap.dedent("""
    import json, sys
    import jax, jax.numpy as jnp, numpy as np
    jax.config.update("jax_enable_x64", True)
    from ppl_bmc.transport import join_hosts
    process, port = int(sys.argv[1]), sys.argv[2]
    if process >= 0:
        assert join_hosts(f"127.0.0.1:{port}", 2, process) == (process, 2)
        assert len(jax.local_devices()) == 1 and len(jax.devices()) == 2, jax.devices()
    import ppl_bmc
    from ppl_bmc.geometry import Scene, VoxelGrid

    grid = VoxelGrid((-40.0, 0.0), (40.0, 50.0), (6, 8))
    scene = Scene(grid, step_m=12.0)
    # 3 × 3 = 9 readings: an odd number, so the second process gets a padded copy
    dets = [ppl_bmc.Detector((x, 0.0), np.linspace(-50, 50, 4), exposure_s=1e6) for x in (-10.0, 5.0, 15.0)]
    rho = np.random.default_rng(0).uniform(1500.0, 2800.0, grid.shape)
    observed = np.arange(9.0).reshape(3, 3) * 50 + 100

    def run(key):
        method = ppl_bmc.BMC(jax.random.key(key), n_particles=64, devices="all" if process >= 0 else None)
        def loglik(r):
            mu = ppl_bmc.expected_counts(scene, r, dets, method=method)
            return jnp.sum(observed * jnp.log(mu) - mu)
        value, grad = jax.jit(jax.value_and_grad(loglik))(rho)
        counts = ppl_bmc.expected_counts(scene, rho, dets, method=method)  # whole in every process
        return {"value": float(value), "grad": np.asarray(grad).tolist(), "counts": np.asarray(counts).tolist()}

    out = run(3)
    out["other"] = run(4)["counts"]
    print("RESULT" + json.dumps(out), flush=True)
""")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _results(procs, timeout=600):
    out = []
    try:
        for p in procs:
            stdout, stderr = p.communicate(timeout=timeout)
            assert p.returncode == 0, stderr[-3000:]
            out.append(json.loads(next(x for x in stdout.splitlines() if x.startswith("RESULT"))[len("RESULT"):]))
    finally:
        for p in procs:
            p.kill()
    return out


@pytest.mark.slow
def test_two_processes_give_the_one_process_likelihood_and_gradient():
    # float64: the split changes only the order of the gradient's cross-process sum (1e-9
    # relative); the random numbers are drawn by index, so they are the same numbers
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
    port = str(_free_port())
    two = [subprocess.Popen([sys.executable, "-c", SCRIPT, str(i), port], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True) for i in (0, 1)]
    a, b = _results(two)
    (one,) = _results([subprocess.Popen([sys.executable, "-c", SCRIPT, "-1", "0"], env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)])
    assert a == b  # every process holds the same whole result
    np.testing.assert_allclose(a["counts"], one["counts"], rtol=1e-9)
    np.testing.assert_allclose(a["value"], one["value"], rtol=1e-9)
    grad, ref = np.asarray(a["grad"]), np.asarray(one["grad"])
    np.testing.assert_allclose(grad, ref, rtol=0, atol=1e-9 * np.abs(ref).max())
    assert np.abs(ref).max() > 0
    # another key is another estimate: the comparison above can fail
    assert np.max(np.abs(np.asarray(one["other"]) / np.asarray(one["counts"]) - 1)) > 1e-4


@pytest.mark.parametrize("args, match", [
    (("localhost", 2, 0), "coordinator must be 'host:port'"),
    (("localhost:x", 2, 0), "coordinator must be 'host:port'"),
    (("localhost:1234", 0, 0), "num_processes must be an integer >= 1"),
    (("localhost:1234", 2.0, 0), "num_processes must be an integer >= 1"),
    (("localhost:1234", 2, 2), r"process_id must be an integer in \[0, 2\)"),
    (("localhost:1234", 2, None), r"process_id must be an integer in \[0, 2\)"),
])
def test_join_hosts_refuses_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        join_hosts(*args)
