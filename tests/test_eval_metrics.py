"""cgan-eval's figures in closed form and on known distributions: Fréchet distance, KID, precision and
recall of k-NN manifolds, diversity, and the calibration perturbations (numpy only, fast)."""

from __future__ import annotations

import numpy as np
import pytest

from cgan.train.eval.calibration import perturb
from cgan.train.eval.metrics import (
    frechet_distance,
    frechet_features,
    kid,
    matched_frechet,
    mean_pairwise_distance,
    mmd2_unbiased,
    moments,
    pixel_vectors,
    precision_recall,
)


# ---------------------------------------------------------------- Fréchet distance, closed forms

def test_frechet_of_identical_gaussians_is_zero():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((6, 6))
    cov = a @ a.T + np.eye(6)
    mu = rng.standard_normal(6)
    assert frechet_distance(mu, cov, mu, cov) == pytest.approx(0.0, abs=1e-9)


def test_frechet_one_dimensional_closed_form():
    # N(m1, s1^2) vs N(m2, s2^2): (m1 - m2)^2 + (s1 - s2)^2
    fd = frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([-2.0]), np.array([[0.25]]))
    assert fd == pytest.approx(3.0**2 + (2.0 - 0.5) ** 2, rel=1e-12)


def test_frechet_diagonal_closed_form():
    s1 = np.array([1.0, 4.0, 9.0, 0.01])
    s2 = np.array([4.0, 1.0, 9.0, 1.0])
    mu1, mu2 = np.array([0.0, 1.0, 2.0, 3.0]), np.array([1.0, 1.0, 0.0, 3.0])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2)
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("c", [0.25, 1.0, 3.0])
def test_frechet_non_diagonal_scaled_covariance(c):
    # C1 = c * C2 (full, non-diagonal): tr((C1 C2)^(1/2)) = sqrt(c) tr(C2), so FD = (1 - sqrt(c))^2 tr(C2)
    rng = np.random.default_rng(1)
    a = rng.standard_normal((5, 5))
    c2 = a @ a.T + 0.1 * np.eye(5)
    mu = rng.standard_normal(5)
    expected = (1 - np.sqrt(c)) ** 2 * np.trace(c2)
    assert frechet_distance(mu, c * c2, mu, c2) == pytest.approx(expected, rel=1e-8, abs=1e-10)


def test_frechet_of_features_grows_with_mean_shift():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((400, 16))
    assert frechet_features(x, x) == pytest.approx(0.0, abs=1e-8)
    previous = 0.0
    for shift in (0.1, 0.5, 1.0, 2.0):
        d = np.full(16, shift)
        fd = frechet_features(x, x + d)
        # the same samples shifted: identical covariance, so the FD is exactly |d|^2
        assert fd == pytest.approx(float(d @ d), rel=1e-6)
        assert fd > previous
        previous = fd


def test_frechet_is_symmetric_and_handles_singular_covariances():
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((10, 32)), rng.standard_normal((12, 32)) + 0.3  # fewer samples than dims
    assert frechet_features(a, b) == pytest.approx(frechet_features(b, a), rel=1e-6)
    assert frechet_features(a, b) > 0


def test_matched_frechet_same_distribution_sits_near_one_and_shift_does_not():
    rng = np.random.default_rng(6)
    d = 8
    centres = [rng.standard_normal(d) * 3 for _ in range(3)]

    def draw(s, n, shift=0.0):
        return centres[s] + shift + rng.standard_normal((n, d))

    sizes = [(200, 600), (64, 30), (64, 12)]  # (generated n, held-out images): m = 200, 30, 12
    ref = [draw(s, 1000) for s in range(3)]
    same = matched_frechet([draw(s, g) for s, (g, _) in enumerate(sizes)],
                           [draw(s, h) for s, (_, h) in enumerate(sizes)], ref)
    shifted = matched_frechet([draw(s, g, shift=1.0) for s, (g, _) in enumerate(sizes)],
                              [draw(s, h) for s, (_, h) in enumerate(sizes)], ref)
    assert [p["m"] for p in same["per_stage"]] == [200, 30, 12]
    assert [p["chunks_generated"] for p in same["per_stage"]] == [1, 2, 5]
    assert [p["chunks_baseline"] for p in same["per_stage"]] == [3, 1, 1]
    assert 0.3 < same["overall"]["ratio"] < 2.0
    assert shifted["overall"]["ratio"] > 3 * same["overall"]["ratio"]
    # a mean shift of 1 in every one of d dims adds about d to each per-stage FD
    for p, q in zip(shifted["per_stage"], same["per_stage"]):
        assert p["generated"] - q["generated"] == pytest.approx(d, rel=0.5)


