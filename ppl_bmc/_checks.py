"""Input validation shared by the public entry points.

Every check raises ``ValueError`` naming the argument and the valid range, before any
JAX tracing happens, so that users never see a NaN or a traceback from deep inside JAX.
Values that are JAX tracers (the function is being traced by ``jit``/``grad`` inside a
NumPyro model) can only be checked for shape and dtype; their values are checked where
they are concrete.
"""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(x) -> bool:
    """True when ``x`` holds values (not a JAX tracer)."""
    return not isinstance(x, jax.core.Tracer)


def positive_int(value, name: str, *, minimum: int = 1) -> int:
    """Return ``value`` as a Python int, or raise if it is not an integer ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def prng_key(key, name: str = "key"):
    """Return a typed JAX PRNG key (scalar), accepting ``jax.random.key`` or ``PRNGKey``."""
    hint = f"{name} must be a JAX PRNG key, e.g. jax.random.key(0)"
    if key is None:
        raise ValueError(f"{hint}, got None")
    if isinstance(key, (jax.Array, np.ndarray)):
        if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
            if key.shape != ():
                raise ValueError(f"{hint} (a single key, shape ()), got shape {key.shape}")
            return key
        if key.dtype == np.uint32 and key.shape == (2,):  # legacy jax.random.PRNGKey
            return jax.random.wrap_key_data(jnp.asarray(key))
    raise ValueError(f"{hint}, got {type(key).__name__} {getattr(key, 'dtype', '')}".rstrip())


def float_array(x, name: str, *, shape=None, ndim=None, dtype=None):
    """Convert ``x`` to a floating JAX array (default float dtype) and check its shape.

    Concrete values must be finite.  ``shape`` entries of ``None`` match any size.
    """
    dtype = dtype or jnp.result_type(float)
    try:
        arr = jnp.asarray(x, dtype=dtype)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be an array of real numbers, got {x!r}") from err
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {arr.shape}")
    if shape is not None and (
        arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape))
    ):
        want = "(" + ", ".join("n" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
        raise ValueError(f"{name} must have shape {want}, got shape {arr.shape}")
    if is_concrete(arr) and not np.all(np.isfinite(np.asarray(arr))):
        raise ValueError(f"{name} must be finite (no NaN or inf), got {np.asarray(arr)}")
    return arr
