"""The README's API example runs as printed."""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_readme_python_example_runs():
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "README has no python example"
    namespace = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["flux"].shape == (3,)
    assert namespace["grad"].shape == (3,)
    assert float(namespace["phi"]) > 0 and float(namespace["dphi"]) < 0  # less flux behind more rock
    mu, mu_bmc = namespace["mu"], namespace["mu_bmc"]
    assert mu.shape == mu_bmc.shape == (3, 24)
    # 1000 particles per bin: the BMC counts agree with the quadrature to a few per cent
    assert abs(float(mu_bmc.sum() / mu.sum()) - 1) < 0.02
    assert namespace["counts"].shape == (3, 24)
