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
# The suite compiles far more than it runs: XLA's CPU back end at optimisation level 1 compiles
# faster than at its default (tests/transport + test_muography + test_likelihood, cold cache, 2
# workers: 125 s -> 112 s; level 0: 102 s, but it slows the executions of the quadrature's flux
# tables 2.7x, test_nppl's tilt check 25 s -> 67 s) and every tolerance holds (it changes LLVM's
# code generation, not the HLO passes).  Users, the CLI and the benchmarks keep XLA's default.
# Subprocesses (CLI tests, notebook kernels) inherit it; a test that sets XLA_FLAGS itself does not.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = ("--xla_backend_optimization_level=1 " + os.environ.get("XLA_FLAGS", "")).strip()
sys.path.insert(0, os.path.join(ROOT, "models"))  # models/ are scripts, imported by name


@pytest.fixture
def x64():
    """Run the test body with 64-bit floats (gradient tests)."""
    import jax

    with jax.enable_x64(True):
        yield


@pytest.fixture
def small():
    """A 4 × 4 voxel scene (2000 kg/m³) and a detector of 4 bins below it: (scene, densities, detector)."""
    from ppl_bmc import Detector, Scene
    from ppl_bmc.geometry import VoxelGrid
    import jax.numpy as jnp
    import numpy as np

    grid = VoxelGrid((-20.0, 0.0), (20.0, 20.0), (4, 4))
    return Scene(grid, step_m=5.0), jnp.full(grid.shape, 2000.0), Detector((0.0, 0.0), np.linspace(-40, 40, 5))