def test_weighted_moments():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((50, 3))
    mu, cov = moments(x, np.full(50, 7.0))
    np.testing.assert_allclose(mu, x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(cov, np.cov(x, rowvar=False), rtol=1e-10)
    # integer weights move the mean like repeated rows
    w = rng.integers(1, 4, size=50)
    mu_w, _ = moments(x, w.astype(float))
    np.testing.assert_allclose(mu_w, np.repeat(x, w, axis=0).mean(axis=0), rtol=1e-10)


def test_mean_pairwise_distance_against_brute_force():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((20, 7))
    brute = np.mean([np.linalg.norm(x[i] - x[j]) for i in range(20) for j in range(i + 1, 20)])
    assert mean_pairwise_distance(x) == pytest.approx(brute, rel=1e-9)
    assert mean_pairwise_distance(np.repeat(x[:1], 10, axis=0)) == pytest.approx(0.0, abs=1e-6)


def test_pixel_vectors_are_rms_differences():
    a = np.zeros((1, 64, 64), np.uint8)
    b = np.full((1, 64, 64), 255, np.uint8)
    va, vb = pixel_vectors(a, 32), pixel_vectors(b, 32)
    assert va.shape == (1, 32 * 32)
    assert np.linalg.norm(va - vb) == pytest.approx(1.0)  # every pixel differs by the full range


def test_perturb_blur_matches_a_direct_convolution():
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (3, 32, 32), dtype=np.uint8)
    sigma = 1.0
    b = perturb(x, "blur", sigma)
    assert b.dtype == np.uint8 and b.shape == x.shape
    t = np.arange(-3, 4)
    k1 = np.exp(-0.5 * (t / sigma) ** 2)
    k2 = np.outer(k1, k1) / k1.sum() ** 2
    for i, r, c in ((0, 10, 12), (1, 3, 3), (2, 28, 16)):  # interior pixels: no edge handling involved
        direct = float((x[i, r - 3 : r + 4, c - 3 : c + 4].astype(np.float64) * k2).sum())
        assert abs(int(b[i, r, c]) - direct) <= 0.51
    flat = np.full((2, 32, 32), 100, np.uint8)
    assert np.array_equal(perturb(flat, "blur", 1.0), flat)  # reflected edges: a constant image stays constant
    assert b.astype(float).std() < 0.5 * x.astype(float).std()
    assert np.array_equal(perturb(x, "blur", 0.0), x)


def test_perturb_noise_and_contrast():
    flat = np.full((4, 64, 64), 128, np.uint8)
    a, b = perturb(flat, "noise", 0.02, seed=3), perturb(flat, "noise", 0.02, seed=3)
    assert np.array_equal(a, b) and not np.array_equal(a, perturb(flat, "noise", 0.02, seed=4))
    assert a.astype(float).std() == pytest.approx(0.02 * 255, rel=0.05)
    assert abs(a.astype(float).mean() - 128) < 0.2
    x = np.array([[[0, 64, 128, 255]]], np.uint8)
    # (v/255 - 0.5) * 1.1 + 0.5, back to 0..255, rounded and clipped
    expected = [0, round(((64 / 255 - 0.5) * 1.1 + 0.5) * 255), 128, 255]
    assert perturb(x, "contrast", 0.1)[0, 0].tolist() == expected
    with pytest.raises(ValueError, match="unknown perturbation"):
        perturb(x, "sharpen", 1.0)


# ---------------------------------------------------------------- KID

def test_mmd2_unbiased_matches_the_brute_force_sums():
    rng = np.random.default_rng(7)
    x, y = rng.standard_normal((9, 4)), rng.standard_normal((11, 4)) + 0.5
    k = lambda a, b: (a @ b / 4 + 1.0) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(9) for j in range(9) if i != j) / (9 * 8)
    yy = sum(k(y[i], y[j]) for i in range(11) for j in range(11) if i != j) / (11 * 10)
    xy = sum(k(a, b) for a in x for b in y) / (9 * 11)
    assert mmd2_unbiased(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-10)


def test_kid_of_one_distribution_is_zero_within_its_error_and_a_shift_is_not():
    rng = np.random.default_rng(8)
    a, b = rng.standard_normal((600, 16)), rng.standard_normal((600, 16))
    same = kid(a, b, subset_size=200, subsets=20)
    assert abs(same["kid"]) < 3 * same["se"] + 1e-3
    shifted = kid(a, b + 0.5, subset_size=200, subsets=20)
    assert shifted["kid"] > 10 * max(same["se"], 1e-4)
    assert shifted["kid"] - 3 * shifted["se"] > 0
    # unbiased: small subsets of one distribution still centre on zero (a Fréchet distance would not)
    small = kid(a, b, subset_size=10, subsets=200)
    assert abs(small["kid"]) < 3 * small["se"]
    assert small["subset_size"] == 10


# ---------------------------------------------------------------- precision and recall

def test_precision_recall_of_one_distribution_is_near_one():
    rng = np.random.default_rng(9)
    real, gen = rng.standard_normal((400, 8)), rng.standard_normal((400, 8))
    pr = precision_recall(real, gen, k=3)
    assert pr["precision"] > 0.85 and pr["recall"] > 0.85 and pr["k"] == 3


def test_precision_recall_of_a_collapsed_generator_has_low_recall_and_far_samples_low_precision():
    rng = np.random.default_rng(10)
    real = rng.standard_normal((400, 8))
    collapsed = real[:1] + 0.01 * rng.standard_normal((400, 8))  # every sample near one real point
    pr = precision_recall(real, collapsed, k=3)
    assert pr["precision"] > 0.9  # what it makes is realistic ...
    assert pr["recall"] < 0.1  # ... but it covers almost nothing of the real set
    far = precision_recall(real, rng.standard_normal((400, 8)) + 10.0, k=3)
    assert far["precision"] == 0.0 and far["recall"] == 0.0


def test_precision_recall_brute_force_on_a_tiny_case():
    real = np.array([[0.0], [1.0], [2.0], [3.0], [10.0]])
    gen = np.array([[0.5], [2.5], [6.0], [20.0]])
    # k=1 radii: real 1,1,1,1,7; gen 2,2,3.5,14
    pr = precision_recall(real, gen, k=1)
    assert pr["precision"] == pytest.approx(3 / 4)  # 0.5, 2.5 and 6.0 (within 7 of 10) are inside; 20 is not
    assert pr["recall"] == pytest.approx(5 / 5)  # 10 is within 14 of 20
