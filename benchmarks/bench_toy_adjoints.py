"""Benchmark of the paper's toy: time and memory of the three adjoint strategies.

Prints four tables:

1.  forward time, gradient time and their ratio for ``AutodiffAdjoint``,
    ``ForwardSensitivity`` and ``ReplayAdjoint`` on ``toy.flux`` at the paper's node and
    readings (default 1e5 particles per reading, 2 steps), plus the gradients' agreement;
2a. the memory of one gradient against ``n_steps`` (default 16, 64, 256, 1024), from XLA's
    compiled memory analysis (arguments + outputs + temporaries of the buffer assignment);
2b. the resident-memory peak of executing one gradient in a fresh subprocess per
    configuration (``/proc/self/status`` VmHWM after resetting it; ``ru_maxrss`` as fallback;
    with this table on, 2a is read from the same subprocesses' compiled gradients);
3.  the time of one ``ReplayAdjoint`` gradient against ``n_steps`` (particle-steps per second);
4.  with ``--torch-python PYTHON``: the paper's algorithm in PyTorch (``peer_torch_toy.py``, run
    in that interpreter right after table 1, same sizes) and the JAX / PyTorch time ratios.

and a summary of the acceptance figures (replay memory at the largest ``n_steps`` within
1.25x of the smallest; replay gradient within 2.5x of the primal).

The gradient is that of the paper's Gaussian log-likelihood
``-500 * sum((observed - flux)**2)`` with respect to ``node``.  Only compiled calls are timed:
one warm-up call, then the median of ``--repeats`` rounds of one forward and one gradient call
(interleaved, so that both see the same machine load), each ended by ``block_until_ready``.

Run: ``python benchmarks/bench_toy_adjoints.py`` (``--quick`` for a smoke run of a few
seconds, ``--help`` for the sizes).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import gc
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time

import jax
import jax.numpy as jnp

import ppl_bmc
from ppl_bmc import toy

MIB = float(2**20)
ADJOINTS = ("AutodiffAdjoint", "ForwardSensitivity", "ReplayAdjoint")
MEMORY_TOLERANCE = 1.25  # replay: peak memory at the largest n_steps / at the smallest
TIME_TOLERANCE = 2.5  # replay: gradient time / primal time


def make_adjoint(name):
    return getattr(ppl_bmc, name)()


# --------------------------------------------------------------------------- functions


# XLA options of every jitted function; --quick sets a low optimisation level (faster compiles).
COMPILER_OPTIONS: dict = {}


#: ``--devices``: split each reading's particles over this many devices (None: one).
DEVICES: list = [None]


@functools.lru_cache(maxsize=None)
def build(n_particles, n_steps, adjoint_name, seed=0):
    """Jitted ``(forward, gradient)`` of the toy at fixed sizes: both take ``node`` (3,).

    Cached, so a gradient compiled for the memory analysis (``lower().compile()``) is reused,
    not recompiled, by the timings of the same configuration.
    """
    adjoint = make_adjoint(adjoint_name)
    key = jax.random.key(seed)

    def forward(node):
        return toy.flux(
            node, toy.PAPER_THETAS, key=key, n_particles=n_particles, n_steps=n_steps, adjoint=adjoint,
            devices=DEVICES[0],
        )

    def log_likelihood(node):
        observed = jnp.asarray(toy.PAPER_OBSERVED, dtype=node.dtype)
        return -500.0 * jnp.sum((observed - forward(node)) ** 2)

    options = dict(COMPILER_OPTIONS) or None
    return (jax.jit(forward, compiler_options=options),
            jax.jit(jax.grad(log_likelihood), compiler_options=options))


def start_node():
    return jnp.asarray(toy.PAPER_START, dtype=jnp.result_type(float))


class Timing:
    """Seconds of the compiled forward and gradient calls, measured interleaved."""

    def __init__(self, forward, gradient, fwd_value, grad_value):
        self.forward, self.gradient = forward, gradient
        self.fwd_value, self.grad_value = fwd_value, grad_value
        self.n = len(forward)

    @property
    def fwd(self):
        return statistics.median(self.forward)

    @property
    def grad(self):
        return statistics.median(self.gradient)

    @property
    def ratio(self):
        """Median over rounds of gradient time / forward time (each round: one call of each)."""
        return statistics.median(g / f for f, g in zip(self.forward, self.gradient))

    @property
    def ratio_min(self):
        return min(self.gradient) / min(self.forward)


def time_pair(forward, gradient, arg, repeats, budget_s):
    """Time ``forward(arg)`` and ``gradient(arg)`` alternately, compiled calls only.

    Both are compiled ahead and called once (warm-up, which also estimates their cost); then
    ``repeats`` rounds of one forward and one gradient call each, every call ended by
    ``block_until_ready``.  Alternating the two keeps their ratio fair when the load of the
    machine drifts.  Where ``repeats`` rounds would exceed ``budget_s`` seconds, fewer are
    run (at least 3).
    """
    for fn in (forward, gradient):
        fn.lower(arg).compile()  # cached by jit: the calls below reuse this executable
    t0 = time.perf_counter()
    jax.block_until_ready(forward(arg))
    jax.block_until_ready(gradient(arg))
    warm = time.perf_counter() - t0
    n = max(1, repeats) if warm * repeats <= budget_s else max(3, min(repeats, int(budget_s / warm)))
    t_fwd, t_grad, value, grad = [], [], None, None
    for _ in range(n):
        t0 = time.perf_counter()
        value = jax.block_until_ready(forward(arg))
        t1 = time.perf_counter()
        grad = jax.block_until_ready(gradient(arg))
        t2 = time.perf_counter()
        t_fwd.append(t1 - t0)
        t_grad.append(t2 - t1)
    return Timing(t_fwd, t_grad, value, grad)


def xla_bytes(compiled):
    """Arguments + outputs + temporaries of a compiled buffer plan, in bytes (NaN if unknown)."""
    stats = compiled.memory_analysis()
    if stats is None:
        return float("nan")
    fields = ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes")
    total = sum(getattr(stats, f, 0) for f in fields)
    # Buffers shared between input and output are counted once.
    return total - getattr(stats, "alias_size_in_bytes", 0)


# --------------------------------------------------------------------------- RSS child


def _proc_status_kib(field):
    try:
        with open("/proc/self/status") as f:
            match = re.search(rf"^{field}:\s+(\d+)\s+kB", f.read(), re.MULTILINE)
        return int(match.group(1)) if match else None
    except OSError:
        return None


def _reset_peak_rss():
    """Reset VmHWM to the current RSS (Linux ≥ 4.0); False where it is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _settled_rss_kib(timeout_s=3.0):
    """VmRSS once it stops falling: the runtime frees an execution's temporaries shortly *after*
    its outputs are ready, so an RSS read right after ``block_until_ready`` can still hold them."""
    last = _proc_status_kib("VmRSS")
    deadline = time.perf_counter() + timeout_s
    while last is not None and time.perf_counter() < deadline:
        time.sleep(0.1)
        now = _proc_status_kib("VmRSS")
        if abs(now - last) < 256:
            return now
        last = now
    return last


