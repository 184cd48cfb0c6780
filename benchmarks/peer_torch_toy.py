"""The paper's toy written in PyTorch, vectorised over particles: the peer of the JAX timings.

A benchmark-only script for a separate environment (it imports neither JAX nor ppl_bmc)::

    python3.11 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch numpy
    /tmp/torchenv/bin/python benchmarks/peer_torch_toy.py --n-particles 100000 --repeats 7

or, for the side-by-side table in the same run,
``python benchmarks/bench_toy_adjoints.py --torch-python /tmp/torchenv/bin/python``.

What it computes follows the Appendix of R. Grinis, "Differentiable programming for particle
physics simulations", JETP 2022 (arXiv 2108.10245): Example 1 (``backward_mc``: two backward
steps, the whole trajectory on PyTorch's autograd tape) and Example 2 (``backward_mc_grad``: the
adjoint in forward-accumulation form, ``grad ← w_k · grad + W · ∂w_k/∂node`` after each step,
written there for one particle), here both vectorised over readings × particles.  The physics is
that of ``ppl_bmc.transport.ToyKernel``, so the two implementations estimate the same flux: node
``(μx, μy, σ²)`` with the density ``exp(-|x - μ|²/σ²)`` (the released notebook's convention),
weight ``exp(-0.1·length)`` per step, the turn ``0.05·π·(U - 0.5)`` before step 2.  Two choices
make the peer as fast as PyTorch allows, so that the comparison does not favour JAX: the 2 × 2
rotations are written out elementwise (the Appendix's batched ``matmul`` of (n, 2, 2) matrices is
slower), and all readings go through one set of tensor operations.

Timed, as in ``bench_toy_adjoints.py``: the forward flux (no tape), the gradient of the paper's
log-likelihood ``-500·Σ(observed - flux)²`` with respect to ``node`` by Example 2's adjoint, and the
same gradient by autograd through Example 1 (``backward()``); one warm-up call, then the median of
``--repeats`` interleaved rounds.  Prints a table and, last, one JSON line with the figures.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time

import torch

# Paper's readings, observations and Fig. 2 start (same numbers as ppl_bmc.toy).
THETAS = tuple(math.pi * t for t in (0.0, 0.1, -0.08))
OBSERVED = (0.04, 0.042, 0.032)
START = (0.0, 5.0, 10.0)
MATERIAL_A, MATERIAL_B, ATTENUATION, TURN = 0.9, 0.01, 0.1, 0.05


def _weight(position, node, coin, length):
    """One step's weight (R, P): the material picked by the coin, times the attenuation
    (``node`` (3,), or one per particle (R, P, 3))."""
    density = torch.exp(-((position - node[..., :2]) ** 2).sum(-1) / node[..., 2])
    return torch.where(coin, density / 0.5 * MATERIAL_A, (1 - density) / 0.5 * MATERIAL_B) \
        * torch.exp(-ATTENUATION * length)


def _path(thetas, n_particles, generator):
    """The uniforms and positions of both steps (they do not depend on ``node``)."""
    shape = (thetas.shape[0], n_particles)
    u = torch.rand((5,) + shape, generator=generator, dtype=thetas.dtype)
    length1, length2 = 1 - 0.2 * u[0], 1 - 0.2 * u[1]
    turn = TURN * math.pi * (u[2] - 0.5)
    c, s = torch.cos(thetas)[:, None], torch.sin(thetas)[:, None]
    d1 = torch.stack([-s.expand(shape), c.expand(shape)], -1)  # (0, 1) rotated by θ
    ct, st = torch.cos(turn), torch.sin(turn)
    d2 = torch.stack([ct * d1[..., 0] - st * d1[..., 1], st * d1[..., 0] + ct * d1[..., 1]], -1)
    x1 = length1[..., None] * d1
    x2 = x1 + length2[..., None] * d2
    return (x1, u[3] < 0.5, length1), (x2, u[4] < 0.5, length2)


def flux(node, thetas, n_particles, generator):
    """Example 1 vectorised: the mean weight per reading (R,)."""
    (x1, coin1, length1), (x2, coin2, length2) = _path(thetas, n_particles, generator)
    return (_weight(x1, node, coin1, length1) * _weight(x2, node, coin2, length2)).mean(-1)


def _loglik_grad(f, df, observed):
    """d/dnode of -500·Σ(observed - f)² from the flux f (R,) and its Jacobian df (R, 3)."""
    return (1000.0 * (observed - f))[:, None].mul(df).sum(0)


def grad_adjoint(node, thetas, n_particles, generator, observed):
    """Example 2 vectorised: per-particle ∂w_k/∂node from a per-particle leaf, accumulated
    forward (``grad ← w_k · grad + W · ∂w_k``); returns (flux (R,), d loglik / d node (3,))."""
    steps = _path(thetas, n_particles, generator)
    weights = torch.ones(thetas.shape[0], n_particles, dtype=thetas.dtype)
    grad = torch.zeros(thetas.shape[0], n_particles, 3, dtype=thetas.dtype)
    for position, coin, length in steps:
        leaf = node.detach().expand(thetas.shape[0], n_particles, 3).clone().requires_grad_()
        w = _weight(position, leaf, coin, length)
        (dw,) = torch.autograd.grad(w.sum(), leaf)
        w = w.detach()
        grad = w[..., None] * grad + weights[..., None] * dw
        weights = weights * w
    f = weights.mean(-1)
    return f, _loglik_grad(f, grad.mean(-2), observed)


def grad_autograd(node, thetas, n_particles, generator, observed):
    """Autograd through Example 1 (the tape of both steps); returns (flux, d loglik / d node)."""
    leaf = node.detach().clone().requires_grad_()
    f = flux(leaf, thetas, n_particles, generator)
    loglik = -500.0 * ((observed - f) ** 2).sum()
    (g,) = torch.autograd.grad(loglik, leaf)
    return f.detach(), g


def timed(fn, repeats):
    fn()  # warm-up
    out, times = None, []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-particles", type=int, default=100_000, help="particles per reading")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: PyTorch's default)")
    parser.add_argument("--x64", action="store_true", help="float64 (default float32)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = torch.float64 if args.x64 else torch.float32
    node = torch.tensor(START, dtype=dtype)
    thetas = torch.tensor(THETAS, dtype=dtype)
    observed = torch.tensor(OBSERVED, dtype=dtype)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        t_fwd, f = timed(lambda: flux(node, thetas, args.n_particles, gen), args.repeats)
    t_adj, (fa, ga) = timed(lambda: grad_adjoint(node, thetas, args.n_particles, gen, observed), args.repeats)
    t_ad, (fb, gb) = timed(lambda: grad_autograd(node, thetas, args.n_particles, gen, observed), args.repeats)
    print(f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads, {dtype}, "
          f"{len(THETAS)} readings x {args.n_particles} particles, 2 steps (median of {args.repeats})")
    print(f"  forward (Example 1, no tape)        {t_fwd * 1e3:9.2f} ms   flux {[round(float(x), 5) for x in f]}")
    print(f"  gradient, adjoint (Example 2)       {t_adj * 1e3:9.2f} ms   d loglik/d node {[round(float(x), 4) for x in ga]}")
    print(f"  gradient, autograd (Example 1)      {t_ad * 1e3:9.2f} ms   d loglik/d node {[round(float(x), 4) for x in gb]}")
    # the two gradients on the same uniforms agree (to rounding): the adjoint is exact
    ga1 = grad_adjoint(node, thetas, args.n_particles, torch.Generator().manual_seed(1), observed)[1]
    gb1 = grad_autograd(node, thetas, args.n_particles, torch.Generator().manual_seed(1), observed)[1]
    agree = float((ga1 - gb1).abs().max() / gb1.abs().max())
    print(f"  adjoint vs autograd on the same uniforms: max |difference| / max |gradient| = {agree:.1e}")
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(),
                      "n_particles": args.n_particles, "forward_s": t_fwd, "adjoint_grad_s": t_adj,
                      "autograd_grad_s": t_ad, "adjoint_vs_autograd": agree, "flux": [float(x) for x in f],
                      "grad_adjoint": [float(x) for x in ga], "grad_autograd": [float(x) for x in gb]}))


if __name__ == "__main__":
    main()
