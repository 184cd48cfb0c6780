"""Materials and their muon energy-loss tables (CSDA), interpolated log-log in JAX.

The tables in ``ppl_bmc/data/materials.npz`` were computed with the PUMAS physics through
the ``mulder`` package by ``tools/generate_material_tables.py`` (kinetic energies 1 MeV to
1e9 GeV).  Units: kinetic energy K in GeV, stopping power in GeV·m²/kg (per grammage), CSDA
range and transport path in kg/m² (grammage), density in kg/m³.
"""

from __future__ import annotations

import os
from functools import lru_cache

import jax.numpy as jnp
import numpy as np

from ppl_bmc import _checks
from ppl_bmc.physics.constants import MUON_MASS

__all__ = ["Material", "Blend", "names", "get", "custom", "check_composition"]

_DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "materials.npz")


class Material:
    """A material with its CSDA tables.

    Attributes
    ----------
    name : str
    density : float
        kg/m³.
    k_min, k_max : float
        Kinetic-energy range of the tables (GeV).
    """

    def __init__(self, name, density, kinetic_energy, stopping_power, csda_range, transport_path):
        self.name, self.density = name, float(density)
        self._log_k = np.log(np.asarray(kinetic_energy, dtype=float))
        self._log_s = np.log(np.asarray(stopping_power, dtype=float))
        self._log_r = np.log(np.asarray(csda_range, dtype=float))
        self._log_t = np.log(np.asarray(transport_path, dtype=float))
        # ∫ (m/p)/S dK from the table's bottom: proper length × density (kg/m²), for the decay weight.
        k = np.exp(self._log_k)
        integrand = MUON_MASS / np.sqrt(k * (k + 2 * MUON_MASS)) / np.exp(self._log_s) * k  # d/d ln K
        self._proper = np.concatenate([[0.0], np.cumsum(0.5 * (integrand[1:] + integrand[:-1]) * np.diff(self._log_k))])
        self.k_min, self.k_max = float(np.exp(self._log_k[0])), float(np.exp(self._log_k[-1]))
        self.r_min, self.r_max = float(np.exp(self._log_r[0])), float(np.exp(self._log_r[-1]))

        tables = (self._log_k, self._log_s, self._log_r, self._log_t)
        self._key = (self.name, self.density) + tuple(t.tobytes() for t in tables)

    # A value (static under jit): equal tables and density make equal materials, so a material
    # rebuilt with the same numbers reuses compiled code.
    def __eq__(self, other):
        return isinstance(other, Material) and other._key == self._key

    def __hash__(self):
        return hash(self._key)

    def __repr__(self):
        return f"Material({self.name!r}, density={self.density} kg/m³)"

    def _lookup(self, x, name, unit, lo, hi, log_from, to, log_y=True):
        """Interpolate ``x`` from one table column (log) to another (log, or linear if not
        ``log_y``), checking ``lo <= x <= hi``.

        Concrete values outside the table raise ``ValueError``; traced ones give NaN (a flag,
        not a silent extrapolation).
        """
        x = jnp.asarray(x, dtype=jnp.result_type(float))
        lo, hi = lo * (1 - 1e-6), hi * (1 + 1e-6)
        if _checks.is_concrete(x):
            xx = np.asarray(x)
            if not np.all((xx >= lo) & (xx <= hi)):
                raise ValueError(
                    f"{name} must be within the {self.name} table, [{lo:g}, {hi:g}] {unit}; "
                    f"got values in [{xx.min():g}, {xx.max():g}]"
                )
        if log_y:
            y = self.interp(x, log_from, to)
        else:
            y = jnp.interp(jnp.log(x), jnp.asarray(log_from, x.dtype), jnp.asarray(to, x.dtype))
        return jnp.where((x >= lo) & (x <= hi), y, jnp.nan)

    @staticmethod
    def interp(x, log_xp, log_fp):
        """Log-log linear interpolation without range checks (for kernels, which clip first)."""
        x = jnp.asarray(x)
        xp, fp = jnp.asarray(log_xp, dtype=x.dtype), jnp.asarray(log_fp, dtype=x.dtype)
        return jnp.exp(jnp.interp(jnp.log(x), xp, fp))

    def _table(self, log_y, kinetic_energy):
        return self._lookup(kinetic_energy, "kinetic_energy", "GeV", self.k_min, self.k_max, self._log_k, log_y)

    def stopping_power(self, kinetic_energy):
        """Total CSDA stopping power −dK/dX (GeV·m²/kg) at kinetic energies K (GeV), any shape."""
        return self._table(self._log_s, kinetic_energy)

    def csda_range(self, kinetic_energy):
        """CSDA range R(K) = ∫dK/S (kg/m²) at kinetic energies K (GeV), any shape."""
        return self._table(self._log_r, kinetic_energy)

    def transport_path(self, kinetic_energy):
        """Multiple-scattering transport mean free path (kg/m²) at K (GeV), any shape."""
        return self._table(self._log_t, kinetic_energy)

    def columns_at_range(self, grammage):
        """``(K, log S, proper_grammage, transport_path)`` at CSDA ranges ``grammage`` (kg/m²),
        unchecked.

        One table search serves the four columns (for transport kernels, which clip first);
        log-log interpolation as in the other methods.
        """
        x = jnp.log(jnp.asarray(grammage))
        xp = jnp.asarray(self._log_r, x.dtype)
        i = jnp.clip(jnp.searchsorted(xp, x) - 1, 0, xp.shape[0] - 2)
        t = (x - xp[i]) / (xp[i + 1] - xp[i])
        column = lambda c: (lambda c: c[i] + t * (c[i + 1] - c[i]))(jnp.asarray(c, x.dtype))
        return jnp.exp(column(self._log_k)), column(self._log_s), column(self._proper), jnp.exp(column(self._log_t))

    def proper_grammage(self, kinetic_energy):
        """∫ (m/p) dX along the CSDA slowing-down from the table's bottom to K (kg/m²).

        The proper length c·Δτ (m) travelled while slowing from K' to K in a material of density
        ρ is ``(proper_grammage(K') − proper_grammage(K)) / ρ``.  K in GeV, any shape.
        """
        return self._lookup(kinetic_energy, "kinetic_energy", "GeV", self.k_min, self.k_max, self._log_k,
                            self._proper, log_y=False)

    def kinetic_energy_at_range(self, grammage):
        """Inverse of :meth:`csda_range`: the K (GeV) whose CSDA range is ``grammage`` (kg/m²)."""
        return self._lookup(grammage, "grammage", "kg/m²", self.r_min, self.r_max, self._log_r, self._log_k)