def _maxrss_kib():
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss // 1024 if sys.platform == "darwin" else rss  # bytes on macOS, KiB on Linux


def rss_child(adjoint_name, n_particles, n_steps):
    """Run in a fresh process: compile, warm up, then measure the RSS peak of one gradient.

    Prints one JSON line: the XLA memory analysis of the compiled gradient (bytes), the RSS
    peak of one execution above the RSS before it (KiB), and the process's ``ru_maxrss``.
    """
    node = start_node()
    _, grad = build(n_particles, n_steps, adjoint_name)
    compiled = grad.lower(node).compile()
    result = {"xla_bytes": xla_bytes(compiled), "maxrss_kib": None, "exec_kib": None,
              "method": "ru_maxrss"}
    jax.block_until_ready(compiled(node))  # first execution: one-time allocations of the runtime
    gc.collect()
    before = _settled_rss_kib()
    if before is not None and _reset_peak_rss():
        jax.block_until_ready(compiled(node))
        peak = _proc_status_kib("VmHWM")
        result.update(exec_kib=max(peak - before, 0), method="VmHWM")
    result["maxrss_kib"] = _maxrss_kib()
    print(json.dumps(result))


def rss_in_subprocess(adjoint_name, n_particles, n_steps, x64):
    """``{'xla_bytes', 'exec_kib', 'maxrss_kib', 'method'}`` from a fresh interpreter (or None)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    # A fixed glibc mmap threshold returns large freed buffers to the OS at once, so the RSS
    # before the measured call holds no cached buffers of the warm-up call.
    env.setdefault("MALLOC_MMAP_THRESHOLD_", str(1 << 20))
    env.setdefault("MALLOC_TRIM_THRESHOLD_", str(1 << 20))
    cmd = [sys.executable, os.path.abspath(__file__), "--rss-child", adjoint_name,
           str(n_particles), str(n_steps)] + (["--x64"] if x64 else [])
    cmd += ["--devices", str(DEVICES[0])] if DEVICES[0] else []  # the child splits as the parent does
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-2000:])
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- tables


def fmt_ratio(a, b):
    return f"{a / b:.2f}" if b and b == b and a == a else "n/a"


def section_timing(args, node):
    n_read = len(toy.PAPER_THETAS)
    print(f"\n1. toy.flux time, {n_read} readings x {args.n_particles} particles, "
          f"{args.timing_steps} steps (median of n interleaved compiled calls)")
    print(f"{'adjoint':<20}{'forward ms':>12}{'gradient ms':>13}{'grad/fwd':>10}"
          f"{'fwd min ms':>12}{'grad min ms':>13}{'min/min':>9}{'n':>4}  d loglik / d node")
    results = {}
    for name in ADJOINTS:
        fwd, grad = build(args.n_particles, args.timing_steps, name)
        t = time_pair(fwd, grad, node, args.repeats, args.budget)
        results[name] = t
        vals = ", ".join(f"{v:+.5g}" for v in t.grad_value.tolist())
        print(f"{name:<20}{t.fwd * 1e3:>12.2f}{t.grad * 1e3:>13.2f}{t.ratio:>10.2f}"
              f"{min(t.forward) * 1e3:>12.2f}{min(t.gradient) * 1e3:>13.2f}{t.ratio_min:>9.2f}{t.n:>4}"
              f"  ({vals})")
    ref = results["AutodiffAdjoint"].grad_value
    scale = float(jnp.max(jnp.abs(ref))) or 1.0
    diffs = ", ".join(
        f"{n} {float(jnp.max(jnp.abs(results[n].grad_value - ref))) / scale:.1e}" for n in ADJOINTS[1:]
    )
    print(f"max |gradient - AutodiffAdjoint| / max |AutodiffAdjoint|: {diffs}")
    print("   grad/fwd: median over rounds of (gradient time / forward time of the same round); "
          "min/min: fastest gradient / fastest forward")
    return results


def _table(title, steps, rows, unit_fmt):
    print(title)
    first = steps[0]
    print(f"{'adjoint':<20}" + "".join(f"{f'{s} steps MiB':>16}" for s in steps)
          + "".join(f"{f'{s}/{first}':>10}" for s in steps[1:]))
    for name, values in rows.items():
        print(f"{name:<20}" + "".join(unit_fmt(v) for v in values)
              + "".join(f"{fmt_ratio(v, values[0]):>10}" for v in values[1:]))


def measure_in_subprocesses(args):
    """Child results per adjoint, one per ``n_steps`` (``--jobs`` children at a time)."""
    configs = [(name, s) for name in ADJOINTS for s in args.steps]
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [pool.submit(rss_in_subprocess, name, args.memory_particles, s, args.x64)
                   for name, s in configs]
        results = [f.result() for f in futures]
    out = {name: [] for name in ADJOINTS}
    for (name, _), r in zip(configs, results):
        out[name].append(r)
    return out


def section_xla_memory(args, node, children=None):
    """Table 2a, from the children's compiled gradients where given, else compiled here."""
    n_read = len(toy.PAPER_THETAS)
    rows = {}
    for name in ADJOINTS:
        if children is not None:
            rows[name] = [float("nan") if r is None else r["xla_bytes"] for r in children[name]]
        else:
            rows[name] = [xla_bytes(build(args.memory_particles, s, name)[1].lower(node).compile())
                          for s in args.steps]
    _table(f"\n2a. memory of one gradient, XLA compiled memory analysis (arguments + outputs + "
           f"temporaries), {n_read} readings x {args.memory_particles} particles",
           args.steps, rows, lambda b: f"{b / MIB:>16.2f}")
    return rows


