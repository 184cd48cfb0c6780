"""The counter-based random numbers of the walk (ppl_bmc.transport.streams).

Three kinds of checks:

* the block function is Threefry-2x32-20: the published known-answer vectors and JAX's own
  implementation, bit for bit;
* a quality battery on the uniforms as the walk uses them — moments, a fine-bin chi-square,
  lag-1 correlations and 2-D chi-squares of neighbours along every axis (step, reading,
  particle, stream), the balance of every mantissa bit, the NIST SP 800-22 monobit, block
  frequency and runs tests on the bit stream, and independence between keys.  Each check is a
  z-score (standard normal for a good generator); the battery passes when every |z| < 5 (about
  40 scores: a good generator fails by chance with probability ~2e-5; the draws use fixed keys,
  so the outcome is deterministic).  NumPy's PCG64 passes it; deliberately broken streams
  (too few rounds, a counter that ignores the step or the reading, a float conversion that
  drops bits) fail it — so the battery can fail;
* the stream's contracts: same key → bit-identical, draws independent of how many readings
  surround them (padding, sharding), float64 with 52 random bits.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from ppl_bmc.transport import streams as st

C, P, N, K = 8, 2048, 4, 4  # readings, particles, streams, steps: 262,144 uniforms
LIMIT = 5.0


# ---------------------------------------------------------------------------- the battery
def _chi2_z(counts):
    """z-score of Pearson's chi-square of equiprobable cells (Wilson–Hilferty normal form)."""
    counts = np.asarray(counts, float).ravel()
    df = counts.size - 1
    expected = counts.sum() / counts.size
    chi2 = ((counts - expected) ** 2 / expected).sum()
    return ((chi2 / df) ** (1 / 3) - (1 - 2 / (9 * df))) / np.sqrt(2 / (9 * df))


def _corr_z(a, b):
    a, b = np.ravel(a) - 0.5, np.ravel(b) - 0.5
    return float(np.sum(a * b) / np.sqrt(np.sum(a * a) * np.sum(b * b)) * np.sqrt(a.size))


def _pair_chi2_z(a, b, bins=16):
    ia, ib = (np.minimum((np.ravel(x) * bins).astype(int), bins - 1) for x in (a, b))
    return _chi2_z(np.bincount(ia * bins + ib, minlength=bins * bins))