class Blend:
    """Several materials that one scene holds, crossed in turn within each transport step.

    Each step of a backward walk crosses a grammage of every material (kg/m², the ray integral
    of that material's partial density); the energy loss adds per unit mass (Bragg additivity:
    the stopping power of a mixture with mass fractions w is ``Σ w_m S_m``), which the kernel
    applies as consecutive CSDA sub-steps, one per material, in the order given (exact for a
    step in one material; second order in the step's energy loss across a boundary or within a
    mixture).  A value (static under ``jit``): equal materials in the same order make equal blends.

    Attributes
    ----------
    materials : tuple of Material
        At least two; they must share their tables' kinetic-energy grid (the package's tables
        and :func:`custom` materials all do).
    reference : Material
        ``materials[0]``: the energies of a walk are kept as CSDA ranges in this material.
    """

    def __init__(self, materials, argument: str = "materials"):
        if isinstance(materials, (str, Material)) or not hasattr(materials, "__len__") or len(materials) < 2:
            raise ValueError(f"{argument} must be a sequence of at least two materials (Material objects or names "
                             f"from {', '.join(names())}); got {materials!r}")
        mats = tuple(get(m, f"{argument}[{i}]") for i, m in enumerate(materials))
        for i, m in enumerate(mats[1:], start=1):
            if m._log_k.shape != mats[0]._log_k.shape or not np.allclose(m._log_k, mats[0]._log_k, rtol=0, atol=1e-12):
                raise ValueError(f"{argument}[{i}] ({m.name}) is tabulated on another kinetic-energy grid than "
                                 f"{argument}[0] ({mats[0].name}); a Blend needs one grid (tabulate both with "
                                 "ppl_bmc.materials.custom or the package's tables)")
        self.materials = mats

    @property
    def reference(self) -> Material:
        return self.materials[0]

    def __len__(self):
        return len(self.materials)

    def __eq__(self, other):
        return isinstance(other, Blend) and other.materials == self.materials

    def __hash__(self):
        return hash(("Blend",) + self.materials)

    def __repr__(self):
        return f"Blend({', '.join(m.name for m in self.materials)})"


