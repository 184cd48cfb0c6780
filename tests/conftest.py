import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# JAX's persistent compilation cache (ppl_bmc._cache), kept inside the checkout's .pytest_cache
# (ignored by git): a function compiled once (same model, data and sizes) is read back in later
# tests, in the CLI tests' subprocesses and the notebooks' kernels (they inherit the variables),
# and on the next run of the suite.  A fresh clone starts cold.
os.environ.setdefault("PPL_BMC_CACHE_DIR", os.path.join(ROOT, ".pytest_cache", "ppl_bmc_jax"))
from ppl_bmc._cache import enable_compilation_cache  # noqa: E402  (imports no JAX)

enable_compilation_cache()
sys.path.insert(0, os.path.join(ROOT, "models"))  # models/ are scripts, imported by name


@pytest.fixture
def x64():
    """Run the test body with 64-bit floats (gradient tests)."""
    import jax

    with jax.enable_x64(True):
        yield
