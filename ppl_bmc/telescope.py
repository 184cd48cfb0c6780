"""Muon telescopes as real instruments: parallel pixelated planes, lines of sight, acceptance.

A :class:`Telescope` is ``n_planes`` parallel square planes of ``n_pixels × n_pixels`` pixels of
pitch ``pixel_m`` (m); the first (front, towards the target) and the last (rear) plane are
``separation_m`` apart and set the geometric acceptance (planes in between do not change it: a
straight line through both outer squares crosses every square between them).  The telescope's
axis points from the rear plane through the front one, at ``azimuth_deg`` (from +x towards +y)
and ``elevation_deg`` above the horizontal.

A *line of sight* is a pixel offset ``(a, b) = front pixel − rear pixel`` (in pixels along the
planes' horizontal axis ``u`` and their other axis ``v``), as in real muography telescopes: all
``(n − |a|)(n − |b|)`` pixel pairs with that offset look along the same direction.  For one
pixel pair the difference of the two hit points is uniform on each pixel, so the slope
``s = Δ/D`` of a muon relative to the axis has a *tent* (triangular) density per axis, centred
on ``(a, b)·p/D`` with half-width ``p/D``, and the acceptance is

    T_ab = (n − |a|)(n − |b|) · p⁴/D² · E_tent[cos⁴ ϑ],  cos ϑ = (1 + s_u² + s_v²)^(−1/2),

(m² sr) with ϑ the angle to the axis (the étendue ∫∫ cos ϑ₁ cos ϑ₂ / r² dA₁ dA₂ written in slope
coordinates).  Summed over lines of sight it is the étendue of two parallel squares,
:func:`square_planes_acceptance` (the radiative view factor of two directly opposed squares).

Expected counts of a line of sight are ``exposure × efficiency × ∫ flux dT`` with the flux
integrated above the kinetic-energy threshold (GeV).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Telescope", "square_planes_acceptance", "tent_nodes"]


def square_planes_acceptance(side_m: float, separation_m: float) -> float:
    """Geometric acceptance (étendue, m² sr) of two parallel, directly opposed squares of side
    ``side_m`` a distance ``separation_m`` apart: ``π A F₁₂`` with F₁₂ the view factor of two
    aligned parallel rectangles (closed form, e.g. Incropera & DeWitt, *Fundamentals of Heat and
    Mass Transfer*, table 13.2: X = a/L, Y = b/L)."""
    if not (side_m > 0 and separation_m > 0):
        raise ValueError(f"side_m and separation_m must be > 0 m, got {side_m}, {separation_m}")
    x = y = side_m / separation_m
    sx, sy = math.sqrt(1 + x * x), math.sqrt(1 + y * y)
    f = (2 / (math.pi * x * y)) * (0.5 * math.log((1 + x * x) * (1 + y * y) / (1 + x * x + y * y))
                                   + x * sy * math.atan(x / sy) + y * sx * math.atan(y / sx)
                                   - x * math.atan(x) - y * math.atan(y))
    return math.pi * side_m * side_m * f


def tent_nodes(n: int, start: float = 0.0):
    """Gauss-Legendre nodes ``x`` in [``start``, 1] and weights for the tent density
    ``2(1 − |2x − 1|)`` on [0, 1] restricted to [``start``, 1] (exact for polynomials on each side
    of the peak): where the interval holds both sides, ``n // 2`` nodes on the left one and the
    rest on the right (``n ≥ 2``); otherwise all ``n`` on the right.  The weights sum to the tent's
    mass above ``start`` (1 for ``start = 0``).  ``start`` in [0, 1): a line of sight cut by the
    horizon keeps only its part above it."""
    if n < 2:
        raise ValueError(f"a telescope's lines of sight need n_directions >= 2 per axis, got {n}")
    if not 0.0 <= start < 1.0:
        raise ValueError(f"start must be in [0, 1), got {start}")
    pieces = [(start, 0.5, n // 2), (0.5, 1.0, n - n // 2)] if start < 0.5 else [(start, 1.0, n)]
    xs, ws = [], []
    for a, b, m in pieces:
        g, w = np.polynomial.legendre.leggauss(m)
        x = a + 0.5 * (b - a) * (g + 1)
        xs.append(x)
        ws.append(0.5 * (b - a) * w * 2 * (1 - np.abs(2 * x - 1)))
    return np.concatenate(xs), np.concatenate(ws)


@dataclass(frozen=True, eq=False)
class Telescope:
    """A muon telescope of parallel pixelated planes (3-D scenes).

    Parameters
    ----------
    position : sequence of 3 floats
        Centre of the telescope ``(x, y, z)`` (m); lines of sight start there (the planes'
        extent, ~1 m, is neglected against the target's).
    azimuth_deg : float
        Axis azimuth (degrees, from +x towards +y).
    elevation_deg : float
        Axis elevation above the horizontal (degrees, in [−90, 90]).
    n_pixels : int
        Pixels per side of each plane (≥ 1).
    pixel_m : float
        Pixel pitch (m, > 0); the planes are ``n_pixels × pixel_m`` wide.
    separation_m : float
        Distance between the front and the rear plane (m, > 0).
    n_planes : int
        Number of planes (≥ 2; the outer two set the acceptance).
    exposure_s : float
        Exposure time (s, > 0).
    efficiency : float
        Detection efficiency in (0, 1].
    threshold_gev : float
        Kinetic energy (GeV) a muon needs at the telescope to be counted, in [1e-3, 1e5].
    underground : bool
        A telescope in a tunnel or gallery: below the terrain surface on purpose (otherwise a
        telescope below a :class:`~ppl_bmc.geometry.HeightMap`'s surface is an error).

    Lines of sight are ordered ``v``-offset-major: ``shape == (2n − 1, 2n − 1)`` with
    ``b = −(n − 1) … n − 1`` along the first axis and ``a`` along the second.
    """

    position: tuple
    azimuth_deg: float
    elevation_deg: float
    n_pixels: int = 16
    pixel_m: float = 0.05
    separation_m: float = 1.0
    n_planes: int = 2
    exposure_s: float = 30 * 86400.0
    efficiency: float = 1.0
    threshold_gev: float = 1e-3
    underground: bool = False

    def __post_init__(self):
        pos = np.asarray(self.position, dtype=float)
        if pos.shape != (3,) or not np.all(np.isfinite(pos)):
            raise ValueError(f"Telescope position must be 3 finite coordinates (x, y, z) in m, got {self.position!r}")
        object.__setattr__(self, "position", tuple(pos.tolist()))
        for name, lo, hi in (("azimuth_deg", -360.0, 360.0), ("elevation_deg", -90.0, 90.0)):
            v = getattr(self, name)
            if not (np.isfinite(v) and lo <= v <= hi):
                raise ValueError(f"{name} must be in [{lo:g}, {hi:g}] degrees, got {v}")
        for name, lo in (("n_pixels", 1), ("n_planes", 2)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
        for name in ("pixel_m", "separation_m", "exposure_s"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be > 0 and finite, got {v} (planes need a non-zero separation)"
                                 if name == "separation_m" else f"{name} must be > 0 and finite, got {v}")
        if not 0 < self.efficiency <= 1:
            raise ValueError(f"efficiency must be in (0, 1], got {self.efficiency}")
        if not 1e-3 <= self.threshold_gev <= 1e5:
            raise ValueError(f"threshold_gev must be in [1e-3, 1e5] GeV, got {self.threshold_gev}")
        # the steepest upward slope any line of sight reaches: above the horizon or nothing comes in
        frame = self.frame
        reach = (self.n_pixels * self.pixel_m) / self.separation_m
        corners = np.array([[su, sv, 1.0] for su in (-reach, reach) for sv in (-reach, reach)])
        if np.max((corners @ frame.T)[:, 2]) <= 0:
            raise ValueError(f"the telescope at {self.position} m looks into the ground only (elevation_deg="
                             f"{self.elevation_deg} with a half-opening of {math.degrees(math.atan(reach)):.1f}°): "
                             "no line of sight is above the horizon")

    ndim = 3

    @property
    def frame(self) -> np.ndarray:
        """Columns ``(u, v, w)`` (3 × 3): the planes' horizontal axis, their other axis, and
        the telescope's axis (unit vectors)."""
        az, el = math.radians(self.azimuth_deg), math.radians(self.elevation_deg)
        w = np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
        u = np.array([-math.sin(az), math.cos(az), 0.0])
        return np.stack([u, np.cross(w, u), w], axis=1)

    @property
    def shape(self) -> tuple:
        """Lines of sight: ``(2n − 1, 2n − 1)`` (v offset, u offset)."""
        m = 2 * self.n_pixels - 1
        return (m, m)

    @property
    def n_bins(self) -> int:
        return int(np.prod(self.shape))

    @property
    def scale(self) -> float:
        """``exposure × efficiency`` (s); the acceptance (m² sr) is in each line of sight."""
        return self.exposure_s * self.efficiency

    def offsets(self):
        """Pixel offsets ``(a, b)`` of the lines of sight, ``(n_bins, 2)`` integers (u, v)."""
        k = np.arange(-(self.n_pixels - 1), self.n_pixels)
        b, a = np.meshgrid(k, k, indexing="ij")
        return np.stack([a.ravel(), b.ravel()], axis=1)

    def slopes(self):
        """Centre slopes ``(n_bins, 2)`` (tan of the angle to the axis along u and v) and the
        tent half-width ``p/D``."""
        h = self.pixel_m / self.separation_m
        return self.offsets() * h, h

    def pairs(self):
        """Pixel pairs per line of sight, ``(n − |a|)(n − |b|)``: ``(n_bins,)``."""
        return np.prod(self.n_pixels - np.abs(self.offsets()), axis=1).astype(float)

    def directions(self, slopes):
        """Unit directions (…, 3) towards the sky of slopes ``(…, 2)`` along (u, v)."""
        v = slopes[..., 0:1] * self.frame[:, 0] + slopes[..., 1:2] * self.frame[:, 1] + self.frame[:, 2]
        return v / np.linalg.norm(v, axis=-1, keepdims=True)

    def acceptance(self, n_nodes: int = 16):
        """Acceptance of every line of sight (m² sr), ``(n_bins,)``: the tent integral of cos⁴ϑ
        on ``n_nodes`` Gauss-Legendre nodes per half-axis (the integrand is smooth there)."""
        x, w = tent_nodes(2 * n_nodes)
        centre, h = self.slopes()
        su = centre[:, 0:1, None] + (2 * x - 1)[None, :, None] * h
        sv = centre[:, 1:2, None] + (2 * x - 1)[None, None, :] * h
        cos4 = 1.0 / (1.0 + su ** 2 + sv ** 2) ** 2
        mean = np.einsum("cij,i,j->c", cos4, w, w)
        return self.pairs() * self.pixel_m ** 4 / self.separation_m ** 2 * mean

    def bin_centres_deg(self):
        """Zenith and azimuth (degrees) of each line of sight's centre direction, ``(n_bins, 2)``."""
        d = self.directions(self.slopes()[0])
        zen = np.degrees(np.arccos(np.clip(d[:, 2], -1, 1)))
        return np.stack([zen, np.degrees(np.arctan2(d[:, 1], d[:, 0]))], axis=1)

    def readings(self):
        """Per line of sight, the reading arrays of :func:`ppl_bmc.detectors.readings`: slopes
        box ``lo``/``hi`` (tent support), ``omega = pairs · p⁴/D²`` (m², times cos⁴ϑ per
        direction), the frame and ``tent = 1``."""
        centre, h = self.slopes()
        n = self.n_bins
        return {"origin": np.tile(self.position, (n, 1)), "lo": centre - h, "hi": centre + h,
                "omega": self.pairs() * self.pixel_m ** 4 / self.separation_m ** 2,
                "k_min": np.full(n, self.threshold_gev), "scale": np.full(n, self.scale),
                "frame": np.broadcast_to(self.frame, (n, 3, 3)).copy(), "tent": np.ones(n)}
