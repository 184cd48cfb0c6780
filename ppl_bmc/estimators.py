"""Estimation methods as values: :class:`Quadrature` and :class:`BMC`.

The front doors (:func:`ppl_bmc.expected_counts`, :func:`ppl_bmc.muography.transmitted_flux`)
take ``method=Quadrature(...)`` or ``method=BMC(key=..., ...)``; the strings ``"quadrature"`` and
``"bmc"`` with the keywords ``key``, ``n_particles``, ``n_steps``, ``adjoint``, ``n_directions`` are
shorthand for them.  An option that does not apply to the method is an error, never ignored.

Example
-------
>>> import jax, numpy as np, ppl_bmc
>>> from ppl_bmc.geometry import VoxelGrid
>>> scene = ppl_bmc.Scene(VoxelGrid((-50.0, 0.0), (50.0, 60.0), (3, 3)))   # standard rock, GCCLY sky
>>> det = ppl_bmc.Detector((0.0, 0.0), [-30.0, 0.0, 30.0], exposure_s=86400.0)
>>> rho = np.full((3, 3), 2650.0)                                           # kg/m³
>>> np.asarray(ppl_bmc.expected_counts(scene, rho, det, method=ppl_bmc.Quadrature())).round().tolist()
[[7637.0, 7637.0]]
>>> bmc = ppl_bmc.BMC(jax.random.key(0), n_particles=4096)                  # same key, same counts
>>> ppl_bmc.expected_counts(scene, rho, det, method="quadrature", key=jax.random.key(0))
Traceback (most recent call last):
ValueError: key applies to method='bmc' only: the quadrature is deterministic (drop key= or use method='bmc')
"""

from __future__ import annotations

from dataclasses import dataclass

from ppl_bmc import _checks
from ppl_bmc.adjoint import Adjoint, ReplayAdjoint
from ppl_bmc.transport.energy import EnergySampling, LineOfSightEnergy
from ppl_bmc.transport.sharding import AXIS, readings_mesh

__all__ = ["Quadrature", "BMC", "resolve_method"]

#: Gauss-Legendre directions per bin axis of the default quadrature.
DEFAULT_DIRECTIONS = 8


@dataclass(frozen=True)
class Quadrature:
    """Deterministic straight-line quadrature (CSDA, no scattering, no randomness).

    Parameters
    ----------
    n_directions : int ≥ 1
        ``expected_counts`` only: Gauss-Legendre directions per bin axis.
    """

    n_directions: int = DEFAULT_DIRECTIONS

    def __post_init__(self):
        object.__setattr__(self, "n_directions", _checks.positive_int(self.n_directions, "n_directions"))


@dataclass(frozen=True, eq=False)
class BMC:
    """Backward Monte-Carlo with common random numbers.

    Parameters
    ----------
    key : jax PRNG key
        Same key → bit-identical estimate (required).
    n_particles : int ≥ 1 or None
        Particles per reading; ``None`` takes the front door's default.
    n_steps : int ≥ 1 or None
        Steps per particle; ``None`` takes the front door's choice (the fewest that leave a
        scene; 4 along a slab).
    adjoint : Adjoint
        Gradient strategy (``ReplayAdjoint()``, ``ForwardSensitivity()``, ``AutodiffAdjoint()``).
    energy : EnergySampling
        Muon kernels: how detector-side energies are drawn — ``LineOfSightEnergy()`` (default:
        from the straight-line CSDA integrand along each particle's line of sight) or
        ``LogUniformEnergy()`` (the paper's plain proposal); see :mod:`ppl_bmc.transport.energy`.
    stratified : bool
        Latin-hypercube initial uniforms (directions within a bin, energies) over each reading's
        particles (default); ``False``: independent uniforms.  Unbiased either way.
    devices : None, int, "all" or a sequence of jax devices
        Split the readings (bins, lines of sight) of ``expected_counts`` over several devices
        — host devices on CPU (``XLA_FLAGS=--xla_force_host_platform_device_count=N``), GPUs,
        the devices of several hosts after :func:`ppl_bmc.transport.join_hosts` —
        forward and in the gradient's replay; the same estimate as on one device, to float
        rounding (:mod:`ppl_bmc.transport.sharding`).  ``None`` (default): one device.
    split : "readings" or "particles"
        With ``devices``: what is split between them — the readings (default), or each
        reading's particles (for few readings of many particles; ``n_particles`` a multiple of
        the number of devices).
    """

    key: object
    n_particles: int | None = None
    n_steps: int | None = None
    adjoint: Adjoint = ReplayAdjoint()
    energy: EnergySampling = LineOfSightEnergy()
    stratified: bool = True
    devices: object = None
    split: str = AXIS

    def __post_init__(self):
        object.__setattr__(self, "key", _checks.prng_key(self.key))
        if self.n_particles is not None:
            object.__setattr__(self, "n_particles", _checks.positive_int(self.n_particles, "n_particles"))
        if self.n_steps is not None:
            object.__setattr__(self, "n_steps", _checks.positive_int(self.n_steps, "n_steps"))
        if not isinstance(self.adjoint, Adjoint):
            raise ValueError(f"adjoint must be an instance of ppl_bmc.Adjoint, got {self.adjoint!r}")
        if not isinstance(self.energy, EnergySampling):
            raise ValueError(f"energy must be a ppl_bmc.transport.energy.EnergySampling (LineOfSightEnergy() or "
                             f"LogUniformEnergy()), got {self.energy!r}")
        if not isinstance(self.stratified, bool):
            raise ValueError(f"stratified must be True or False, got {self.stratified!r}")
        if not isinstance(self.devices, (type(None), str, int)):
            try:
                object.__setattr__(self, "devices", tuple(self.devices))  # hashable
            except TypeError:
                pass  # not a sequence: readings_mesh names the argument
        readings_mesh(self.devices, self.split)  # ValueError naming devices (not that many) or split

    @property
    def mesh(self):
        """The :class:`jax.sharding.Mesh` the readings are split over (``None``: one device)."""
        return readings_mesh(self.devices, self.split)


_BMC_ONLY = ("key", "n_particles", "n_steps", "adjoint")


def resolve_method(method, **options):
    """The method value from ``method`` (a :class:`Quadrature`, a :class:`BMC` or their names)
    and the shorthand keywords ``options`` (``None`` = not given).

    ``ValueError`` naming the argument when an option does not apply to the method, or is given
    both inside a method value and as a keyword.
    """
    given = {name: value for name, value in options.items() if value is not None}
    if isinstance(method, (Quadrature, BMC)):
        if given:
            name = next(iter(given))
            raise ValueError(f"{name} was given both as a keyword and through method={type(method).__name__}(...): "
                             f"pass it inside the method value")
        return method
    if method == "quadrature":
        for name in _BMC_ONLY:
            if name in given:
                raise ValueError(f"{name} applies to method='bmc' only: the quadrature is deterministic "
                                 f"(drop {name}= or use method='bmc')")
        return Quadrature(given.get("n_directions", DEFAULT_DIRECTIONS))
    if method == "bmc":
        if "n_directions" in given:
            raise ValueError("n_directions applies to method='quadrature' only (BMC samples directions)")
        return BMC(options.get("key"), given.get("n_particles"), given.get("n_steps"),
                   given.get("adjoint", ReplayAdjoint()))
    raise ValueError(f"method must be 'bmc', 'quadrature', a ppl_bmc.Quadrature or a ppl_bmc.BMC, got {method!r}")
