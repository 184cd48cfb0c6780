"""Time to the first BMC gradient: what a user waits for before a fit starts moving.

Each run is a fresh Python process that imports ``ppl_bmc``, builds the 32 × 32 pyramid of
``models/hidden_void.py`` (3 detectors × 24 bins), and computes one value and gradient of a
Poisson log-likelihood of BMC ``expected_counts`` (ReplayAdjoint, ``--n-particles`` per bin)
with respect to the 1024 densities.  The phases are timed inside the process:

* import: ``import jax, ppl_bmc`` and the model file (NumPyro with it);
* build: scene, detectors, data (a constant array: reading a file is not timed);
* trace + lower: ``jax.jit(...).lower(rho)`` (Python tracing of the walk and its adjoint, then
  StableHLO), which runs whether or not the executable is in the compilation cache;
* compile: XLA compilation, or with a warm cache reading the executable back;
* first call: the first execution; and, for comparison, a second call.

The first run uses an empty compilation cache (a fresh temporary folder), the next ones find its
executables (warm).  The target (issue "Speed and scale"): first gradient with a warm cache < 3 s.
Two figures are printed: the gradient's own time (trace + lower + compile + first call: what a
fit waits for once its model is built) and the time since the process started (imports too).

Run: ``python benchmarks/bench_first_gradient.py`` (``--runs 3``, ``--n-particles 100``; ``--quick``
for a smoke run).
"""

from __future__ import annotations

import time

T_START = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET_S = 3.0


def child(args):
    """One fresh process: the phases' seconds as one JSON line."""
    phases = {}
    t = time.perf_counter()

    def lap(name):
        nonlocal t
        now = time.perf_counter()
        phases[name] = now - t
        t = now

    from ppl_bmc._cache import enable_compilation_cache

    enable_compilation_cache()
    import jax
    import jax.numpy as jnp

    import ppl_bmc

    sys.path.insert(0, os.path.join(ROOT, "models"))
    import hidden_void

    lap("import")
    scene = hidden_void.scene({}, args.grid)
    dets = hidden_void.detectors()
    rho = jnp.full(scene.field.fill.shape, 2600.0)
    counts = jnp.full((len(dets), dets[0].n_bins), 1000.0)  # data as read from a file (no simulation timed)
    key = jax.random.key(0)

    def loglik(r):
        mu = ppl_bmc.expected_counts(scene, r, dets, method="bmc", key=key, n_particles=args.n_particles,
                                     adjoint=ppl_bmc.ReplayAdjoint())
        return jnp.sum(counts * jnp.log(mu) - mu)

    jax.block_until_ready(counts)
    lap("build")
    lowered = jax.jit(jax.value_and_grad(loglik)).lower(rho)
    lap("trace + lower")
    compiled = lowered.compile()
    lap("compile")
    value, grad = jax.block_until_ready(compiled(rho))
    lap("first call")
    jax.block_until_ready(compiled(rho))
    lap("second call")
    phases["since start"] = time.perf_counter() - T_START - phases["second call"]
    phases["finite"] = bool(jnp.isfinite(value) and jnp.all(jnp.isfinite(grad)))
    print(json.dumps(phases))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="fresh processes: the first cold, then warm (default 3)")
    parser.add_argument("--grid", type=int, default=32, help="pyramid voxels per side (default 32)")
    parser.add_argument("--n-particles", type=int, default=100, help="BMC particles per bin (default 100)")
    parser.add_argument("--cache-dir", help="compilation cache folder (default: a fresh temporary one, cold first)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: grid 4, 8 particles, 2 runs")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.grid, args.n_particles, args.runs = 4, 8, 2
    if args.child:
        child(args)
        return 0
    cache = args.cache_dir or tempfile.mkdtemp(prefix="ppl_bmc_first_gradient_")
    env = dict(os.environ, PPL_BMC_CACHE_DIR=cache, PYTHONPATH=os.pathsep.join(
        p for p in (ROOT, os.environ.get("PYTHONPATH")) if p))
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    print(f"pyramid {args.grid}x{args.grid}, 3 detectors x 24 bins, BMC ReplayAdjoint value + gradient, "
          f"{args.n_particles} particles per bin; compilation cache {cache}")
    names = ("import", "build", "trace + lower", "compile", "first call", "since start", "second call")
    print(f"{'run':<10}" + "".join(f"{n:>15}" for n in names) + f"{'process s':>12}")
    warm = []
    for i in range(args.runs):
        cmd = [sys.executable, os.path.abspath(__file__), "--child", "--grid", str(args.grid),
               "--n-particles", str(args.n_particles)]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr[-3000:])
            return proc.returncode
        ph = json.loads(proc.stdout.strip().splitlines()[-1])
        if not ph["finite"]:
            print("the gradient is not finite")
            return 1
        label = "cold" if i == 0 and not args.cache_dir else "warm"
        if label == "warm":
            warm.append((ph["trace + lower"] + ph["compile"] + ph["first call"], ph["since start"]))
        print(f"{label:<10}" + "".join(f"{ph[n]:>15.2f}" for n in names) + f"{wall:>12.2f}")
    print("   seconds; 'since start': from the process's first line to the first gradient in hand "
          "(Python start-up before it not counted; 'process s' is the whole process seen from outside)")
    if warm:
        own, total = min(w[0] for w in warm), min(w[1] for w in warm)
        print(f"time to first gradient with a warm cache: {own:.2f} s from the built model (trace + lower + "
              f"compile + first call; target < {TARGET_S:.0f} s: {'met' if own < TARGET_S else 'not met'}), "
              f"{total:.2f} s since the process started")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