def _nist_scores(bits):
    """SP 800-22 rev. 1a (NIST 2010), §2.1 monobit, §2.2 block frequency (M = 128), §2.3 runs:
    the p-values mapped to two-sided z-scores."""
    n = bits.size
    s = np.sum(2 * bits.astype(np.int64) - 1)
    z = {"nist monobit": s / np.sqrt(n)}
    m = 128
    blocks = bits[: n // m * m].reshape(-1, m).mean(1)
    chi2 = 4 * m * np.sum((blocks - 0.5) ** 2)
    p = special.gammaincc(blocks.size / 2, chi2 / 2)
    z["nist block frequency"] = special.ndtri(1 - max(p, 1e-300) / 2)
    pi = bits.mean()
    runs = 1 + np.count_nonzero(bits[1:] != bits[:-1])
    z["nist runs"] = (runs - 2 * n * pi * (1 - pi)) / (2 * np.sqrt(2 * n) * pi * (1 - pi))
    return z


def battery(u, other_key=None):
    """z-scores of uniforms ``u`` of shape (K steps, C readings, P particles, N streams)."""
    u = np.asarray(u, np.float64)
    n = u.size
    z = {"mean": (u.mean() - 0.5) / np.sqrt(1 / 12 / n),
         "variance": (u.var() - 1 / 12) / np.sqrt((1 / 80 - 1 / 144) / n),
         "chi-square 1024 bins": _chi2_z(np.bincount(np.minimum((u.ravel() * 1024).astype(int), 1023), minlength=1024))}
    for axis, name in enumerate(["step", "reading", "particle", "stream"]):
        a = np.take(u, np.arange(u.shape[axis] - 1), axis=axis)
        b = np.take(u, np.arange(1, u.shape[axis]), axis=axis)
        z[f"lag-1 correlation along {name}"] = _corr_z(a, b)
        z[f"pair chi-square along {name}"] = _pair_chi2_z(a, b)
    mant = np.floor(u.ravel() * 2**23).astype(np.int64)
    for bit in range(23):
        ones = np.count_nonzero((mant >> bit) & 1)
        z[f"mantissa bit {bit}"] = (ones - n / 2) / np.sqrt(n / 4)
    bits = ((mant[:, None] >> np.arange(22, 6, -1)) & 1).astype(np.uint8).ravel()  # top 16 bits, in order
    z.update(_nist_scores(bits))
    if other_key is not None:
        z["correlation between keys"] = _corr_z(u, np.asarray(other_key, np.float64))
    return z


def assert_passes(z):
    bad = {k: round(float(v), 2) for k, v in z.items() if not abs(v) < LIMIT}
    assert not bad, f"checks beyond |z| < {LIMIT}: {bad}"


def failures(z):
    return {k for k, v in z.items() if not abs(v) < LIMIT}


def walk_draws(key, draw=None, dtype=jnp.float32):
    """The non-stratified uniforms of steps 1..K as the walk draws them: (K, C, P, N)."""
    if draw is None:
        s = st.Streams(key, C, P, stratified=False)
        return np.stack([np.asarray(s.uniforms(k, N, dtype)) for k in range(1, K + 1)])
    return np.stack([np.asarray(draw(key, k)) for k in range(1, K + 1)])


# ---------------------------------------------------------------------------- the block function
@pytest.mark.parametrize("key, counter, expected", [
    # Random123's known-answer vectors for threefry2x32_20 (Salmon et al. 2011; kat_vectors)
    ((0, 0), (0, 0), (0x6B200159, 0x99BA4EFE)),
    ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x1CB996FC, 0xBB002BE7)),
    ((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3), (0xC4923A9C, 0x483DF7A0)),
])
def test_threefry_known_answers(key, counter, expected):
    y = st.threefry2x32(np.uint32(key), np.uint32(counter[0]), np.uint32(counter[1]))
    assert tuple(int(v) for v in y) == expected


def test_threefry_is_jax_threefry_bit_for_bit():
    from jax.extend.random import threefry_2x32

    rng = np.random.default_rng(0)
    for _ in range(3):
        key = rng.integers(0, 2**32, 2, dtype=np.uint32)
        x0, x1 = (rng.integers(0, 2**32, 4096, dtype=np.uint32) for _ in range(2))
        ref = np.asarray(threefry_2x32((jnp.uint32(key[0]), jnp.uint32(key[1])), jnp.concatenate([x0, x1])))
        y0, y1 = st.threefry2x32(key, x0, x1)
        np.testing.assert_array_equal(np.concatenate([y0, y1]), ref)
    # two rounds short is another function
    assert not np.array_equal(np.asarray(st.threefry2x32(key, x0, x1, rounds=18)[0]), ref[:4096])
    with pytest.raises(ValueError, match="rounds"):
        st.threefry2x32(key, x0, x1, rounds=0)


# ---------------------------------------------------------------------------- quality
def test_the_walks_uniforms_pass_the_battery():
    z = battery(walk_draws(jax.random.key(0)), other_key=walk_draws(jax.random.key(1)))
    assert len(z) == 38
    assert_passes(z)


def test_the_battery_passes_a_reference_generator():
    rng = np.random.default_rng(12345)  # NumPy's PCG64
    assert_passes(battery(rng.random((K, C, P, N)), other_key=rng.random((K, C, P, N))))