def section_rss(args, children):
    n_read = len(toy.PAPER_THETAS)
    rows, totals, methods = {}, {}, set()
    for name in ADJOINTS:
        rows[name], totals[name] = [], []
        for r in children[name]:
            if r is None:
                rows[name].append(float("nan"))
                totals[name].append(float("nan"))
                continue
            methods.add(r["method"])
            exec_kib = r["exec_kib"] if r["exec_kib"] is not None else r["maxrss_kib"]
            rows[name].append(exec_kib * 1024.0)
            totals[name].append(r["maxrss_kib"] * 1024.0)
    how = ("RSS peak of the second execution above the settled RSS before it (VmHWM reset)"
           if methods == {"VmHWM"} else "whole-process ru_maxrss (VmHWM reset unavailable)")
    _table(f"\n2b. memory of one gradient, fresh subprocess per configuration: {how}, "
           f"{n_read} readings x {args.memory_particles} particles",
           args.steps, rows, lambda b: f"{b / MIB:>16.2f}")
    print("   whole-process ru_maxrss MiB (import + compile + run): "
          + "; ".join(f"{n} " + "/".join(f"{b / MIB:.0f}" for b in totals[n]) for n in ADJOINTS))
    return rows


def section_replay_time(args, node):
    n_read = len(toy.PAPER_THETAS)
    print(f"\n3. ReplayAdjoint time against n_steps, {n_read} readings x {args.memory_particles} "
          f"particles (median of n interleaved compiled calls)")
    print(f"{'n_steps':>8}{'forward ms':>12}{'gradient ms':>13}{'grad/fwd':>10}{'min/min':>9}{'n':>4}"
          f"{'grad particle-steps/s':>23}{'grad ms/1000 steps':>20}{'max flux':>11}{'max |grad|':>12}")
    out = {}
    for s in args.steps:
        fwd, grad = build(args.memory_particles, s, "ReplayAdjoint")
        t = time_pair(fwd, grad, node, args.repeats, args.budget)
        out[s] = t
        rate = n_read * args.memory_particles * s / t.grad
        print(f"{s:>8}{t.fwd * 1e3:>12.2f}{t.grad * 1e3:>13.2f}{t.ratio:>10.2f}{t.ratio_min:>9.2f}{t.n:>4}"
              f"{rate:>23.3g}{t.grad * 1e3 / s * 1000:>20.1f}"
              f"{float(jnp.max(t.fwd_value)):>11.2e}{float(jnp.max(jnp.abs(t.grad_value))):>12.2e}")
    zero = [s for s, t in out.items() if float(jnp.max(t.fwd_value)) == 0.0]
    if zero:
        print(f"   the toy's weights shrink with every step: in {node.dtype} the flux (and its gradient)"
              f" underflows to exactly 0 at n_steps = {', '.join(map(str, zero))};\n"
              "   the computation, and so its time and memory, does not depend on the values")
    return out


