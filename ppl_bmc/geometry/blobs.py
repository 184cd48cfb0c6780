"""Two materials mixed by Gaussian blobs (the paper's toy mixture, generalised)."""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from ppl_bmc import _checks
from ppl_bmc.geometry.field import Field, _box

__all__ = ["GaussianBlobs"]


@dataclass(frozen=True, eq=False)
class GaussianBlobs(Field):
    """Two materials mixed by ``K`` Gaussian blobs (the paper's toy, generalised).

    The fraction of material "inside" at ``x`` is ``f = 1 − Π_k (1 − exp(−|x − c_k|² / σ²_k))``
    and the density ``ρ_out + f·(ρ_in − ρ_out)`` (kg/m³) within the box.  With one blob this
    is the paper's ``exp(−|x − μ|²/σ²)`` mixture.

    ``params``: ``{"center": (K, D) m, "sigma2": (K,) m²}``.
    """

    lower: tuple
    upper: tuple
    n_blobs: int = 1
    density_inside: float = 0.0
    density_outside: float = 2650.0
    n_nodes: int = 4
    n_sub: int = 16

    def __post_init__(self):
        lower, upper = _box(self.lower, self.upper, "GaussianBlobs")
        object.__setattr__(self, "lower", lower)
        object.__setattr__(self, "upper", upper)
        _checks.positive_int(self.n_blobs, "n_blobs")
        for nm in ("density_inside", "density_outside"):
            v = getattr(self, nm)
            if not (np.isfinite(v) and v >= 0):
                raise ValueError(f"GaussianBlobs: {nm} must be a finite density >= 0 kg/m³, got {v}")

    def fraction(self, position, params):
        """Fraction of the inside material at positions ``(..., D)`` (in [0, 1])."""
        c, s2 = params["center"], params["sigma2"]
        r2 = jnp.sum((position[..., None, :] - c) ** 2, axis=-1)  # (..., K)
        return 1.0 - jnp.prod(1.0 - jnp.exp(-r2 / s2), axis=-1)

    def value(self, position, params):
        return self.density_outside + self.fraction(position, params) * (self.density_inside - self.density_outside)

    def params_shape(self):
        return {"center": (self.n_blobs, self.ndim), "sigma2": (self.n_blobs,)}

    def check_params(self, params, name="params"):
        if not isinstance(params, dict) or set(params) != {"center", "sigma2"}:
            raise ValueError(f"{name} must be a dict with keys 'center' ({self.n_blobs}, {self.ndim}) m and "
                             f"'sigma2' ({self.n_blobs},) m², got {params!r}")
        c = _checks.float_array(params["center"], f"{name}['center']", shape=(self.n_blobs, self.ndim))
        s2 = _checks.float_array(params["sigma2"], f"{name}['sigma2']", shape=(self.n_blobs,))
        if _checks.is_concrete(s2) and np.any(np.asarray(s2) <= 0):
            raise ValueError(f"{name}['sigma2'] must be > 0 m², got {np.asarray(s2)}")
        return {"center": c, "sigma2": s2}
