"""Benchmark of ``ppl_bmc.expected_counts`` on muography scenes, and NUTS on the hidden void.

1. Forward and gradient time (median of repeats) of the quadrature and of BMC for
   * the 2-D pyramid of ``models/hidden_void.py`` on a 32 × 32 voxel grid (3 detectors × 24 bins),
   * a 3-D block of 16³ = 4096 voxels (4 detectors × 6 × 8 bins);
   BMC gradients through ReplayAdjoint (and AutodiffAdjoint for comparison).
2. Memory of one BMC gradient (XLA compiled memory analysis: arguments + outputs +
   temporaries) at ``n_steps`` and at 4 × ``n_steps`` (the same rays cut into steps 4 × shorter):
   the replay adjoint's ratio should stay ≤ 1.25, reverse-mode AD's grows with the steps.
3. NUTS wall time of the hidden-void model on its 16 × 16 grid (quadrature likelihood).

Run: ``python benchmarks/bench_muography.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import ppl_bmc
from ppl_bmc.detectors import check_detectors
from ppl_bmc.likelihood import _check_steps
from ppl_bmc.geometry import Scene, VoxelGrid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models"))
import hidden_void  # noqa: E402

MIB = float(2**20)
DAY = 86400.0


def scenes(grid2d, grid3d):
    """``{name: (scene builder(step_m), params, detectors)}``."""
    pyramid = hidden_void.scene({}, grid2d)
    vox = pyramid.field.fill
    rho2 = jnp.full(vox.shape, 2600.0)
    block = VoxelGrid((-50.0, -50.0, 0.0), (50.0, 50.0, 60.0), (grid3d,) * 3)
    dets3 = tuple(ppl_bmc.Detector((x, y, 0.0), np.linspace(0, 60, 7), np.linspace(-180, 180, 9), exposure_s=30 * DAY)
                  for x, y in ((-20.0, -20.0), (20.0, -20.0), (-20.0, 20.0), (20.0, 20.0)))
    rho3 = jnp.asarray(np.random.default_rng(0).uniform(1500.0, 3000.0, block.shape), jnp.float32)
    return {
        f"pyramid {grid2d}x{grid2d}": (lambda step: Scene(pyramid.field, material="limestone", step_m=step), rho2,
                                       hidden_void.detectors()),
        f"block {grid3d}^3": (lambda step: Scene(block, step_m=step), rho3, dets3),
    }


def median_time(fn, arg, repeats):
    jax.block_until_ready(fn(arg))  # first call: warm-up, not timed
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(arg))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def xla_mib(compiled):
    stats = compiled.memory_analysis()
    if stats is None:
        return float("nan")
    total = stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes
    return (total - getattr(stats, "alias_size_in_bytes", 0)) / MIB


def pair(scene, dets, rho, **kw):
    """Forward and gradient of ``expected_counts``, each compiled once for ``rho``."""
    f = lambda r: ppl_bmc.expected_counts(scene, r, dets, **kw)
    g = jax.grad(lambda r: jnp.sum(jnp.log(f(r))))
    return jax.jit(f).lower(rho).compile(), jax.jit(g).lower(rho).compile()


def section_counts(args):
    print(f"\n1-2. expected_counts: time (ms) and gradient memory (MiB); BMC with {args.n_particles} particles per bin")
    print(f"{'scene':>16}{'method':>24}{'n_steps':>9}{'fwd ms':>10}{'grad ms':>10}{'grad/fwd':>10}{'grad MiB':>10}")
    for name, (make, rho, dets) in scenes(args.grid2d, args.grid3d).items():
        base = make(None)
        n0 = _check_steps(base, check_detectors(dets, base.ndim), None)  # the default walk length
        fwd, grad = pair(base, dets, rho, method="quadrature")
        t_f, t_g = median_time(fwd, rho, args.repeats), median_time(grad, rho, args.repeats)
        print(f"{name:>16}{'quadrature':>24}{'-':>9}{t_f * 1e3:>10.2f}{t_g * 1e3:>10.2f}{t_g / t_f:>10.2f}"
              f"{xla_mib(grad):>10.1f}")
        adjoints = [ppl_bmc.ReplayAdjoint()] + ([] if args.replay_only else [ppl_bmc.AutodiffAdjoint()])
        for adjoint in adjoints:
            mem = []
            for mult in (1, 4):
                sc = make(base.step_m / mult)
                kw = dict(key=jax.random.key(0), n_particles=args.n_particles, n_steps=n0 * mult, adjoint=adjoint)
                fwd, grad = pair(sc, dets, rho, **kw)
                t_f, t_g = median_time(fwd, rho, args.repeats), median_time(grad, rho, args.repeats)
                mem.append(xla_mib(grad))
                print(f"{name:>16}{'bmc ' + type(adjoint).__name__:>24}{n0 * mult:>9}{t_f * 1e3:>10.1f}{t_g * 1e3:>10.1f}"
                      f"{t_g / t_f:>10.2f}{mem[-1]:>10.1f}")
            print(f"{'':>16}{type(adjoint).__name__ + ' memory ratio (4x steps / 1x)':>53}: {mem[1] / mem[0]:.2f}")


def section_nuts(args):
    import numpyro

    from ppl_bmc import infer

    cfg = {"grid": args.nuts_grid}
    data, _ = hidden_void.simulate(cfg, key=jax.random.key(0))
    model, kw = hidden_void.build(cfg, data, key=jax.random.key(1))
    t0 = time.perf_counter()
    mcmc = infer.run_nuts(model, rng_key=jax.random.key(2), num_warmup=args.warmup, num_samples=args.samples,
                          num_chains=args.chains, **kw)
    samples = jax.block_until_ready(mcmc.get_samples(group_by_chain=True))
    wall = time.perf_counter() - t0
    steps = np.asarray(mcmc.get_extra_fields(group_by_chain=True)["num_steps"])
    table = infer.summary(infer.to_inference_data(mcmc, log_likelihood=False), var_names=["log_density"])
    print(f"\n3. NUTS, hidden void {args.nuts_grid}x{args.nuts_grid} (quadrature), {args.chains} chains "
          f"({infer.default_chain_method(args.chains)}) x ({args.warmup} warmup + {args.samples} draws): "
          f"{wall:.1f} s wall (with compilation); mean leapfrog steps per draw {steps.mean():.1f}; "
          f"max r_hat {table['r_hat'].max():.3f}; min ess_bulk {table['ess_bulk'].min():.0f} "
          f"({wall / max(float(table['ess_bulk'].min()), 1.0):.3g} s per effective sample); "
          f"{numpyro.__version__=}".replace("numpyro.__version__=", "numpyro "))
    del samples


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-particles", type=int, default=1000)
    parser.add_argument("--grid2d", type=int, default=32)
    parser.add_argument("--grid3d", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--nuts-grid", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--skip-nuts", action="store_true")
    parser.add_argument("--nuts-only", action="store_true", help="only section 3 (NUTS on the hidden void)")
    parser.add_argument("--replay-only", action="store_true", help="BMC gradients through ReplayAdjoint only")
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny grids, few particles, replay only")
    args = parser.parse_args(argv)
    if args.quick:
        args.n_particles, args.grid2d, args.grid3d, args.repeats = 32, 8, 4, 1
        args.nuts_grid, args.warmup, args.samples, args.chains = 6, 20, 20, 1
        args.replay_only = True
    print(f"ppl_bmc {ppl_bmc.__version__}, jax {jax.__version__}, backend {jax.default_backend()}, "
          f"{jax.local_device_count()} device(s), {os.cpu_count()} CPU core(s)")
    if not args.nuts_only:
        section_counts(args)
    if not args.skip_nuts:
        section_nuts(args)
    return 0


if __name__ == "__main__":
    import numpyro

    numpyro.set_host_device_count(2)
    raise SystemExit(main())
