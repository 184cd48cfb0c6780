"""Telescopes of pixelated planes: acceptance against closed forms and an independent point-pair
Monte-Carlo, lines of sight through scenes (quadrature and BMC), bad input."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ppl_bmc import BMC, Detector, Scene, expected_counts
from ppl_bmc.geometry import Layers
from ppl_bmc.physics import flux, materials
from ppl_bmc.telescope import Telescope, square_planes_acceptance
from ppl_bmc.transport.csda import straight_line_flux


def _point_pairs(tel, n, seed):
    """Independent of the package's tent sampling: hit points uniform on the full front and rear
    planes; per pair its line-of-sight index (offset of the pixels), the direction to the sky and
    the étendue weight A²·cos⁴ϑ/D² (m² sr)."""
    rng = np.random.default_rng(seed)
    side = tel.n_pixels * tel.pixel_m
    front, rear = rng.uniform(0, side, (n, 2)), rng.uniform(0, side, (n, 2))
    off = np.floor(front / tel.pixel_m).astype(int) - np.floor(rear / tel.pixel_m).astype(int)
    m = 2 * tel.n_pixels - 1
    index = (off[:, 1] + tel.n_pixels - 1) * m + off[:, 0] + tel.n_pixels - 1
    delta = np.concatenate([front - rear, np.full((n, 1), tel.separation_m)], axis=1)
    r = np.linalg.norm(delta, axis=1)
    cos = tel.separation_m / r
    w = side ** 4 * cos ** 4 / tel.separation_m ** 2
    d = delta @ tel.frame.T / r[:, None]
    return index, d, w


def test_square_planes_closed_form_against_point_pairs_and_the_far_limit():
    # independent estimate: E[cos⁴ϑ]·A²/D² over uniform point pairs, tolerance 5 standard errors
    rng = np.random.default_rng(1)
    side, sep, n = 0.8, 1.0, 2_000_000
    delta = rng.uniform(0, side, (n, 2)) - rng.uniform(0, side, (n, 2))
    w = side ** 4 / sep ** 2 / (1 + (delta ** 2).sum(1) / sep ** 2) ** 2
    est, se = w.mean(), w.std() / math.sqrt(n)
    assert abs(square_planes_acceptance(side, sep) - est) < 5 * se
    # far apart: A²/D² (relative correction ~ side²/D²)
    assert square_planes_acceptance(0.1, 100.0) == pytest.approx((0.1 ** 2) ** 2 / 100.0 ** 2, rel=1e-5)
    with pytest.raises(ValueError, match="separation_m"):
        square_planes_acceptance(1.0, 0.0)


@pytest.mark.parametrize("n_pixels, pixel_m, sep", [(8, 0.1, 1.0), (16, 0.05, 0.6), (1, 0.5, 0.2)])
def test_acceptance_of_all_lines_of_sight_sums_to_two_squares(n_pixels, pixel_m, sep):
    tel = Telescope((0.0, 0.0, 0.0), 0.0, 90.0, n_pixels=n_pixels, pixel_m=pixel_m, separation_m=sep)
    # the acceptance: within 1 % (the tent integral is smooth: it is exact to ~1e-9)
    assert tel.acceptance().sum() == pytest.approx(square_planes_acceptance(n_pixels * pixel_m, sep), rel=1e-6)


def test_acceptance_per_line_of_sight_against_point_pairs():
    tel = Telescope((0.0, 0.0, 0.0), 30.0, 45.0, n_pixels=4, pixel_m=0.2, separation_m=0.5)
    index, _, w = _point_pairs(tel, 1_000_000, 2)
    n = len(w)
    est = np.bincount(index, weights=w, minlength=tel.n_bins) / n
    se = np.sqrt(np.bincount(index, weights=w * w, minlength=tel.n_bins) / n - est ** 2) / math.sqrt(n)
    z = (tel.acceptance() - est) / se
    assert np.max(np.abs(z)) < 5, z  # 49 lines of sight: |z| < 5 has a false-alarm rate ~3e-5
    # a deliberately wrong acceptance (no cos⁴ϑ: pairs·p⁴/D²) fails the same test
    wrong = tel.pairs() * tel.pixel_m ** 4 / tel.separation_m ** 2
    assert np.max(np.abs((wrong - est) / se)) > 5


def test_frame_and_line_of_sight_directions():
    tel = Telescope((0.0, 0.0, 0.0), 90.0, 0.0, n_pixels=3, pixel_m=0.1, separation_m=1.0)
    np.testing.assert_allclose(tel.frame[:, 2], [0.0, 1.0, 0.0], atol=1e-15)  # axis: azimuth 90°, horizontal
    np.testing.assert_allclose(tel.frame[:, 1], [0.0, 0.0, 1.0], atol=1e-15)  # v is up
    centres = tel.bin_centres_deg()
    mid = tel.n_bins // 2
    np.testing.assert_allclose(centres[mid], [90.0, 90.0], atol=1e-12)
    # offset b = +2 pixels (last row): 0.2 m over 1 m above the axis
    assert centres[-(tel.shape[1] // 2) - 1, 0] == pytest.approx(90 - math.degrees(math.atan(0.2)), abs=1e-12)


def _flux_of_cos(k_min):
    """Open-sky integrated flux F(cos θ) (m⁻² s⁻¹ sr⁻¹) above k_min, tabulated for np.interp."""
    c = np.linspace(0.0, 1.0, 401)
    f = straight_line_flux(materials.get("standard_rock"), flux.gccly, jnp.zeros_like(c), None, jnp.asarray(c),
                           k_min, 1e6, decay=False)
    return c, np.asarray(f)


def _open_sky_z(tel, n_directions=8):
    """Quadrature counts of ``tel`` under an empty layer, and their z-scores against the
    point-pair Monte-Carlo (``(q, z per line of sight, total z, total relative difference)``)."""
    scene = Scene(Layers((-10.0, -10.0), (10.0, 10.0), z_edges=[0.0, 1.0]), decay=False)
    q = np.asarray(expected_counts(scene, jnp.zeros(1), tel, method="quadrature", n_directions=n_directions))[0]
    c, f = _flux_of_cos(tel.threshold_gev)
    index, d, w = _point_pairs(tel, 1_000_000, 3)
    wf = w * np.interp(d[:, 2], c, f, left=0.0) * tel.exposure_s * tel.efficiency  # nothing from below the horizon
    n = len(w)
    est = np.bincount(index, weights=wf, minlength=tel.n_bins) / n
    se = np.sqrt(np.bincount(index, weights=wf * wf, minlength=tel.n_bins) / n - est ** 2) / math.sqrt(n)
    seen = se > 0
    z = (q - est)[seen] / se[seen]
    total_se = np.sqrt(np.sum(se ** 2))
    return q, z, (q.sum() - est.sum()) / total_se, abs(q.sum() - est.sum()) / est.sum()


@pytest.mark.parametrize("elevation", [40.0, 8.0])  # 8°: the horizon cuts 10 of the 25 lines of sight (±45°)
def test_open_sky_counts_against_point_pairs(elevation):
    # a telescope under an empty layer (density 0): counts = exposure × ∫ F(cos θ) dT
    tel = Telescope((0.0, 0.0, 0.0), 45.0, elevation, n_pixels=3, pixel_m=0.2, separation_m=0.6, exposure_s=1e5,
                    efficiency=0.9)
    q, z, z_total, rel = _open_sky_z(tel)
    assert np.max(np.abs(z)) < 5 and abs(z_total) < 5 and rel < 3e-3, (np.max(np.abs(z)), z_total, rel)


@pytest.mark.slow  # ~10 s (a quadrature compiled for a new telescope); the fast suite keeps the check above
def test_open_sky_counts_fail_when_the_horizon_is_ignored(monkeypatch):
    # the same check, with the lines of sight that the horizon cuts integrated over their whole
    # slope box (nodes below the horizon count zero): 21–27 SE off in some lines of sight
    import ppl_bmc.quadrature as quadrature

    monkeypatch.setattr(quadrature, "_horizon_cuts", lambda *args: [])
    tel = Telescope((0.0, 0.0, 0.0), 45.0, 8.0, n_pixels=3, pixel_m=0.2, separation_m=0.6, exposure_s=1e5,
                    efficiency=0.9)
    q, z, z_total, rel = _open_sky_z(tel)
    assert np.max(np.abs(z)) > 10, np.max(np.abs(z))


def test_bmc_through_a_layer_agrees_with_the_quadrature():
    # a tilted telescope under 60 m of rock; all lines of sight above the horizon.  BMC replicas
    # (independent keys) give the standard error; tolerance 4 SE on each total.
    tel = Telescope((0.0, 0.0, 0.0), 20.0, 60.0, n_pixels=2, pixel_m=0.3, separation_m=1.0, exposure_s=1e6)
    scene = Scene(Layers((-300.0, -300.0), (300.0, 300.0), z_edges=[0.0, 60.0]))
    rho = jnp.full(1, 2650.0)
    q = np.asarray(expected_counts(scene, rho, tel, method="quadrature", n_directions=8))[0]
    reps = np.stack([np.asarray(expected_counts(scene, rho, tel, method=BMC(key=jax.random.key(i), n_particles=64)))[0]
                     for i in range(6)])
    mean, se = reps.mean(0), reps.std(0, ddof=1) / math.sqrt(len(reps))
    assert np.all(np.abs(mean - q) < 4 * se + 1e-3 * q), (mean / q, se / q)
    # the same test rejects a telescope 10 % further apart (acceptance ~20 % lower)
    far = Telescope((0.0, 0.0, 0.0), 20.0, 60.0, n_pixels=2, pixel_m=0.3, separation_m=1.1, exposure_s=1e6)
    q_far = np.asarray(expected_counts(scene, rho, far, method="quadrature", n_directions=8))[0]
    assert not np.all(np.abs(mean - q_far) < 4 * se + 1e-3 * q_far)


def test_telescopes_and_detectors_mix_when_their_bins_match():
    tel = Telescope((0.0, 0.0, 0.0), 0.0, 70.0, n_pixels=2, pixel_m=0.3, separation_m=1.0)
    det = Detector((0.0, 0.0, 0.0), np.linspace(0, 30, 4), np.linspace(0, 360, 4))  # 3 × 3 bins
    scene = Scene(Layers((-300.0, -300.0), (300.0, 300.0), z_edges=[0.0, 30.0]))
    both = expected_counts(scene, jnp.full(1, 2000.0), [tel, det], method="quadrature")
    alone = expected_counts(scene, jnp.full(1, 2000.0), det, method="quadrature")
    np.testing.assert_allclose(both[1], alone[0], rtol=1e-6)


@pytest.mark.parametrize("kwargs, match", [
    (dict(separation_m=0.0), "separation_m"),
    (dict(exposure_s=-1.0), "exposure_s"),
    (dict(pixel_m=float("nan")), "pixel_m"),
    (dict(n_pixels=0), "n_pixels"),
    (dict(n_planes=1), "n_planes"),
    (dict(elevation_deg=95.0), "elevation_deg"),
    (dict(efficiency=0.0), "efficiency"),
    (dict(elevation_deg=-60.0), "looks into the ground"),
    (dict(position=(0.0, 1.0)), "position"),
])
def test_bad_telescopes(kwargs, match):
    args = dict(position=(0.0, 0.0, 0.0), azimuth_deg=0.0, elevation_deg=20.0, n_pixels=4, pixel_m=0.1,
                separation_m=1.0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        Telescope(**args)


def test_telescope_needs_two_quadrature_directions_and_a_3d_scene():
    tel = Telescope((0.0, 0.0, 0.0), 0.0, 70.0, n_pixels=2, pixel_m=0.3, separation_m=1.0)
    scene = Scene(Layers((-300.0, -300.0), (300.0, 300.0), z_edges=[0.0, 30.0]))
    with pytest.raises(ValueError, match="n_directions >= 2"):
        expected_counts(scene, jnp.full(1, 2000.0), tel, method="quadrature", n_directions=1)
    flat = Scene(Layers((-300.0,), (300.0,), z_edges=[0.0, 30.0]))
    with pytest.raises(ValueError, match="3-D but the scene is 2-D"):
        expected_counts(flat, jnp.full(1, 2000.0), tel, method="quadrature")


def test_telescope_below_the_terrain():
    from ppl_bmc.geometry import HeightMap

    hill = Scene(HeightMap.volcano(300.0, 150.0, ndim=3, center=(0.0, 0.0), n_knots=9))
    buried = Telescope((-100.0, 0.0, 10.0), 0.0, 20.0, n_pixels=2, pixel_m=0.2, separation_m=1.0)
    with pytest.raises(ValueError, match=r"detectors\[0\].*below the terrain surface"):
        expected_counts(hill, jnp.asarray(2000.0), buried, method="quadrature")
    tunnel = Telescope((-100.0, 0.0, 10.0), 0.0, 20.0, n_pixels=2, pixel_m=0.2, separation_m=1.0, underground=True)
    assert np.all(np.isfinite(np.asarray(expected_counts(hill, jnp.asarray(2000.0), tunnel, method="quadrature"))))
