"""The README's code runs as printed, and the numbers it quotes are the numbers it prints."""

import os
import re

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A quoted value: ``name = ...  # ≈ (v1, v2)`` or ``# name ≈ (v1)`` on a line of its own.
QUOTE = re.compile(r"^(?:(?P<targets>[\w ,]+?)\s*=.*?|#\s*(?P<name>\w+)\s*)#?\s*≈\s*\((?P<values>[-+0-9.eE, ]+)\)")


def _readme():
    return open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()


def quoted_values(text):
    """``[(names, values)]`` of every ``≈ (...)`` quote in the README's python blocks."""
    out = []
    for block in re.findall(r"```python\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            m = QUOTE.match(line.strip())
            if m:
                names = [n.strip() for n in (m.group("targets") or m.group("name")).split(",")]
                out.append((names, [float(v) for v in m.group("values").split(",")]))
    return out


def check_quotes(namespace, quotes):
    """Each value quoted with d significant digits equals the computed one to a relative 10^(1−d)
    (d ≥ 3; 1e-3 for the 4-digit quotes).  The README's computations use fixed keys, so they are
    deterministic up to float32 rounding (~1e-6 relative), far inside that; a quote off in its
    third digit fails."""
    for names, values in quotes:
        actual = np.concatenate([np.ravel(np.asarray(namespace[n], dtype=float)) for n in names])
        assert actual.shape == (len(values),), (names, actual)
        for a, v in zip(actual, values):
            digits = max(len(re.sub(r"[^0-9]", "", f"{v:e}".split("e")[0]).rstrip("0")), 3)
            assert abs(a - v) <= 10.0 ** (1 - digits) * abs(v), f"README quotes {names} ≈ {values}, the code gives {actual}"


def test_quote_parser_reads_what_the_readme_writes():
    text = "```python\nS, R = f(1)  # ≈ (2.193e-4, 4.906e4): units\n# dphi ≈ (-2.076e-3): note\nx = 1\n```\n"
    assert quoted_values(text) == [(["S", "R"], [2.193e-4, 4.906e4]), (["dphi"], [-2.076e-3])]


def test_readme_python_examples_run_and_print_what_they_quote():
    text = _readme()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "README has no python example"
    namespace = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    quotes = quoted_values(text)
    assert {n for names, _ in quotes for n in names} >= {"flux", "grad", "S", "R", "phi", "dphi"}
    check_quotes(namespace, quotes)
    mu, mu_bmc = namespace["mu"], namespace["mu_bmc"]
    assert mu.shape == mu_bmc.shape == (3, 24)
    # 1000 particles per bin: the BMC counts agree with the quadrature to a few per cent
    assert abs(float(mu_bmc.sum() / mu.sum()) - 1) < 0.02
    assert namespace["counts"].shape == (3, 24)
    # the plain-NumPyro example: NUTS from NumPyro's default initialisation moves and mixes
    post = namespace["mcmc"].get_samples(group_by_chain=True)
    assert "density" in post and np.all(np.isfinite(post["density"]))
    assert float(namespace["rhat_max"]) < 1.1


def test_a_wrong_quote_fails():
    """The check can fail: the README's old quote of the toy flux (the paper's numbers, not what
    the code prints) is caught; the right one passes."""
    import pytest

    printed = {"flux": np.array([0.04836008, 0.0421844, 0.044763])}
    check_quotes(printed, quoted_values("```python\nflux = f()  # ≈ (0.04836, 0.04218, 0.04476)\n```\n"))
    with pytest.raises(AssertionError):
        check_quotes(printed, quoted_values("```python\nflux = f()  # ≈ (0.0487, 0.0427, 0.0446)\n```\n"))
