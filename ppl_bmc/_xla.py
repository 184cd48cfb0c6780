"""Work-around for an XLA miscompilation on the CPU: switched on when ``ppl_bmc`` is imported.

jaxlib on the CPU returns wrong values for some vectorised functions whose reductions XLA
hands to YNNPACK.  On 0.12.0.1, ``jax.jit(jax.vmap(f))``, with ``f`` a table gather, a weighted
sum, a reshape and a Poisson log-likelihood ``sum(counts·log μ − μ)`` (the shape of a
quadrature likelihood), drops the ``− μ`` part once the batched arrays pass ~2¹⁵ elements
(measured: 64 draws of the hidden-void model, 72 readings × 8 rays, gave a potential of −1.3e6
instead of 1.4e5, while 32 draws, or each alone, are right; 2 draws of 2400 readings × 8 rays
are already wrong).  On 0.10.2 that case is right, but 64 inputs of 720 readings are 8 % off in
the sum, and the per-reading terms (no sum) of 13 582 of 46 080 readings are wrong by up to 80 %.
That is what NumPyro's ``chain_method="vectorized"`` and vectorised predictive passes compile.
XLA's option ``--xla_cpu_experimental_ynn_fusion_type=-reduce`` (that fusion switched off; named
in jax-ml/jax#37465 for a slowdown of the same fusion) gives the right values on both.  Its cost
on 0.12: the paper's toy (reductions over 10⁵ particles) runs ~2× slower; the BMC and quadrature
scenes of benchmarks/bench_muography.py are unchanged within noise; on 0.10.2 the toy is
unchanged within noise.  The variable is inherited by child processes (notebook kernels, the
CLI's subprocesses).  tests/test_xla.py reproduces the bug without the option and checks the
model with it.

XLA reads ``XLA_FLAGS`` once, when JAX starts its first back end: importing ``ppl_bmc`` before
any JAX computation is enough.  A user who sets the option in ``XLA_FLAGS`` (any value) keeps
theirs; when JAX has already started, ``ppl_bmc`` warns and names the option instead.
"""

from __future__ import annotations

import os
import sys
import warnings
from importlib import metadata

__all__ = ["YNN_OPTION", "affected", "apply"]

#: The XLA option added to ``XLA_FLAGS``.
YNN_OPTION = "--xla_cpu_experimental_ynn_fusion_type=-reduce"
_NAME = "xla_cpu_experimental_ynn_fusion_type"


def affected(version: str) -> bool:
    """Whether jaxlib ``version`` gets the option: the releases pyproject.toml allows (0.10 to
    0.12; 0.10.2 gets other shapes wrong without it, see the module's docstring).  Others are
    left alone: XLA aborts at start-up on an option it does not know, and an experimental one
    may go (re-check the bug with tests/test_xla.py before widening the range with the pin)."""
    try:
        major, minor = (int(p) for p in version.split(".")[:2])
    except ValueError:
        return False
    return (0, 10) <= (major, minor) < (0, 13)


def _jax_started(modules) -> bool:
    if "jax" not in modules:
        return False
    from jax._src import xla_bridge

    started = getattr(xla_bridge, "backends_are_initialized", None)
    return True if started is None else bool(started())


def apply(environ=os.environ, modules=sys.modules, version: str | None = None) -> bool:
    """Add :data:`YNN_OPTION` to ``environ["XLA_FLAGS"]`` when jaxlib needs it; returns whether
    it did.  Leaves a user's own setting of the option alone, and warns (changing nothing)
    when JAX's back ends have already started."""
    if _NAME in environ.get("XLA_FLAGS", ""):
        return False
    if version is None:
        try:
            version = metadata.version("jaxlib")
        except metadata.PackageNotFoundError:
            return False
    if not affected(version):
        return False
    if _jax_started(modules):
        warnings.warn(f"JAX started before ppl_bmc was imported: jaxlib {version} on the CPU can return wrong values "
                      f"for vectorised likelihoods (vectorized chains, Predictive) without XLA's option {YNN_OPTION}; "
                      f"import ppl_bmc first, or set XLA_FLAGS={YNN_OPTION!r} before starting Python",
                      RuntimeWarning, stacklevel=3)
        return False
    environ["XLA_FLAGS"] = (environ.get("XLA_FLAGS", "") + " " + YNN_OPTION).strip()
    return True