def section_torch(args, timing):
    """Table 4: the PyTorch peer (``peer_torch_toy.py`` in the interpreter ``--torch-python``) at
    table 1's sizes, run right after it; the ratios JAX / PyTorch of the same run."""
    if args.timing_steps != 2:
        print("\n4. PyTorch peer skipped: it is the paper's two-step toy (--timing-steps 2)")
        return None
    peer = os.path.join(os.path.dirname(os.path.abspath(__file__)), "peer_torch_toy.py")
    cmd = [args.torch_python, peer, "--n-particles", str(args.n_particles), "--repeats", str(args.repeats)]
    cmd += ["--x64"] if args.x64 else []
    proc = subprocess.run(cmd, capture_output=True, text=True)
    print(f"\n4. the paper's algorithm in PyTorch (Appendix Examples 1 and 2 vectorised; "
          f"{os.path.basename(peer)}), same sizes, same run")
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-2000:])
        print(f"   the peer failed (exit {proc.returncode}): {' '.join(cmd)}")
        return None
    lines = proc.stdout.strip().splitlines()
    print("\n".join("   " + line for line in lines[:-1]))
    peer_t = json.loads(lines[-1])
    t = timing["ReplayAdjoint"]
    torch_grad = min(peer_t["adjoint_grad_s"], peer_t["autograd_grad_s"])
    print(f"   JAX ReplayAdjoint / PyTorch: forward {t.fwd * 1e3:.2f} / {peer_t['forward_s'] * 1e3:.2f} ms "
          f"= {t.fwd / peer_t['forward_s']:.2f};  gradient {t.grad * 1e3:.2f} / {torch_grad * 1e3:.2f} ms "
          f"(the faster PyTorch gradient) = {t.grad / torch_grad:.2f}  (target <= 0.5, goal 0.2)")
    return peer_t


def summary(args, timing, xla, rss, replay_times):
    print("\nacceptance (ReplayAdjoint)")
    lo, hi = args.steps[0], args.steps[-1]

    def verdict(ok):
        return "PASS" if ok else "FAIL"

    for label, rows in (("XLA memory analysis", xla), ("subprocess RSS", rss)):
        if rows is None:
            continue
        v = rows["ReplayAdjoint"]
        ratio = v[-1] / v[0] if v[0] else float("nan")
        auto = rows["AutodiffAdjoint"]
        print(f"  memory {hi}/{lo} steps ({label}): {ratio:.3f} (<= {MEMORY_TOLERANCE}) "
              f"{verdict(ratio <= MEMORY_TOLERANCE)};  AutodiffAdjoint for contrast: "
              f"{fmt_ratio(auto[-1], auto[0])}")
    t = timing["ReplayAdjoint"]
    print(f"  gradient/primal time, {args.n_particles} particles x {args.timing_steps} steps: "
          f"{t.ratio:.2f} (<= {TIME_TOLERANCE}) {verdict(t.ratio <= TIME_TOLERANCE)} "
          f"[min/min {t.ratio_min:.2f}]")
    if replay_times:
        ratios = ", ".join(f"{s}: {t.ratio:.2f}" for s, t in replay_times.items())
        print(f"  gradient/primal time by n_steps ({args.memory_particles} particles): {ratios}")


