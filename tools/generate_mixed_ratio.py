"""Generate ppl_bmc/data/mixed_ratio.npz: the mixed/CSDA ratio of the flux through a slab, from the
package's own stochastic BMC, for the deterministic likelihood ``physics="mixed"`` of the quadrature.

    make install && .venv/bin/python tools/generate_mixed_ratio.py [--material NAME] [--out F] [--n-particles N]

One material per run (default standard_rock; any with mixed-mode tables, ``ppl_bmc.physics.mixed.names()``):
its entries ``NAME/ratio``, ``NAME/error``, ``NAME/n_particles`` are written into the output file, the
other materials' entries kept (the grids below are shared and must match the file's).
For each opacity X (m.w.e.) and zenith angle of the grids below, the mixed-mode backward walk
(:class:`ppl_bmc.transport.stochastic.MixedKernel`, the material, GCCLY sky, decay on)
runs ``n_particles`` muons (default 2¹⁹, the shipped tables' count; in batches with independent
keys) whose detector-side energies are drawn once on [1e-3, 1e6] GeV; the integrated flux above
each threshold k_min of the grid is the mean of the weights of the muons above it.  The ratio to the exact CSDA
quadrature (:func:`ppl_bmc.transport.csda.straight_line_flux`, 2048 nodes) is stored with its
Monte-Carlo standard error (from the batches).  At X = 0 the ratio is 1 exactly.  About 25 minutes
per material on two cores (the keys are the same for every material).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from ppl_bmc.physics import flux, mixed
from ppl_bmc.physics.constants import MWE
from ppl_bmc.transport import loop
from ppl_bmc.transport.csda import straight_line_flux
from ppl_bmc.transport.paths import LineOfSight
from ppl_bmc.transport.stochastic import MixedKernel, events_bound

OPACITY = np.array([0, 1, 3, 10, 20, 30, 50, 100, 150, 200, 300, 500, 700, 1000, 1500, 2000, 2500, 3000, 4000, 5000,
                    6000, 8000, 10000], dtype=float)  # m.w.e.
ZENITH = np.array([0, 30, 45, 60, 70, 80, 85, 89], dtype=float)  # degrees (rays of a scene reach the horizon)
K_MIN = np.array([1e-3, 1e-2, 0.1, 0.3, 1.0, 3.0, 10.0])  # GeV
K_LOW, K_MAX = 1e-3, 1e6
BATCH = 2**17


GRIDS = {"sky": np.array("gccly"), "opacity_mwe": OPACITY, "zenith_deg": ZENITH, "k_min": K_MIN,
         "k_max": np.float64(K_MAX)}


def existing(out):
    """The other materials' entries of ``out`` (none when it does not exist); refuses a file whose
    shared grids differ from this tool's."""
    if not os.path.exists(out):
        return {}
    with np.load(out) as data:
        old = {key: data[key] for key in data.files}
    if "ratio" in old:
        sys.exit(f"{out}: a single-material table of an older format; write to another file (--out)")
    for key, value in GRIDS.items():
        if key not in old or not np.array_equal(old[key], value):
            sys.exit(f"{out}: its {key} differs from this tool's grid; write to another file (--out)")
    return old


def main(out=None, n_particles=2**19, material="standard_rock"):
    jax.config.update("jax_enable_x64", True)
    out = out or os.path.join(os.path.dirname(__file__), "..", "ppl_bmc", "data", "mixed_ratio.npz")
    n_particles = int(n_particles)
    table = mixed.get(material)
    entries = existing(out)
    sky = flux.get("gccly")
    kernel = MixedKernel(LineOfSight(1), table, sky, K_MAX, True)
    n_steps = events_bound(table, MWE * OPACITY.max(), K_LOW)

    @jax.jit
    def weights(opacity, zenith, key):
        ctx = {"zenith": zenith[None], "k_min": jnp.full((1,), K_LOW)}
        streams = loop.Streams(key, 1, BATCH)
        state, log_w = loop.init(kernel, opacity, ctx, streams, jnp.float64)
        k_det = jnp.exp(state.log_k)

        def body(carry, k):
            state, log_w = carry
            state, inc = loop.step(kernel, state, opacity, ctx, streams, k, jnp.float64)
            return (state, log_w + inc), None

        (state, log_w), _ = jax.lax.scan(body, (state, log_w), jnp.arange(1, n_steps + 1))
        w = jnp.exp(log_w + loop.final(kernel, state, opacity, ctx))[0]
        return jnp.stack([jnp.mean(jnp.where(k_det[0] >= k, w, 0.0)) for k in K_MIN])

    @jax.jit
    def csda(opacity, cos_zenith):
        return jnp.stack([straight_line_flux(table.csda, sky, MWE * opacity, None, cos_zenith, k, K_MAX, decay=True,
                                             n_nodes=2048) for k in K_MIN])

    ratio = np.ones((OPACITY.size, ZENITH.size, K_MIN.size))
    error = np.zeros_like(ratio)
    n_batches = max(2, n_particles // BATCH)
    if n_batches > 10:  # the keys 1000·i + 10·j + b would repeat across zenith nodes
        sys.exit(f"--n-particles: at most {10 * BATCH} (10 batches of {BATCH}), got {n_particles}")
    t0 = time.time()
    for i, x in enumerate(OPACITY):
        if x == 0:
            continue
        for j, z in enumerate(ZENITH):
            zr = jnp.float64(math.radians(z))
            batches = np.array([weights(jnp.float64(x), zr, jax.random.key(1000 * i + 10 * j + b))
                                for b in range(n_batches)])
            ref = np.asarray(csda(jnp.float64(x), jnp.cos(zr)))
            ratio[i, j] = batches.mean(axis=0) / ref
            error[i, j] = batches.std(axis=0, ddof=1) / math.sqrt(n_batches) / ref
        print(f"{x:7g} m.w.e.: ratio at k_min=1e-3, zenith 0/60: {ratio[i, 0, 0]:.4f} ± {error[i, 0, 0]:.4f} / "
              f"{ratio[i, 3, 0]:.4f}; {time.time() - t0:.0f} s", flush=True)
    entries.update(GRIDS)
    entries.update({f"{material}/ratio": ratio, f"{material}/error": error,
                    f"{material}/n_particles": np.int64(n_batches * BATCH)})
    tmp = out + ".tmp.npz"
    np.savez_compressed(tmp, **entries)
    os.replace(tmp, out)
    print("wrote", material, "into", out)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--material", default="standard_rock")
    parser.add_argument("--out", default=None, help="output .npz (default: the package's ppl_bmc/data/mixed_ratio.npz)")
    parser.add_argument("--n-particles", type=int, default=2**19)
    args = parser.parse_args()
    main(args.out, args.n_particles, args.material)
