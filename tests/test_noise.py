"""The noise contract, versions 1 and 2 (runtime/noise.py); the JavaScript copy is checked in test_web_noise.py."""

import numpy as np
import pytest

from cgan.runtime import contract
from cgan.runtime.noise import NOISE_VERSION, check_version, noise_v2, philox4x32

# Random123's tests/kat_vectors, the three "philox4x32 10" lines: counter, key, result.
PHILOX_KAT = [
    ([0, 0, 0, 0], [0, 0], [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]),
    ([0xFFFFFFFF] * 4, [0xFFFFFFFF] * 2, [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]),
    ([0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344], [0xA4093822, 0x299F31D0], [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1]),
]


def test_philox_known_answers_one_at_a_time_and_vectorised():
    for counter, key, expected in PHILOX_KAT:
        assert philox4x32(np.array(counter), np.array(key)).tolist() == expected
    counters = np.array([c for c, _, _ in PHILOX_KAT])
    keys = np.array([k for _, k, _ in PHILOX_KAT])
    assert philox4x32(counters, keys).tolist() == [e for _, _, e in PHILOX_KAT]


def _v2_by_the_definition(seed: int, k: int, z_dim: int) -> np.ndarray:
    """The README's definition, written out one value at a time with Python floats."""
    import math

    out = []
    for b in range(-(-z_dim // 4)):
        x = philox4x32(np.array([b, k % 2**32, k >> 32, 0]), np.array([seed % 2**32, seed >> 32])).tolist()
        u = [(v + 0.5) / 2**32 for v in x]
        for u_r, u_t in ((u[0], u[1]), (u[2], u[3])):
            r = math.sqrt(-2.0 * math.log(u_r))
            out += [r * math.cos(2 * math.pi * u_t), r * math.sin(2 * math.pi * u_t)]
    return np.array(out[:z_dim], dtype=np.float32)


@pytest.mark.parametrize("seed, start", [(0, 0), (7, 3), (2**40 + 5, 2**33 + 1), (2**64 - 1, 2**64 - 3)])
def test_v2_matches_its_written_definition(seed, start):
    got = noise_v2(seed, start, 3, 10)
    for i in range(3):
        np.testing.assert_array_equal(got[i], _v2_by_the_definition(seed, start + i, 10))


def test_v2_golden_values():
    # Fixed here so that a change to the definition cannot pass unnoticed (runtime/web/static/noise.js gives the same).
    expected = [1.105812907218933, 0.020784752443432808, -0.14983271062374115, 0.4306260347366333,
                -0.1393999308347702, 0.17409852147102356, 1.177474021911621, -0.32318854331970215,
                -0.24689511954784393, 0.03914094343781471, -0.017368696630001068, 0.2592765986919403]
    np.testing.assert_array_equal(contract.noise(7, 3, 2, 6).ravel(), np.array(expected, dtype=np.float32))


def test_default_is_v2_and_v1_is_numpy_default_rng():
    assert NOISE_VERSION == 2
    np.testing.assert_array_equal(contract.noise(5, 2, 4, 100), contract.noise(5, 2, 4, 100, version=2))
    v1 = contract.noise(5, 2, 4, 100, version=1)
    for i in range(4):
        np.testing.assert_array_equal(v1[i], np.random.default_rng([5, 2 + i]).standard_normal(100, dtype=np.float32))
    assert not np.allclose(v1, contract.noise(5, 2, 4, 100))


@pytest.mark.parametrize("version", [1, 2])
def test_row_k_depends_only_on_seed_and_index(version):
    whole = contract.noise(7, 0, 10, 16, version)
    np.testing.assert_array_equal(whole[4:7], contract.noise(7, 4, 3, 16, version))
    assert whole.dtype == np.float32 and whole.shape == (10, 16)
    assert not np.allclose(whole, contract.noise(8, 0, 10, 16, version))
    assert contract.noise(7, 0, 0, 16, version).shape == (0, 16)


def test_v2_is_standard_normal():
    z = contract.noise(3, 0, 4000, 100).astype(np.float64)
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    assert abs(np.mean(z**4) - 3) < 0.05  # normal kurtosis
    assert abs(np.corrcoef(z[:, 0], z[:, 1])[0, 1]) < 0.05  # the cos/sin pair of one block is uncorrelated
    assert abs(np.mean(np.abs(z) > 1.96) - 0.05) < 0.005


def test_bad_arguments_are_refused():
    for bad in (0, 3, "2", True):
        with pytest.raises(ValueError, match="unknown noise version"):
            check_version(bad)
    with pytest.raises(ValueError, match="below 2\\^64"):
        contract.noise(2**64, 0, 1, 4)
    with pytest.raises(ValueError):
        contract.noise(-1, 0, 1, 4)
