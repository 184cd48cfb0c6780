"""One BMC estimate split over devices: the same numbers as on one device, and bad ``devices``
refused.  The split runs in a subprocess with two forced host devices (XLA reads
``XLA_FLAGS`` when it starts, so this process cannot change its own device count)."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import pytest

import ppl_bmc
from ppl_bmc.transport.sharding import pad_readings, readings_mesh

SCRIPT = textwrap.dedent("""
    import json, sys
    import jax, jax.numpy as jnp, numpy as np
    jax.config.update("jax_enable_x64", True)
    import ppl_bmc
    from ppl_bmc.geometry import Scene, VoxelGrid

    assert len(jax.devices()) == 2, jax.devices()
    grid = VoxelGrid((-40.0, 0.0), (40.0, 50.0), (6, 8))
    scene = Scene(grid, step_m=12.0)
    # 3 × 3 = 9 readings: an odd number, so the second device gets a padded copy
    dets = [ppl_bmc.Detector((x, 0.0), np.linspace(-50, 50, 4), exposure_s=1e6) for x in (-10.0, 5.0, 15.0)]
    rho = jnp.asarray(np.random.default_rng(0).uniform(1500.0, 2800.0, grid.shape))
    out = {}
    for name, adjoint in (("replay", ppl_bmc.ReplayAdjoint()), ("autodiff", ppl_bmc.AutodiffAdjoint())):
        for devices in (None, 2):
            method = ppl_bmc.BMC(jax.random.key(3), n_particles=64, adjoint=adjoint, devices=devices)
            f = lambda r: ppl_bmc.expected_counts(scene, r, dets, method=method)
            value, grad = jax.jit(jax.value_and_grad(lambda r: jnp.sum(jnp.log(f(r)))))(rho)
            compiled = jax.jit(f).lower(rho).compile()
            counts, hlo = compiled(rho), compiled.as_text()
            out[f"{name}-{devices}"] = {"counts": np.asarray(counts).tolist(), "grad": np.asarray(grad).tolist(),
                                        "split": "num_partitions=2" in hlo}
    # each reading's particles split instead of the readings
    method = ppl_bmc.BMC(jax.random.key(3), n_particles=64, devices=2, split="particles")
    f = lambda r: ppl_bmc.expected_counts(scene, r, dets, method=method)
    value, grad = jax.jit(jax.value_and_grad(lambda r: jnp.sum(jnp.log(f(r)))))(rho)
    hlo = jax.jit(f).lower(rho).compile().as_text()
    out["particles-2"] = {"counts": np.asarray(f(rho)).tolist(), "grad": np.asarray(grad).tolist(),
                          "split": "num_partitions=2" in hlo}
    from ppl_bmc import toy
    for devices in (None, 2):
        fl = lambda node: toy.flux(node, toy.PAPER_THETAS, key=jax.random.key(1), n_particles=1000, devices=devices)
        node = jnp.asarray(toy.PAPER_START)
        out[f"toy-{devices}"] = {"flux": np.asarray(fl(node)).tolist(),
                                 "grad": np.asarray(jax.grad(lambda n: jnp.sum(fl(n) ** 2))(node)).tolist()}
    try:
        toy.flux(node, toy.PAPER_THETAS, key=jax.random.key(1), n_particles=999, devices=2)
        out["odd"] = "accepted"
    except ValueError as err:
        out["odd"] = str(err)
    # a different key is a different estimate (the comparison can fail)
    other = ppl_bmc.BMC(jax.random.key(4), n_particles=64, devices=2)
    out["other"] = np.asarray(ppl_bmc.expected_counts(scene, rho, dets, method=other)).tolist()
    print("RESULT" + json.dumps(out))
""")


def _run_two_devices():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(line for line in proc.stdout.splitlines() if line.startswith("RESULT"))
    return json.loads(line[len("RESULT"):])


@pytest.mark.slow  # ~70 s cold (a subprocess compiling 2 adjoints × 1 and 2 devices, the particles split, the toy)
def test_split_over_two_devices_is_the_one_device_estimate():
    # Same key, same random numbers (counter-based, drawn by index): float64 values and
    # gradients agree to 1e-9 relative (rounding in the cross-device sum of the gradient).
    import numpy as np

    out = _run_two_devices()
    for name in ("replay", "autodiff"):
        one, two = out[f"{name}-None"], out[f"{name}-2"]
        assert two["split"] and not one["split"]  # the compiled program is partitioned over 2 devices
        np.testing.assert_allclose(two["counts"], one["counts"], rtol=1e-9)
        g1, g2 = np.asarray(one["grad"]), np.asarray(two["grad"])
        np.testing.assert_allclose(g2, g1, rtol=0, atol=1e-9 * np.abs(g1).max())
        assert np.abs(g1).max() > 0
    # the particles split: the same estimate and gradient, for expected_counts and the toy
    one, two = out["replay-None"], out["particles-2"]
    assert two["split"]
    np.testing.assert_allclose(two["counts"], one["counts"], rtol=1e-9)
    np.testing.assert_allclose(two["grad"], one["grad"], rtol=0, atol=1e-9 * np.abs(one["grad"]).max())
    np.testing.assert_allclose(out["toy-2"]["flux"], out["toy-None"]["flux"], rtol=1e-9)
    np.testing.assert_allclose(out["toy-2"]["grad"], out["toy-None"]["grad"], rtol=1e-9)
    assert "n_particles=999 must be a multiple of the 2 devices" in out["odd"]
    # another key moves the counts by their Monte-Carlo noise, far more than the rounding above
    assert np.max(np.abs(np.asarray(out["other"]) / np.asarray(out["replay-None"]["counts"]) - 1)) > 1e-4


@pytest.mark.parametrize("devices, match", [(0, "devices=0"), (len(jax.devices()) + 1, "this run has"),
                                            ("some", "devices must be"), (1.5, "devices must be"),
                                            (True, "devices must be"), ([], "devices must be")])
def test_bad_devices_are_refused(devices, match):
    with pytest.raises(ValueError, match=match):
        ppl_bmc.BMC(jax.random.key(0), devices=devices)
    with pytest.raises(ValueError, match="split must be 'readings' or 'particles'"):
        ppl_bmc.BMC(jax.random.key(0), devices=1, split="rows")
    with pytest.raises(ValueError, match=match):  # the toy splits its particles over the same argument
        ppl_bmc.toy.flux([0.0, 5.0, 10.0], [0.0], key=jax.random.key(0), n_particles=8, devices=devices)


def test_one_device_is_no_mesh_and_a_slab_refuses_devices():
    assert readings_mesh(None) is None and readings_mesh(1) is None and readings_mesh("all") is None
    assert pad_readings({"a": 1}, 3, None) == ({"a": 1}, 3)
    with pytest.raises(ValueError, match="transmitted_flux walks one line of sight"):
        ppl_bmc.muography.transmitted_flux(100.0, 0.0, method=ppl_bmc.BMC(jax.random.key(0), devices=1))
