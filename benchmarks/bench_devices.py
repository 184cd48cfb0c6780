"""Benchmark: one BMC likelihood split over devices (``BMC(devices=N)``) against one device.

For each device count N (a fresh process with ``XLA_FLAGS=--xla_force_host_platform_device_count=N``
on CPU; the GPUs on a GPU machine): the time of ``expected_counts`` forward and of the gradient of
Σ log counts (ReplayAdjoint) through the 32 × 32 pyramid of ``models/hidden_void.py`` and a
16³ block, and the speed-up over one device.  The counts agree across N to float rounding
(tests/transport/test_sharding.py checks it in float64).

    python benchmarks/bench_devices.py              # 1 and 2 devices (this machine: 2 cores)
    python benchmarks/bench_devices.py --devices 1 2 4
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

WORKER = """
import json, sys, time
sys.path.insert(0, {here!r})
import jax, jax.numpy as jnp, numpy as np
import ppl_bmc
from bench_muography import scenes

n_dev, n_particles, grid2d, grid3d, repeats = {n_dev}, {n_particles}, {grid2d}, {grid3d}, {repeats}
out = {{"devices": len(jax.devices()), "platform": jax.default_backend(), "rows": []}}
for name, (make, rho, dets) in scenes(grid2d, grid3d).items():
    scene = make(None)
    method = ppl_bmc.BMC(jax.random.key(0), n_particles=n_particles, devices=n_dev if n_dev > 1 else None)
    f = lambda r: ppl_bmc.expected_counts(scene, r, dets, method=method)
    g = jax.grad(lambda r: jnp.sum(jnp.log(f(r))))
    row = {{"scene": name, "readings": int(np.prod(jax.eval_shape(f, rho).shape))}}
    for label, fn in (("fwd", jax.jit(f)), ("grad", jax.jit(g))):
        value = jax.block_until_ready(fn(rho))
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            jax.block_until_ready(fn(rho))
            times.append(time.perf_counter() - t0)
        row[label] = min(times)
        if label == "fwd":
            row["total"] = float(jnp.sum(value))
    out["rows"].append(row)
print("RESULT" + json.dumps(out))
"""


def run(n_dev, args):
    env = dict(os.environ)
    if args.platform == "cpu":
        env["XLA_FLAGS"] = " ".join([f for f in env.get("XLA_FLAGS", "").split()
                                     if not f.startswith("--xla_force_host_platform_device_count")]
                                    + [f"--xla_force_host_platform_device_count={n_dev}"])
        env["JAX_PLATFORMS"] = "cpu"
    code = WORKER.format(here=HERE, n_dev=n_dev, n_particles=args.n_particles, grid2d=args.grid2d, grid3d=args.grid3d,
                         repeats=args.repeats)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"the {n_dev}-device run failed:\n{proc.stderr[-3000:]}")
    return json.loads(next(l for l in proc.stdout.splitlines() if l.startswith("RESULT"))[len("RESULT"):])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--n-particles", type=int, default=1000)
    parser.add_argument("--grid2d", type=int, default=32)
    parser.add_argument("--grid3d", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--platform", choices=["cpu", "default"], default="cpu",
                        help="cpu: forced host devices (default); default: the machine's accelerators")
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny grids, few particles")
    args = parser.parse_args(argv)
    if args.quick:
        args.n_particles, args.grid2d, args.grid3d, args.repeats = 16, 8, 4, 1
    results = {n: run(n, args) for n in args.devices}
    base = results[args.devices[0]]
    print(f"BMC expected_counts split over devices ({base['platform']}, {os.cpu_count()} CPU cores), "
          f"{args.n_particles} particles per reading, ReplayAdjoint; best of {args.repeats}")
    print(f"{'scene':>16}{'readings':>10}{'devices':>9}{'fwd ms':>10}{'grad ms':>10}{'fwd speed-up':>14}"
          f"{'grad speed-up':>15}{'rel. diff':>11}")
    for i, row0 in enumerate(base["rows"]):
        for n in args.devices:
            row = results[n]["rows"][i]
            assert results[n]["devices"] == n or args.platform != "cpu", results[n]["devices"]
            print(f"{row['scene']:>16}{row['readings']:>10}{n:>9}{row['fwd'] * 1e3:>10.1f}{row['grad'] * 1e3:>10.1f}"
                  f"{row0['fwd'] / row['fwd']:>14.2f}{row0['grad'] / row['grad']:>15.2f}"
                  f"{abs(row['total'] / row0['total'] - 1):>11.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
