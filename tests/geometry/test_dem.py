"""Elevation rasters: GeoTIFF round trip through rasterio, reprojection, local coordinates,
crop/resample, exact ray opacities through the terrain (a plane, a cone), bad input."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

rasterio = pytest.importorskip("rasterio")
from rasterio.transform import from_origin  # noqa: E402

from ppl_bmc.geometry import Elevation, read_elevation  # noqa: E402
from ppl_bmc.geometry.rays import box_interval  # noqa: E402

UTM = "EPSG:32631"  # UTM zone 31N (metres)
X0, Y0, CELL = 500_000.0, 5_070_000.0, 10.0  # upper-left corner (m) and cell size of the test rasters


def _write(path, heights_north_up, *, crs=UTM, transform=None, nodata=None, dtype="float64"):
    """A GeoTIFF written by rasterio directly (not by the package): rows north → south."""
    h = np.asarray(heights_north_up, dtype=dtype)
    transform = transform or from_origin(X0, Y0, CELL, CELL)
    with rasterio.open(path, "w", driver="GTiff", height=h.shape[0], width=h.shape[1], count=1, dtype=dtype,
                       crs=crs, transform=transform, nodata=nodata) as dst:
        dst.write(h, 1)


def _plane(x, y):
    return 100.0 + 0.3 * x - 0.2 * y  # m, in local metres


def _centres(n_x, n_y):
    """Projected cell centres of the test raster, rows going north."""
    x = X0 + CELL * (np.arange(n_x) + 0.5)
    y = Y0 - CELL * (np.arange(n_y) + 0.5)
    return x, y[::-1]


def test_geotiff_round_trip(tmp_path):
    x, y = _centres(12, 9)
    gx, gy = np.meshgrid(x - x[0], y - y[0])
    path = tmp_path / "dem.tif"
    _write(path, _plane(gx, gy)[::-1])
    e = read_elevation(path)
    np.testing.assert_allclose(e.x, x - x[0], atol=1e-9)
    np.testing.assert_allclose(e.y, y - y[0], atol=1e-9)
    np.testing.assert_allclose(e.heights, _plane(gx, gy), atol=1e-9)
    assert e.origin == (x[0], y[0], 0.0) and "32631" in e.crs
    # an explicit origin: local = projected − origin
    e2 = read_elevation(path, origin=(x[3], y[2], 50.0))
    np.testing.assert_allclose(e2.x, x - x[3], atol=1e-9)
    np.testing.assert_allclose(e2.heights, _plane(gx, gy) - 50.0, atol=1e-9)


def _ray(field, p, d, rho):
    p, d = jnp.asarray(p, float), jnp.asarray(d, float)
    t_in, t_out = box_interval(p, d, field.lower, field.upper)
    return float(field.integrate(p, d, t_in, t_out, jnp.asarray(rho)))


def test_plane_terrain_opacity_is_exact(tmp_path, x64):
    # a tilted plane is bilinear in every cell: the ray leaves the rock where it meets the plane
    x, y = _centres(20, 16)
    gx, gy = np.meshgrid(x - x[0], y - y[0])
    path = tmp_path / "plane.tif"
    _write(path, _plane(gx, gy)[::-1])
    hm = read_elevation(path).height_map(floor_m=0.0)
    rng = np.random.default_rng(0)
    for _ in range(12):
        p = np.array([rng.uniform(40, 150), rng.uniform(30, 120), rng.uniform(1, 20)])
        zen, az = rng.uniform(0, 1.2), rng.uniform(0, 2 * math.pi)
        d = np.array([math.sin(zen) * math.cos(az), math.sin(zen) * math.sin(az), math.cos(zen)])
        # analytic: p_z + t d_z = 100 + 0.3 (p_x + t d_x) − 0.2 (p_y + t d_y), capped by the box
        t_hit = (_plane(p[0], p[1]) - p[2]) / (d[2] - 0.3 * d[0] + 0.2 * d[1])
        t_box = float(box_interval(jnp.asarray(p), jnp.asarray(d), hm.lower, hm.upper)[1])
        want = 2500.0 * min(t_hit, t_box)
        assert _ray(hm, p, d, 2500.0) == pytest.approx(want, rel=1e-6)


def _tent_profile_length(p, d, xc, radius, height):
    """Independent reference: length of the ray p + t·d (in the plane y = y_c) below the profile
    z = height·max(0, 1 − |x − xc|/radius) — each linear piece solved by hand."""
    total = 0.0
    pieces = [(xc - radius, xc, height / radius, -height / radius * (xc - radius)),
              (xc, xc + radius, -height / radius, height / radius * (xc + radius))]
    for xa, xb, slope, icept in pieces:
        # the t-interval where x(t) ∈ [xa, xb]
        ta, tb = sorted(((xa - p[0]) / d[0], (xb - p[0]) / d[0]))
        ta, tb = max(ta, 0.0), max(tb, 0.0)
        # g(t) = slope·x(t) + icept − z(t) is linear: below the profile where g > 0
        g = lambda t: slope * (p[0] + t * d[0]) + icept - (p[2] + t * d[2])
        ga, gb = g(ta), g(tb)
        if ga > 0 and gb > 0:
            total += tb - ta
        elif ga > 0 or gb > 0:
            tz = ta + (tb - ta) * ga / (ga - gb)
            total += (tz - ta) if ga > 0 else (tb - tz)
    return total


@pytest.mark.parametrize("elev_deg", [2.0, 10.0, 25.0, 40.0])
def test_cone_terrain_opacity_is_exact_through_its_axis(elev_deg, x64):
    # a cone rastered with its apex on a cell centre: along the grid row through the apex the
    # bilinear surface is the cone's exact (piecewise linear) profile, so the opacity of rays in
    # that vertical plane equals the analytic one
    radius, height, n = 400.0, 300.0, 41
    c = np.linspace(-500.0, 500.0, n)  # 25 m cells, apex at c[20] = 0
    gx, gy = np.meshgrid(c, c)
    cone = height * np.clip(1 - np.hypot(gx, gy) / radius, 0, None)
    hm = Elevation(c, c, cone).height_map(floor_m=0.0)
    e = math.radians(elev_deg)
    wants = []
    for x_start in (-480.0, -350.0, -100.0):  # outside the foot, on the flank, near the axis
        p, d = np.array([x_start, 0.0, 0.5]), np.array([math.cos(e), 0.0, math.sin(e)])
        want = 2000.0 * _tent_profile_length(p, d, 0.0, radius, height)
        wants.append(want)
        assert _ray(hm, p, d, 2000.0) == pytest.approx(want, rel=1e-6, abs=1e-6)
    assert max(wants) > 1e5  # rock is crossed (steeper than the 36.9° flank from outside: none)


def test_geographic_raster_is_reprojected(tmp_path):
    pyproj = pytest.importorskip("pyproj")
    # 0.01° cells around (3.0°E, 45.77°N) at a constant 1000 m: after warping to UTM 31N the
    # heights stay 1000 m
    path = tmp_path / "geo.tif"
    _write(path, np.full((20, 20), 1000.0), crs="EPSG:4326", transform=from_origin(2.9, 45.87, 0.01, 0.01),
           nodata=-9999.0)
    with pytest.raises(ValueError, match="in degrees"):
        read_elevation(path)
    to_utm = pyproj.Transformer.from_crs("EPSG:4326", UTM, always_xy=True)
    cx, cy = to_utm.transform(3.0, 45.77)
    e = read_elevation(path, crs=UTM, bounds=(cx - 5000, cy - 5000, cx + 5000, cy + 5000), origin=(cx, cy, 0.0))
    np.testing.assert_allclose(e.heights, 1000.0, rtol=1e-9)
    assert e.x[0] >= -5000 and e.x[-1] <= 5000 and e.x[-1] - e.x[0] > 7000  # ~960 m cells
    # a point in degrees lands where pyproj puts it in the local frame
    lx, ly = to_utm.transform(3.01, 45.78)
    np.testing.assert_allclose(e.to_local([3.01, 45.78, 1200.0], crs="EPSG:4326"), [lx - cx, ly - cy, 1200.0],
                               atol=1e-6)


def test_crop_resample_and_surface():
    x = np.arange(0.0, 101.0, 10.0)
    y = np.arange(0.0, 61.0, 10.0)
    gx, gy = np.meshgrid(x, y)
    e = Elevation(x, y, _plane(gx, gy))
    c = e.crop(x=(20, 70), y=(10, 40))
    np.testing.assert_array_equal(c.x, [20, 30, 40, 50, 60, 70])
    np.testing.assert_array_equal(c.y, [10, 20, 30, 40])
    r = e.resample(2.5)
    assert r.spacing == (2.5, 2.5) and r.x[-1] == 100.0 and r.y[-1] == 60.0
    rx, ry = np.meshgrid(r.x, r.y)
    np.testing.assert_allclose(r.heights, _plane(rx, ry), atol=1e-9)  # bilinear keeps a plane
    np.testing.assert_allclose(e.surface(np.array([13.0, 71.5]), np.array([7.0, 55.0])),
                               _plane(np.array([13.0, 71.5]), np.array([7.0, 55.0])), atol=1e-9)
    s = e.shifted((10.0, 20.0, 100.0))
    assert s.origin == (10.0, 20.0, 100.0) and s.x[0] == -10.0 and s.heights[0, 0] == _plane(0, 0) - 100.0


def test_bad_elevations(tmp_path):
    h = np.ones((4, 5))
    h[2, 3] = np.nan
    with pytest.raises(ValueError, match="heights has 1 no-data"):
        Elevation.from_array(h, (0.0, 0.0), 10.0)
    with pytest.raises(ValueError, match="spacing > 0"):
        Elevation.from_array(np.ones((3, 3)), (0.0, 0.0), 0.0)
    path = tmp_path / "holes.tif"
    hn = np.full((6, 6), 50.0)
    hn[0, 0] = -32768.0
    _write(path, hn, nodata=-32768.0)
    with pytest.raises(ValueError, match="holes.tif.*no-data"):
        read_elevation(path)
    # cropping the hole away works (the hole is the north-west corner)
    x, y = _centres(6, 6)
    e = read_elevation(path, bounds=(x[1], y[0], x[-1], y[-1]))
    assert e.heights.shape == (6, 5) and np.all(e.heights == 50.0)
    with pytest.raises(ValueError, match="band must be in"):
        read_elevation(path, band=2)
    with pytest.raises(ValueError, match="no such elevation raster"):
        read_elevation(tmp_path / "missing.tif")
    (tmp_path / "junk.tif").write_bytes(b"not a raster")
    with pytest.raises(ValueError, match="not a raster"):
        read_elevation(tmp_path / "junk.tif")
    with pytest.raises(ValueError, match="keeps fewer than 2 cells"):
        Elevation.from_array(np.ones((3, 3)), (0.0, 0.0), 10.0).crop(x=(0, 5))
    with pytest.raises(ValueError, match="floor_m"):
        Elevation.from_array(np.ones((3, 3)), (0.0, 0.0), 10.0).height_map(floor_m=5.0)
