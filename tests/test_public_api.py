"""The public API: pinned ``__all__`` of the package and its main modules, every public module
declares one and every name in it resolves, and the docstring examples run as tests."""

import doctest
import importlib
import pkgutil

import pytest

import ppl_bmc

#: The names users import; a change here is a change of the public API (update README too).
PINNED = {
    "ppl_bmc": ["Adjoint", "AutodiffAdjoint", "BMC", "Detector", "ForwardSensitivity", "GravitySurvey",
                "LineOfSightEnergy", "LogUniformEnergy", "ParticleBudget", "Quadrature", "ReplayAdjoint", "Scene",
                "Telescope", "particle_budget", "constants", "detectors", "expected_counts", "flux", "geometry",
                "gravity", "materials", "mean_weight", "muography", "nppl", "telescope", "toy", "__version__"],
    "ppl_bmc.estimators": ["Quadrature", "BMC", "resolve_method"],
    "ppl_bmc.geometry": ["Composite", "Composition", "Elevation", "Field", "GaussianBlobs", "HeightMap", "Layers", "Mixture", "Scene",
                         "VoxelGrid", "read_elevation"],
    "ppl_bmc.telescope": ["Telescope", "square_planes_acceptance", "tent_nodes"],
    "ppl_bmc.gravity": ["G", "MGAL", "GravitySurvey", "prism_gz"],
    "ppl_bmc.transport": ["Kernel", "MuonKernel", "MixedKernel", "MuonState", "EnergySampling", "LineOfSightEnergy",
                          "LogUniformEnergy", "Path", "LineOfSight", "FieldPath", "ToyKernel", "readings_mesh",
                          "join_hosts"],
    "ppl_bmc.physics.flux": ["SkyFlux", "GCCLY", "Gaisser", "TabulatedFlux", "Tilted", "gccly", "gaisser", "MODELS", "get",
                             "cos_theta_star", "charge_fraction", "MU_PLUS_OVER_MU_MINUS", "CHIRKIN_P"],
    "ppl_bmc.physics.materials": ["Material", "Blend", "names", "get", "custom", "check_composition"],
    "ppl_bmc.physics.constants": ["MUON_MASS", "MUON_CTAU", "MWE"],
    "ppl_bmc.physics.mixed": ["Mixed", "MixedMaterial", "MixedBlend", "names", "ratio_names", "get", "blend", "CUT",
                              "CUT_RANGE", "SIGMA_FLOOR"],
    "ppl_bmc.transport.stochastic": ["MixedState", "MixedKernel", "events_bound"],
    "ppl_bmc.muography": ["transmitted_flux"],
    "ppl_bmc.likelihood": ["expected_counts", "exit_lengths"],
    "ppl_bmc.budget": ["ParticleBudget", "particle_budget", "DEFAULT_TARGET"],
    "ppl_bmc.transport.energy": ["Line", "EnergySampling", "LogUniformEnergy", "LineOfSightEnergy"],
    "ppl_bmc.adjoint": ["Adjoint", "AutodiffAdjoint", "ForwardSensitivity", "ReplayAdjoint", "mean_weight"],
}


def public_modules():
    names = []
    for info in pkgutil.walk_packages(ppl_bmc.__path__, "ppl_bmc."):
        parts = info.name.split(".")
        if not any(p.startswith("_") for p in parts) and parts[1] not in ("cli", "models"):
            names.append(info.name)
    return sorted(names)


@pytest.mark.parametrize("module, names", sorted(PINNED.items()))
def test_pinned_public_names(module, names):
    mod = importlib.import_module(module)
    assert sorted(mod.__all__) == sorted(names)
    for name in names:
        assert getattr(mod, name) is not None


def test_every_public_module_declares_what_it_exports():
    missing = []
    for name in public_modules():
        mod = importlib.import_module(name)
        if not hasattr(mod, "__all__"):
            missing.append(name)
            continue
        for attr in mod.__all__:
            assert hasattr(mod, attr), f"{name}.__all__ names {attr!r}, which it does not define"
    assert not missing, f"modules without __all__: {missing}"


def test_docstring_examples_run():
    ran = 0
    for name in public_modules():
        mod = importlib.import_module(name)
        result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
        assert result.failed == 0, f"{name}: {result.failed} docstring example(s) failed"
        ran += result.attempted
    assert ran >= 10  # toy, estimators, muography examples: the test is not vacuous
