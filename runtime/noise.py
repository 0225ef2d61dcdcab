"""The noise contract: the latent vector of image k of a run with seed S, in two versions.

Version 2 (the default) is portable: a counter-based generator any language can reproduce from the
definition below, so the browser page (``cgan-web``) draws the very same vectors as ``cgan-run``.
Version 1 is numpy's ``default_rng([S, k]).standard_normal`` (PCG64 + SeedSequence + ziggurat), the
contract before version 2, kept so that images of older runs can be regenerated exactly.

Version 2, for seed S and image index k (both integers in [0, 2^64)) and latent width d:

* key = (S mod 2^32, S div 2^32); for block b = 0, 1, ..., ceil(d/4) - 1 the counter is
  (b, k mod 2^32, k div 2^32, 0), and (x0, x1, x2, x3) = Philox4x32-10(counter, key) (Salmon et al.,
  "Parallel random numbers: as easy as 1, 2, 3", SC 2011; Random123's ``philox4x32`` with 10 rounds).
* u_i = (x_i + 0.5) / 2^32, exactly, in float64: four uniforms in (0, 1).
* Box-Muller, in float64: r = sqrt(-2 ln u0), t = 2π·u1 gives z[4b] = r cos t, z[4b+1] = r sin t;
  r' = sqrt(-2 ln u2), t' = 2π·u3 gives z[4b+2], z[4b+3]. Each value is rounded to float32;
  values past d are dropped.

The only float operations are log, sqrt, cos and sin of a double; libraries agree on those to the last
bit or one ulp of a double, far below float32 rounding, so implementations agree on the float32 values.
"""

from __future__ import annotations

import numpy as np

NOISE_VERSION = 2  # the default for cgan-run, the Python API, the trainer's sample grids and cgan-eval
NOISE_VERSIONS = (1, 2)

# Philox4x32 multipliers and Weyl key increments (Random123).
_M0, _M1 = 0xD2511F53, 0xCD9E8D57
_W0, _W1 = 0x9E3779B9, 0xBB67AE85
_MASK = 0xFFFFFFFF
_ROUNDS = 10


def philox4x32(counter: np.ndarray, key: np.ndarray, rounds: int = _ROUNDS) -> np.ndarray:
    """Philox4x32-R of ``counter`` (``[..., 4]``) under ``key`` (``[..., 2]``), both uint32 words as
    integers; returns ``[..., 4]`` uint32. Vectorised: every leading index is an independent block."""
    c = np.asarray(counter, dtype=np.uint64) & _MASK
    k = np.asarray(key, dtype=np.uint64) & _MASK
    c0, c1, c2, c3 = (c[..., i].copy() for i in range(4))
    k0, k1 = np.broadcast_to(k[..., 0], c0.shape).copy(), np.broadcast_to(k[..., 1], c0.shape).copy()
    m0, m1, w0, w1, mask = (np.uint64(v) for v in (_M0, _M1, _W0, _W1, _MASK))
    for r in range(rounds):
        if r:
            k0 = (k0 + w0) & mask
            k1 = (k1 + w1) & mask
        p0 = c0 * m0  # 32 x 32 bits: exact in 64 bits
        p1 = c2 * m1
        c0, c1, c2, c3 = (p1 >> 32) ^ c1 ^ k0, p1 & mask, (p0 >> 32) ^ c3 ^ k1, p0 & mask
    return np.stack([c0, c1, c2, c3], axis=-1).astype(np.uint32)


def _check(seed: int, start: int, n: int) -> None:
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if start < 0 or n < 0:
        raise ValueError(f"start and n must be >= 0, got start={start}, n={n}")


def noise_v2(seed: int, start: int, n: int, z_dim: int) -> np.ndarray:
    """Version 2 (see the module docstring): float32 ``[n, z_dim]``, row i for image ``start + i``."""
    _check(seed, start, n)
    if seed >= 2**64 or start + n > 2**64:
        raise ValueError(f"noise version 2 takes seeds and image indices below 2^64, got seed={seed}, last index={start + n - 1}")
    blocks = -(-z_dim // 4)
    k = np.arange(n, dtype=np.uint64) + np.uint64(start) if n else np.zeros(0, dtype=np.uint64)
    counter = np.zeros((n, blocks, 4), dtype=np.uint64)
    counter[..., 0] = np.arange(blocks, dtype=np.uint64)
    counter[..., 1] = (k & np.uint64(_MASK))[:, None]
    counter[..., 2] = (k >> np.uint64(32))[:, None]
    key = np.array([seed & _MASK, seed >> 32], dtype=np.uint64)
    x = philox4x32(counter, key).astype(np.float64)
    u = (x + 0.5) * 2.0**-32
    r = np.sqrt(-2.0 * np.log(u[..., 0::2]))  # [n, blocks, 2]: from u0 and u2
    t = (2.0 * np.pi) * u[..., 1::2]  # from u1 and u3
    z = np.empty((n, blocks, 4), dtype=np.float64)
    z[..., 0::2] = r * np.cos(t)
    z[..., 1::2] = r * np.sin(t)
    return np.ascontiguousarray(z.reshape(n, blocks * 4)[:, :z_dim], dtype=np.float32)


def noise_v1(seed: int, start: int, n: int, z_dim: int) -> np.ndarray:
    """Version 1: row i is ``numpy.random.default_rng([seed, start + i]).standard_normal(z_dim)`` in float32."""
    _check(seed, start, n)
    out = np.empty((n, z_dim), dtype=np.float32)
    for i in range(n):
        out[i] = np.random.default_rng([seed, start + i]).standard_normal(z_dim, dtype=np.float32)
    return out


def check_version(version: object) -> int:
    """A noise version number, or ValueError listing the known ones."""
    if isinstance(version, bool) or not isinstance(version, (int, np.integer)) or int(version) not in NOISE_VERSIONS:
        known = ", ".join(map(str, NOISE_VERSIONS))
        raise ValueError(f"unknown noise version {version!r}; expected one of {known} (2: portable Philox, 1: numpy default_rng)")
    return int(version)