@lru_cache(maxsize=None)
def read_tables(path) -> dict:
    """The arrays of a package table file (``.npz``), read once: ``{name: array}``."""
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def _tables():
    return read_tables(_DATA)


def table_names(tables) -> list[str]:
    """The materials of a table file: the prefixes of its ``material/column`` keys."""
    return sorted({key.split("/")[0] for key in tables if "/" in key})


def names() -> list[str]:
    """Names of the tabulated materials."""
    return table_names(_tables())


@lru_cache(maxsize=None)
def get(name, argument: str = "material") -> Material:
    """The tabulated material ``name`` (see :func:`names`), or ``name`` itself when it is a
    :class:`Material`; ``ValueError`` naming ``argument`` otherwise."""
    if isinstance(name, Material):
        return name
    known = names()
    if name not in known:
        raise ValueError(f"{argument} must be a ppl_bmc.materials.Material or one of {', '.join(known)}; "
                         f"got {name!r}")
    t = _tables()
    return Material(name, t[f"{name}/density"], t["kinetic_energy"], t[f"{name}/stopping_power"],
                    t[f"{name}/csda_range"], t[f"{name}/transport_path"])


def check_composition(composition, density):
    """Validate a user composition ``{element: mass fraction}`` and density (kg/m³)."""
    if not isinstance(composition, dict) or not composition:
        raise ValueError("composition must be a non-empty dict {element symbol: mass fraction}")
    fractions = np.array(list(composition.values()), dtype=float)
    if np.any(~np.isfinite(fractions)) or np.any(fractions <= 0):
        raise ValueError(f"mass fractions must be > 0, got {composition}")
    if abs(fractions.sum() - 1.0) > 1e-4:
        raise ValueError(f"mass fractions must sum to 1 (within 1e-4), got {fractions.sum():.6f}")
    if not (np.isfinite(density) and density > 0):
        raise ValueError(f"density must be > 0 kg/m³, got {density}")


def custom(name: str, composition: dict, density: float) -> Material:
    """A user material computed at run time with the PUMAS physics through ``mulder``.

    ``composition`` maps element symbols to mass fractions (summing to 1); ``density`` in kg/m³.
    Needs the optional ``mulder`` package (``pip install 'ppl_bmc[mulder]'``).
    """
    check_composition(composition, density)
    try:
        import mulder
        import mulder.materials as mm
    except ImportError as err:
        raise ImportError("custom materials need the optional 'mulder' package: pip install mulder") from err
    label = f"ppl_bmc_user_{name}"
    mm.Material.define(label, composition=dict(composition), density=float(density))
    compiled = mulder.Physics().compile(label)
    k = _tables()["kinetic_energy"]
    return Material(name, density, k, np.asarray(compiled.stopping_power(k)) / density,
                    np.asarray(compiled.range(k)) * density, np.asarray(compiled.transport_path(k)) * density)