def _broken(rounds=20, step=True, reading=True, keep_bits=23):
    def draw(key, k):
        key = jax.random.fold_in(key, k if step else 0)
        words = jax.random.bits(key, (2,), jnp.uint32)
        c = jnp.arange(C, dtype=jnp.uint32)[:, None] * (1 if reading else 0)
        flat = c * jnp.uint32(P) + jnp.arange(P, dtype=jnp.uint32)[None, :]
        x0 = jnp.broadcast_to(flat[..., None], (C, P, N // 2))
        x1 = jnp.broadcast_to(jnp.arange(N // 2, dtype=jnp.uint32), (C, P, N // 2))
        y = jnp.stack(st.threefry2x32(words, x0, x1, rounds), -1).reshape(C, P, N)
        mant = (y >> jnp.uint32(9)) >> jnp.uint32(23 - keep_bits) << jnp.uint32(23 - keep_bits)
        return mant.astype(jnp.float32) / 2.0**23

    return draw


@pytest.mark.parametrize("broken, expected", [
    (_broken(rounds=4), "lag-1 correlation along particle"),  # weak mixing: neighbours alike
    (_broken(rounds=8), "pair chi-square along particle"),  # still too few rounds (z ≈ 6.4)
    (_broken(step=False), "lag-1 correlation along step"),  # every step the same numbers
    (_broken(reading=False), "lag-1 correlation along reading"),  # readings share their numbers
    (_broken(keep_bits=12), "mantissa bit 0"),  # a float conversion that drops bits
])
def test_the_battery_fails_broken_streams(broken, expected):
    key = jax.random.key(0)
    # the same construction with nothing broken passes: the failure is the defect's
    assert_passes(battery(walk_draws(key, _broken())))
    z = battery(walk_draws(key, broken))
    assert expected in failures(z), {k: round(float(v), 1) for k, v in z.items() if abs(v) > 3}


# ---------------------------------------------------------------------------- contracts
def test_same_key_same_numbers_and_readings_keep_theirs():
    key = jax.random.key(7)
    a = st.Streams(key, 5, 64).uniforms(3, 3, jnp.float32)
    b = st.Streams(key, 5, 64).uniforms(3, 3, jnp.float32)
    np.testing.assert_array_equal(a, b)
    # padding the readings (as on several devices) does not move the first ones' numbers
    padded = st.Streams(key, 8, 64).uniforms(3, 3, jnp.float32)
    np.testing.assert_array_equal(padded[:5], a)
    # the step, the key and the particle count change them
    assert not np.array_equal(st.Streams(key, 5, 64).uniforms(4, 3, jnp.float32), a)
    assert not np.array_equal(st.Streams(jax.random.key(8), 5, 64).uniforms(3, 3, jnp.float32), a)
    # under jit with a traced step: the same numbers
    traced = jax.jit(lambda k: st.Streams(key, 5, 64).uniforms(k, 3, jnp.float32))(3)
    np.testing.assert_array_equal(traced, a)


def test_stratified_initial_uniforms_fill_every_stratum():
    u = np.asarray(st.Streams(jax.random.key(3), 4, 256).uniforms(0, 3, jnp.float32))
    for c in range(4):
        for j in range(3):
            np.testing.assert_array_equal(np.sort(np.floor(u[c, :, j] * 256)), np.arange(256))
    assert not np.array_equal(u[0, :, 0], u[0, :, 1])  # each coordinate its own permutation


def test_float64_uniforms_carry_52_random_bits(x64):
    s = st.Streams(jax.random.key(0), C, P, stratified=False)
    u = np.stack([np.asarray(s.uniforms(k, N, jnp.float64)) for k in range(1, K + 1)])
    assert u.dtype == np.float64 and u.min() >= 0.0 and u.max() < 1.0
    mant = np.floor(u.ravel() * 2.0**52).astype(np.int64)
    for bit in (0, 1, 20, 31, 32, 51):  # both words reach the float
        ones = np.count_nonzero((mant >> bit) & 1)
        assert abs(ones - u.size / 2) / np.sqrt(u.size / 4) < LIMIT, bit
    z = battery(u)
    assert_passes({k: v for k, v in z.items()})


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="below 2\\*\\*32"):
        st.counter_uniforms(jax.random.key(0), (2**16, 2**16, 1), jnp.float32)
    with pytest.raises(ValueError, match="float32 or float64"):
        st.counter_uniforms(jax.random.key(0), (1, 2, 1), jnp.float16)
