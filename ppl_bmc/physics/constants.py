"""Physical constants and unit conversions, in one place (SI as in PUMAS/mulder: GeV, m, kg).

Values from the PDG 2024 Review of Particle Physics (muon mass and lifetime).
"""

from __future__ import annotations

__all__ = ["MUON_MASS", "MUON_CTAU", "MWE"]

#: Muon mass (GeV), PDG 2024.
MUON_MASS = 0.1056583755
#: Muon c·τ (m), PDG 2024: τ = 2.1969811 µs.
MUON_CTAU = 658.654
#: Grammage of one metre water equivalent (kg/m²): opacities named ``*_mwe`` are in these units.
MWE = 1000.0
