"""Digital elevation models: read a raster (GeoTIFF through rasterio), crop, resample, move to
local metric coordinates, and make it a :class:`~ppl_bmc.geometry.terrain.HeightMap`.

An :class:`Elevation` is a regular grid of heights (m) at cell centres ``x`` (n_x,), ``y``
(n_y,) in metres of a projected coordinate reference system, shifted by ``origin`` (the
projected coordinates of the local (0, 0, 0)); ``heights[j, i]`` is the height at
``(x[i], y[j])``, rows going north (increasing y).  Rasters in degrees (a geographic CRS) are
reprojected on reading (``crs=``, e.g. the local UTM zone); points given in any CRS are mapped
to the local frame with :meth:`Elevation.to_local` (pyproj).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ppl_bmc.geometry.terrain import HeightMap

__all__ = ["Elevation", "read_elevation"]


def _axis(v, name):
    a = np.asarray(v, dtype=float)
    if a.ndim != 1 or len(a) < 2 or not np.all(np.isfinite(a)) or np.any(np.diff(a) <= 0):
        raise ValueError(f"{name} must be >= 2 finite, strictly increasing cell-centre coordinates (m)")
    return a


@dataclass(frozen=True, eq=False)
class Elevation:
    """Heights on a regular grid, in local metric coordinates.

    Parameters
    ----------
    x, y : 1-D arrays
        Cell-centre coordinates (m, increasing), local (``origin`` already subtracted).
    heights : array ``(n_y, n_x)``
        Heights (m above the local origin); every cell finite (no-data cells are an error).
    crs : str or None
        The projected CRS the grid came from (WKT or ``"EPSG:…"``), for :meth:`to_local`.
    origin : tuple of 3 floats
        Projected coordinates (m) and height of the local origin: local = projected − origin.
    """

    x: np.ndarray
    y: np.ndarray
    heights: np.ndarray
    crs: str | None = None
    origin: tuple = (0.0, 0.0, 0.0)

    def __post_init__(self):
        x, y = _axis(self.x, "x"), _axis(self.y, "y")
        h = np.asarray(self.heights, dtype=float)
        if h.shape != (len(y), len(x)):
            raise ValueError(f"heights must have shape (n_y, n_x) = {(len(y), len(x))}, got {h.shape}")
        bad = ~np.isfinite(h)
        if np.any(bad):
            j, i = np.argwhere(bad)[0]
            raise ValueError(f"heights has {int(bad.sum())} no-data (NaN or infinite) cells, the first at "
                             f"x={x[i]:g} m, y={y[j]:g} m: crop them away (crop) or fill them before use")
        origin = tuple(float(v) for v in np.ravel(self.origin))
        if len(origin) != 3 or not np.all(np.isfinite(origin)):
            raise ValueError(f"origin must be 3 finite coordinates (m), got {self.origin!r}")
        for k, v in (("x", x), ("y", y), ("heights", h), ("origin", origin)):
            object.__setattr__(self, k, v)

    @classmethod
    def from_array(cls, heights, origin, spacing, *, crs=None):
        """A grid from an array ``(n_y, n_x)`` (rows going north) whose first cell centre is at
        ``origin = (x0, y0)`` (m) with cell ``spacing = (dx, dy)`` (m, > 0)."""
        h = np.asarray(heights, dtype=float)
        if h.ndim != 2:
            raise ValueError(f"heights must be a 2-D array (n_y, n_x), got shape {h.shape}")
        (x0, y0), (dx, dy) = (np.broadcast_to(np.asarray(v, dtype=float), (2,)) for v in (origin, spacing))
        if not (np.isfinite([x0, y0]).all() and dx > 0 and dy > 0 and np.isfinite([dx, dy]).all()):
            raise ValueError(f"origin must be finite and spacing > 0 m, got origin={origin}, spacing={spacing}")
        return cls(x0 + dx * np.arange(h.shape[1]), y0 + dy * np.arange(h.shape[0]), h, crs)

    @property
    def spacing(self):
        """Mean cell size ``(dx, dy)`` (m)."""
        return (float(np.mean(np.diff(self.x))), float(np.mean(np.diff(self.y))))

    def crop(self, x=None, y=None):
        """The cells with centres in ``x = (lo, hi)`` and ``y = (lo, hi)`` (m, local)."""
        sel = []
        for name, axis, rng in (("x", self.x, x), ("y", self.y, y)):
            if rng is None:
                sel.append(slice(None))
                continue
            lo, hi = float(rng[0]), float(rng[1])
            idx = np.flatnonzero((axis >= lo) & (axis <= hi))
            if len(idx) < 2:
                raise ValueError(f"crop {name}=({lo:g}, {hi:g}) m keeps fewer than 2 cells of the grid's "
                                 f"[{axis[0]:g}, {axis[-1]:g}] m")
            sel.append(slice(idx[0], idx[-1] + 1))
        return Elevation(self.x[sel[0]], self.y[sel[1]], self.heights[sel[1], sel[0]], self.crs, self.origin)

    def resample(self, spacing):
        """Bilinear resampling onto a regular grid of ``spacing`` (m, scalar or ``(dx, dy)``)
        within the current extent."""
        dx, dy = np.broadcast_to(np.asarray(spacing, dtype=float), (2,))
        if not (dx > 0 and dy > 0):
            raise ValueError(f"spacing must be > 0 m, got {spacing}")
        nx, ny = (int(np.floor((a[-1] - a[0]) / s * (1 + 1e-12))) + 1 for a, s in ((self.x, dx), (self.y, dy)))
        if nx < 2 or ny < 2:
            raise ValueError(f"spacing {spacing} m leaves fewer than 2 cells on an axis of the grid")
        x, y = self.x[0] + dx * np.arange(nx), self.y[0] + dy * np.arange(ny)
        rows = np.stack([np.interp(x, self.x, row) for row in self.heights])
        h = np.stack([np.interp(y, self.y, col) for col in rows.T], axis=1)
        return Elevation(x, y, h, self.crs, self.origin)

    def shifted(self, origin):
        """The same grid with the local origin moved to ``origin = (x, y, z)`` (m, in the current
        local frame)."""
        o = np.asarray(origin, dtype=float)
        if o.shape != (3,) or not np.all(np.isfinite(o)):
            raise ValueError(f"origin must be 3 finite coordinates (m), got {origin!r}")
        return Elevation(self.x - o[0], self.y - o[1], self.heights - o[2], self.crs,
                         tuple(np.asarray(self.origin) + o))

    def to_local(self, points, crs=None):
        """Points ``(…, 2)`` or ``(…, 3)`` (x/lon, y/lat[, z]) given in ``crs`` (default: the
        grid's own) → local metric coordinates (m); pyproj converts between CRSs (``always_xy``)."""
        p = np.array(points, dtype=float)
        if p.shape[-1] not in (2, 3) or not np.all(np.isfinite(p)):
            raise ValueError(f"points must be finite with 2 or 3 coordinates on the last axis, got shape {p.shape}")
        if crs is not None and crs != self.crs:
            if self.crs is None:
                raise ValueError("this Elevation has no crs: points in another CRS cannot be converted")
            from pyproj import Transformer

            t = Transformer.from_crs(crs, self.crs, always_xy=True)
            p[..., 0], p[..., 1] = t.transform(p[..., 0], p[..., 1])
        return p - np.asarray(self.origin)[: p.shape[-1]]

    def surface(self, x, y):
        """Bilinear height (m) at local points (numpy, broadcasting)."""
        fx = np.interp(x, self.x, np.arange(len(self.x), dtype=float))
        fy = np.interp(y, self.y, np.arange(len(self.y), dtype=float))
        i = np.clip(np.floor(fx).astype(int), 0, len(self.x) - 2)
        j = np.clip(np.floor(fy).astype(int), 0, len(self.y) - 2)
        u, v = fx - i, fy - j
        h = self.heights
        return (h[j, i] * (1 - u) * (1 - v) + h[j, i + 1] * u * (1 - v) + h[j + 1, i] * (1 - u) * v
                + h[j + 1, i + 1] * u * v)

    def height_map(self, *, floor_m=None, fill=None):
        """A 3-D :class:`HeightMap`: matter from ``floor_m`` (m, default the lowest height) up to
        the bilinear surface through the cell centres, over the grid's extent; ``fill``: ``None``
        (one uniform density, kg/m³) or a 3-D field of the same box."""
        lo = float(self.heights.min()) if floor_m is None else float(floor_m)
        if not lo <= float(self.heights.min()):
            raise ValueError(f"floor_m must be <= the lowest height {self.heights.min():g} m, got {floor_m}")
        top = float(self.heights.max())
        if top <= lo:
            top = lo + 1e-3  # a flat grid at the floor: an empty slab of matter
        return HeightMap((self.x[0], self.y[0], lo), (self.x[-1], self.y[-1], top), (self.x, self.y),
                         self.heights, fill)


def read_elevation(path, *, band: int = 1, crs=None, bounds=None, origin=None) -> Elevation:
    """Read an elevation raster (GeoTIFF or any format rasterio opens) into an :class:`Elevation`.

    Parameters
    ----------
    path : str or path-like
        The raster file.
    band : int
        Band of heights (m), 1-based.
    crs : str or None
        Reproject to this projected CRS (e.g. ``"EPSG:32631"``) with bilinear resampling; needed
        when the raster is in degrees.
    bounds : (x_min, y_min, x_max, y_max) or None
        Crop to these projected coordinates (m) before anything else (e.g. to cut no-data edges).
    origin : (x, y, z) or None
        Projected coordinates (m) of the local origin; default: the lower-left cell centre and
        height 0.

    No-data cells (the raster's nodata value or NaN) inside the kept extent are a ``ValueError``.
    """
    import rasterio
    from rasterio.vrt import WarpedVRT
    from rasterio.enums import Resampling

    path = os.fspath(path)
    if not os.path.exists(path):
        raise ValueError(f"path {path!r}: no such elevation raster")
    try:
        src0 = rasterio.open(path)
    except rasterio.errors.RasterioIOError as e:
        raise ValueError(f"path {path!r} is not a raster rasterio can read: {e}") from None
    with src0:
        if not 1 <= band <= src0.count:
            raise ValueError(f"band must be in [1, {src0.count}] for {path!r}, got {band}")
        if src0.crs is not None and src0.crs.is_geographic and crs is None:
            raise ValueError(f"{path!r} is in degrees ({src0.crs.to_string()}): pass crs= a projected CRS in "
                             "metres (e.g. the local UTM zone, 'EPSG:326NN')")
        src = WarpedVRT(src0, crs=crs, resampling=Resampling.bilinear) if crs is not None else src0
        try:
            t = src.transform
            if t.b != 0 or t.d != 0:
                raise ValueError(f"{path!r}: rotated rasters are not supported (transform {tuple(t)[:6]})")
            heights = src.read(band, masked=True).astype(float).filled(np.nan)
            out_crs = src.crs.to_string() if src.crs is not None else None
        finally:
            if src is not src0:
                src.close()
    x = t.c + (np.arange(heights.shape[1]) + 0.5) * t.a
    y = t.f + (np.arange(heights.shape[0]) + 0.5) * t.e
    if t.e < 0:  # north-up rasters: rows go south; make them go north
        y, heights = y[::-1], heights[::-1]
    if t.a < 0:
        x, heights = x[::-1], heights[:, ::-1]
    if bounds is not None:
        b = np.asarray(bounds, dtype=float)
        if b.shape != (4,) or not (b[0] < b[2] and b[1] < b[3]):
            raise ValueError(f"bounds must be (x_min, y_min, x_max, y_max) with min < max (m), got {bounds!r}")
        keep_x, keep_y = (x >= b[0]) & (x <= b[2]), (y >= b[1]) & (y <= b[3])
        if keep_x.sum() < 2 or keep_y.sum() < 2:
            raise ValueError(f"bounds {tuple(b)} keep fewer than 2 cells of {path!r} "
                             f"(x [{x[0]:g}, {x[-1]:g}], y [{y[0]:g}, {y[-1]:g}] m)")
        x, y, heights = x[keep_x], y[keep_y], heights[np.ix_(keep_y, keep_x)]
    o = (x[0], y[0], 0.0) if origin is None else tuple(np.asarray(origin, dtype=float).ravel())
    if len(o) != 3 or not np.all(np.isfinite(o)):
        raise ValueError(f"origin must be 3 finite coordinates (m), got {origin!r}")
    try:
        return Elevation(x - o[0], y - o[1], heights - o[2], out_crs, o)
    except ValueError as e:
        raise ValueError(f"{path!r}: {e}") from None