# --------------------------------------------------------------------------- main


def _load():
    try:
        return "/".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-particles", type=int, default=100_000,
                        help="particles per reading for table 1 (default 100000)")
    parser.add_argument("--timing-steps", type=int, default=2, help="steps for table 1 (default 2, the paper's)")
    parser.add_argument("--memory-particles", type=int, default=10_000,
                        help="particles per reading for tables 2a, 2b, 3 (default 10000)")
    parser.add_argument("--steps", type=int, nargs="+", default=[16, 64, 256, 1024],
                        help="n_steps values for tables 2a, 2b, 3 (default 16 64 256 1024)")
    parser.add_argument("--repeats", type=int, default=7,
                        help="timed (forward, gradient) rounds per figure (default 7)")
    parser.add_argument("--budget", type=float, default=15.0,
                        help="seconds per figure above which fewer rounds (>= 3) are run (default 15)")
    parser.add_argument("--rss", dest="rss", action="store_true", default=None,
                        help="measure subprocess RSS (table 2b; on by default except with --quick)")
    parser.add_argument("--no-rss", dest="rss", action="store_false", help="skip table 2b")
    parser.add_argument("--jobs", type=int, default=2,
                        help="subprocesses run at a time for table 2b (default 2)")
    parser.add_argument("--x64", action="store_true", help="enable float64 (jax_enable_x64)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run of a few seconds")
    parser.add_argument("--devices", type=int, default=None,
                        help="split each reading's particles over N devices (on CPU: start with "
                             "XLA_FLAGS=--xla_force_host_platform_device_count=N)")
    parser.add_argument("--torch-python", metavar="PYTHON",
                        help="an interpreter with PyTorch: run peer_torch_toy.py in it after table 1 and "
                             "print JAX / PyTorch time ratios (table 4)")
    parser.add_argument("--rss-child", nargs=3, metavar=("ADJOINT", "N_PARTICLES", "N_STEPS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.x64:
        jax.config.update("jax_enable_x64", True)
    DEVICES[0] = args.devices
    if args.rss_child:
        name, n_particles, n_steps = args.rss_child
        rss_child(name, int(n_particles), int(n_steps))
        return 0
    if args.quick:
        args.n_particles, args.memory_particles, args.steps, args.repeats = 2_000, 500, [16, 64], 2
        COMPILER_OPTIONS["xla_backend_optimization_level"] = 0
    if args.rss is None:
        args.rss = not args.quick
    args.steps = sorted(set(args.steps))

    t_start = time.perf_counter()
    node = start_node()
    dev = jax.devices()[0]
    print(f"ppl_bmc {ppl_bmc.__version__}; jax {jax.__version__}; python {platform.python_version()}; "
          f"{os.cpu_count()} CPU core(s)")
    print(f"backend {jax.default_backend()}, device {dev.device_kind} ({dev.platform}), "
          f"{jax.device_count()} device(s), particles split over {args.devices or 1}; float dtype {node.dtype}")
    print(f"load average at start (1/5/15 min): {_load()}; other processes on the machine "
          "distort the timings (not the XLA memory figures)")
    if COMPILER_OPTIONS:
        print(f"smoke run (--quick): XLA options {COMPILER_OPTIONS}; the figures are not meaningful")

    clock = time.perf_counter()

    def lap(label):
        nonlocal clock
        now = time.perf_counter()
        print(f"   ({label} took {now - clock:.1f} s)")
        clock = now

    timing = section_timing(args, node)
    lap("table 1")
    if args.torch_python:
        section_torch(args, timing)
        lap("table 4, the PyTorch peer")
    rss = None
    if args.rss:
        children = measure_in_subprocesses(args)
        xla = section_xla_memory(args, node, children)
        rss = section_rss(args, children)
        lap(f"tables 2a and 2b, {len(ADJOINTS) * len(args.steps)} subprocesses, {args.jobs} at a time")
    else:
        xla = section_xla_memory(args, node)
        lap("table 2a, compiles only")
    replay_times = section_replay_time(args, node)
    lap("table 3")
    summary(args, timing, xla, rss, replay_times)
    print(f"\ntotal wall time {time.perf_counter() - t_start:.1f} s; load average at end: {_load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
