"""Sky fluxes: GCCLY against mulder, the published Gaisser form, bad input."""

import math

import pytest

from ppl_bmc import flux
from ppl_bmc.physics.constants import MUON_MASS


def test_gccly_matches_mulder_reference_values():
    # mulder 0.3.7 Reference() (model GCCLY15, sea level): flux(energy=K, elevation=90° − zenith),
    # GeV⁻¹ m⁻² s⁻¹ sr⁻¹; values printed by mulder, an independent implementation.
    ref = {(1.0, 0): 21.80730442, (1.0, 30): 14.75107411, (1.0, 80): 0.13914018, (10.0, 0): 1.1420374,
           (10.0, 80): 0.06873742, (100.0, 0): 0.00281937, (1000.0, 80): 4.01729184e-06}
    for (k, zenith), value in ref.items():
        got = float(flux.gccly(k, math.cos(math.radians(zenith))))
        assert abs(got / value - 1) < 1e-5, (k, zenith, got, value)


def test_gaisser_published_form_and_high_energy_limit():
    # PDG eq.: 0.14 E^-2.7 [1/(1 + 1.1 E cosθ/115) + 0.054/(1 + 1.1 E cosθ/850)] cm⁻² s⁻¹ sr⁻¹ GeV⁻¹
    e, c = 1000.0, 0.5
    expected = 0.14 * e**-2.7 * (1 / (1 + 1.1 * e * c / 115) + 0.054 / (1 + 1.1 * e * c / 850)) * 1e4
    assert abs(float(flux.gaisser(e - MUON_MASS, c)) / expected - 1) < 1e-5
    assert abs(float(flux.cos_theta_star(1.0)) - 1) < 1e-6
    # GCCLY's low-energy factor vanishes at high energy: vertical GCCLY → Gaisser
    assert abs(float(flux.gccly(1e5, 1.0) / flux.gaisser(1e5, 1.0)) - 1) < 1e-3
    assert abs(flux.charge_fraction(1) / flux.charge_fraction(-1) - 1.2766) < 1e-12


@pytest.mark.parametrize("model", [flux.gccly, flux.gaisser])
def test_sky_flux_rejects_bad_input(model):
    with pytest.raises(ValueError, match="kinetic_energy must be > 0 GeV"):
        model(0.0, 1.0)
    with pytest.raises(ValueError, match=r"cos_zenith must be in \[0, 1\]"):
        model(10.0, -0.1)
