"""XLA options for jaxlib's CPU back end, switched on when ``ppl_bmc`` is imported.

**A miscompilation (correctness).**  jaxlib on the CPU returns wrong values for some vectorised
functions whose reductions XLA hands to YNNPACK.  On 0.12.0.1, ``jax.jit(jax.vmap(f))``, with ``f``
a table gather, a weighted sum, a reshape and a Poisson log-likelihood ``sum(counts·log μ − μ)``
(the shape of a quadrature likelihood), drops the ``− μ`` part once the batched arrays pass ~2¹⁵
elements (measured: 64 draws of the hidden-void model, 72 readings × 8 rays, gave a potential of
−1.3e6 instead of 1.4e5, while 32 draws, or each alone, are right; 2 draws of 2400 readings × 8
rays are already wrong).  On 0.10.2 that case is right, but 64 inputs of 720 readings are 8 % off
in the sum, and the per-reading terms (no sum) of 13 582 of 46 080 readings are wrong by up to
80 %.  That is what NumPyro's ``chain_method="vectorized"`` and vectorised predictive passes
compile.  XLA's option ``--xla_cpu_experimental_ynn_fusion_type=-reduce`` (that fusion switched
off; named in jax-ml/jax#37465 for a slowdown of the same fusion) gives the right values on both.
tests/test_xla.py reproduces the bug without the option and checks the model with it.

**A slow loop (speed).**  jaxlib 0.12's ``SmallWhileLoopHoistingPass`` compiles a ``while`` loop
whose cost estimate is "small" into one kernel of XLA's legacy emitter, without the per-fusion
threading and vectorisation of the thunk runtime; it takes the step loop of a BMC walk over
3 × 10⁵ particles for small.  The paper's toy (``lax.scan`` of 2 steps, 3 × 100 000 particles)
then ran 17–20 ms forward instead of 6.5–8 (measured on this project's 2-core CPU; 8 steps: 78
→ 28 ms); with the YNNPACK reduction fusion on, the loop held a fusion the pass skips, which
hid this until the first option switched that fusion off.  The pass's own switch,
``--xla_backend_extra_options=xla_cpu_small_while_loop_byte_threshold=0``, turns it off: toy
forward and replay gradient ~2.5× faster; BMC scenes 0–30 % faster, the slab with scattering's
gradient 20 % faster, the plain slab ~10 % slower (its small loop body ran well as one kernel);
the quadrature, NUTS on the hidden void and compile times unchanged within noise (README,
"Performance"; benchmarks/bench_toy_adjoints.py, bench_muography.py, bench_csda.py).  Only for
jaxlib 0.12, where it was measured (on 0.10.2 the toy's loop is not taken for small; the switch
changes nothing there).  XLA merges repeated ``--xla_backend_extra_options`` flags, so a user's
other backend options stay in force beside it.

XLA reads ``XLA_FLAGS`` once, when JAX starts its first back end: importing ``ppl_bmc`` before
any JAX computation is enough.  The variable is inherited by child processes (notebook kernels,
the CLI's subprocesses).  A user who sets an option in ``XLA_FLAGS`` (any value; for the second,
``xla_cpu_small_while_loop_byte_threshold``) keeps theirs; when JAX has already started,
``ppl_bmc`` changes nothing and, when the correctness option is missing, warns and names the
flags to set.
"""

from __future__ import annotations

import os
import re
import sys
import warnings
from dataclasses import dataclass
from importlib import metadata

__all__ = ["XlaOption", "YNN", "LOOP", "OPTIONS", "YNN_OPTION", "affected", "apply"]


@dataclass(frozen=True)
class XlaOption:
    """One XLA option that ``ppl_bmc`` adds to ``XLA_FLAGS``.

    ``flag``: the text appended; ``name``: a user's setting is any flag containing it;
    ``releases``: the first and last jaxlib ``(major, minor)`` that get it (inclusive);
    ``correctness``: whether running without it gives wrong values (a late import warns).
    """

    flag: str
    name: str
    releases: tuple[tuple[int, int], tuple[int, int]]
    correctness: bool

    def applies(self, version: str) -> bool:
        """Whether jaxlib ``version`` gets this option.  Releases outside ``releases`` are left
        alone: XLA aborts at start-up on an option it does not know, and an experimental one
        may go (re-check with tests/test_xla.py before widening the range with the pin)."""
        match = re.match(r"(\d+)\.(\d+)", version)
        if match is None:
            return False
        major, minor = int(match.group(1)), int(match.group(2))
        return self.releases[0] <= (major, minor) <= self.releases[1]


#: The YNNPACK reduction fusion off: the releases pyproject.toml allows (0.10 to 0.12; 0.10.2
#: gets other shapes wrong without it, see the module's docstring).
YNN = XlaOption("--xla_cpu_experimental_ynn_fusion_type=-reduce", "xla_cpu_experimental_ynn_fusion_type",
                ((0, 10), (0, 12)), correctness=True)
#: Step loops left to the thunk runtime: jaxlib 0.12 only (measured there).
LOOP = XlaOption("--xla_backend_extra_options=xla_cpu_small_while_loop_byte_threshold=0",
                 "xla_cpu_small_while_loop_byte_threshold", ((0, 12), (0, 12)), correctness=False)
OPTIONS = (YNN, LOOP)
#: The correctness option's flag (kept for callers of the first version of this module).
YNN_OPTION = YNN.flag


def affected(version: str) -> bool:
    """Whether jaxlib ``version`` gets the correctness option :data:`YNN`."""
    return YNN.applies(version)


def _jax_started(modules) -> bool:
    if "jax" not in modules:
        return False
    from jax._src import xla_bridge

    started = getattr(xla_bridge, "backends_are_initialized", None)
    return True if started is None else bool(started())


def apply(environ=os.environ, modules=sys.modules, version: str | None = None) -> tuple[str, ...]:
    """Add each of :data:`OPTIONS` that jaxlib ``version`` (default: the installed one) gets to
    ``environ["XLA_FLAGS"]``; returns the flags added (empty: none).  Leaves a user's own
    setting of an option alone, and changes nothing when JAX's back ends have already started
    (warning when a correctness option is then missing)."""
    if version is None:
        try:
            version = metadata.version("jaxlib")
        except metadata.PackageNotFoundError:
            return ()
    flags = environ.get("XLA_FLAGS", "")
    missing = tuple(o for o in OPTIONS if o.applies(version) and o.name not in flags)
    if not missing:
        return ()
    if _jax_started(modules):
        if any(o.correctness for o in missing):
            wanted = " ".join(o.flag for o in missing)
            warnings.warn(f"JAX started before ppl_bmc was imported: jaxlib {version} on the CPU can return wrong "
                          f"values for vectorised likelihoods (vectorized chains, Predictive) without XLA's option "
                          f"{YNN.flag}; import ppl_bmc first, or set XLA_FLAGS={wanted!r} before starting Python",
                          RuntimeWarning, stacklevel=3)
        return ()
    environ["XLA_FLAGS"] = " ".join([flags.strip()] + [o.flag for o in missing]).strip()
    return tuple(o.flag for o in missing)
