import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "models"))  # models/ are scripts, imported by name


@pytest.fixture
def x64():
    """Run the test body with 64-bit floats (gradient tests)."""
    import jax

    with jax.enable_x64(True):
        yield
