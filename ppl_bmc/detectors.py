"""Muon detectors: position, angular bins, area, exposure, efficiency, energy threshold.

2-D scenes are vertical cross-sections ``(x, z)``: a bin is an interval of the *signed*
zenith angle α in the plane (degrees, positive towards +x; direction ``(sin α, cos α)``) and
the detector accepts an out-of-plane width ``width_deg``; the bin's solid angle is
``Δα·width`` (sr, small-width approximation: the cross-section stands for a thin slice).
3-D scenes ``(x, y, z)``: bins are zenith θ × azimuth φ cells (degrees; φ from +x towards +y,
zenith-major order), solid angle ``(cos θ_lo − cos θ_hi)·Δφ``.

Expected counts of a bin are ``area × exposure × efficiency × ∫_bin flux dΩ`` with the flux
integrated above the detector's kinetic-energy threshold (GeV).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ppl_bmc.telescope import Telescope

__all__ = ["Detector", "check_detectors", "readings"]


def _edges(values, name, lo, hi):
    e = np.asarray(values, dtype=float)
    if e.ndim != 1 or len(e) < 2 or not np.all(np.isfinite(e)):
        raise ValueError(f"{name} must be at least two finite bin edges (degrees), got {values!r}")
    if np.any(np.diff(e) <= 0):
        raise ValueError(f"{name} must be strictly increasing: every bin needs a positive width "
                         f"(empty bins are not allowed), got {e.tolist()}")
    if e[0] < lo or e[-1] > hi:
        raise ValueError(f"{name} must lie in [{lo}, {hi}] degrees, got [{e[0]}, {e[-1]}]")
    return e


@dataclass(frozen=True, eq=False)
class Detector:
    """One detector.

    Parameters
    ----------
    position : sequence of 2 or 3 floats
        ``(x, z)`` or ``(x, y, z)`` in metres.
    zenith_edges_deg : sequence of floats
        Bin edges of the zenith angle (degrees).  2-D: signed angle in (−90, 90); 3-D: θ in [0, 90).
    azimuth_edges_deg : sequence of floats or None
        3-D only: azimuth bin edges (degrees, within [−360, 360], spanning at most 360).
    area_m2, exposure_s : float
        Sensitive area (m²) and exposure time (s), > 0.
    efficiency : float
        Detection efficiency in (0, 1].
    threshold_gev : float
        Kinetic energy (GeV) a muon needs at the detector to be counted, in [1e-3, 1e5].
    width_deg : float
        2-D only: out-of-plane angular acceptance (degrees, in (0, 180)).
    """

    position: tuple
    zenith_edges_deg: tuple
    azimuth_edges_deg: tuple | None = None
    area_m2: float = 1.0
    exposure_s: float = 30 * 86400.0
    efficiency: float = 1.0
    threshold_gev: float = 1e-3
    width_deg: float = 10.0

    def __post_init__(self):
        pos = np.asarray(self.position, dtype=float)
        if pos.ndim != 1 or len(pos) not in (2, 3) or not np.all(np.isfinite(pos)):
            raise ValueError(f"Detector position must be 2 (x, z) or 3 (x, y, z) finite coordinates (m), "
                             f"got {self.position!r}")
        object.__setattr__(self, "position", tuple(pos.tolist()))
        if len(pos) == 2:
            if self.azimuth_edges_deg is not None:
                raise ValueError("azimuth_edges_deg is for 3-D detectors; a 2-D detector has one angle")
            z = _edges(self.zenith_edges_deg, "zenith_edges_deg", -89.999, 89.999)
        else:
            z = _edges(self.zenith_edges_deg, "zenith_edges_deg", 0.0, 89.999)
            if self.azimuth_edges_deg is None:
                raise ValueError("a 3-D detector needs azimuth_edges_deg (degrees)")
            a = _edges(self.azimuth_edges_deg, "azimuth_edges_deg", -360.0, 360.0)
            if a[-1] - a[0] > 360.0 + 1e-9:
                raise ValueError(f"azimuth_edges_deg must span at most 360 degrees, got {a[-1] - a[0]}")
            object.__setattr__(self, "azimuth_edges_deg", tuple(a.tolist()))
        object.__setattr__(self, "zenith_edges_deg", tuple(z.tolist()))
        for name, lo, hi in (("area_m2", 0, math.inf), ("exposure_s", 0, math.inf)):
            v = getattr(self, name)
            if not (np.isfinite(v) and v > lo):
                raise ValueError(f"{name} must be > 0 and finite, got {v}")
        if not 0 < self.efficiency <= 1:
            raise ValueError(f"efficiency must be in (0, 1], got {self.efficiency}")
        if not 1e-3 <= self.threshold_gev <= 1e5:
            raise ValueError(f"threshold_gev must be in [1e-3, 1e5] GeV, got {self.threshold_gev}")
        if len(pos) == 2 and not 0 < self.width_deg < 180:
            raise ValueError(f"width_deg must be in (0, 180) degrees, got {self.width_deg}")

    @property
    def ndim(self) -> int:
        return len(self.position)

    @property
    def shape(self) -> tuple:
        """Bins: ``(n_zenith,)`` in 2-D, ``(n_zenith, n_azimuth)`` in 3-D."""
        nz = len(self.zenith_edges_deg) - 1
        return (nz,) if self.ndim == 2 else (nz, len(self.azimuth_edges_deg) - 1)

    @property
    def n_bins(self) -> int:
        return int(np.prod(self.shape))

    @property
    def scale(self) -> float:
        """``area × exposure × efficiency`` (m²·s)."""
        return self.area_m2 * self.exposure_s * self.efficiency

    def bins(self):
        """Per bin (flattened, zenith-major): ``(lo, hi)`` arrays ``(n_bins, A)`` of the sampling
        coordinates — 2-D: α (rad); 3-D: (cos θ, φ) with cos θ decreasing from lo to hi — and the
        solid angle ``(n_bins,)`` in sr."""
        z = np.radians(self.zenith_edges_deg)
        if self.ndim == 2:
            lo, hi = z[:-1, None], z[1:, None]
            return lo, hi, (hi - lo)[:, 0] * math.radians(self.width_deg)
        a = np.radians(self.azimuth_edges_deg)
        c = np.cos(z)
        cl, ch = np.repeat(c[:-1], len(a) - 1), np.repeat(c[1:], len(a) - 1)
        al, ah = np.tile(a[:-1], len(z) - 1), np.tile(a[1:], len(z) - 1)
        lo, hi = np.stack([cl, al], axis=1), np.stack([ch, ah], axis=1)
        return lo, hi, (cl - ch) * (ah - al)

    def bin_centres_deg(self):
        """Bin centres (degrees): ``(n_bins,)`` in 2-D, ``(n_bins, 2)`` (θ, φ) in 3-D."""
        z = np.asarray(self.zenith_edges_deg)
        zc = 0.5 * (z[1:] + z[:-1])
        if self.ndim == 2:
            return zc
        a = np.asarray(self.azimuth_edges_deg)
        ac = 0.5 * (a[1:] + a[:-1])
        return np.stack([np.repeat(zc, len(ac)), np.tile(ac, len(zc))], axis=1)


def check_detectors(detectors, ndim: int) -> tuple:
    """Validate a detector (a :class:`Detector` or a :class:`~ppl_bmc.telescope.Telescope`) or a
    sequence of them for a scene of dimension ``ndim``; all must have the same number of bins
    (lines of sight for telescopes; the output is ``(n_detectors, n_bins)``)."""
    kinds = (Detector, Telescope)
    dets = (detectors,) if isinstance(detectors, kinds) else tuple(detectors) if detectors is not None else ()
    if not dets or not all(isinstance(d, kinds) for d in dets):
        raise ValueError("detectors must be a Detector or Telescope, or a non-empty sequence of them")
    for i, d in enumerate(dets):
        if d.ndim != ndim:
            raise ValueError(f"detector {i} is {d.ndim}-D but the scene is {ndim}-D")
    if len({d.n_bins for d in dets}) != 1:
        raise ValueError(f"all detectors need the same number of bins, got {[d.n_bins for d in dets]}")
    return dets


def readings(detectors):
    """Per reading (detector-major, then bin or line of sight), as numpy arrays: ``origin (C, D)``
    m; ``lo``/``hi`` (C, A) sampling coordinates (a bin's box, or a telescope line of sight's
    slope box); ``omega (C,)`` (sr for bins; m² for lines of sight, times cos⁴ϑ per direction);
    ``k_min (C,)`` GeV; ``scale (C,)`` (m²·s for bins, s for lines of sight); ``frame (C, D, D)``
    (a telescope's axes, identity for bins) and ``tent (C,)`` (1 for lines of sight).
    :func:`ppl_bmc.geometry.rays.line_coords` and ``line_direction`` turn uniforms into directions."""
    out = {k: [] for k in ("origin", "lo", "hi", "omega", "k_min", "scale", "frame", "tent")}
    for det in detectors:
        if isinstance(det, Telescope):
            r = det.readings()
        else:
            lo, hi, omega = det.bins()
            n = len(omega)
            r = {"origin": np.tile(det.position, (n, 1)), "lo": lo, "hi": hi, "omega": omega,
                 "k_min": np.full(n, det.threshold_gev), "scale": np.full(n, det.scale),
                 "frame": np.broadcast_to(np.eye(det.ndim), (n, det.ndim, det.ndim)), "tent": np.zeros(n)}
        for k in out:
            out[k].append(r[k])
    return {k: np.concatenate(v) for k, v in out.items()}
