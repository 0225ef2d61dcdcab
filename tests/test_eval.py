"""cgan-eval: the metrics (closed forms), the reference classifier, and whole evaluations on tiny real data.

The data is a small synthetic set rendered at 32 px; the classifier is trained for a few dozen steps,
which is enough to tell the stages apart clearly better than chance on this set.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cgan.runtime.contract import OASIS_FOLDERS  # noqa: E402
from cgan.train import synth  # noqa: E402
from cgan.train.classifier import (  # noqa: E402
    ClassifierConfig,
    ClassifierError,
    StageClassifier,
    cache_file,
    get_classifier,
    stratified_split,
    train_classifier,
)
from cgan.train.data import ImageSet  # noqa: E402
from cgan.train.eval import (  # noqa: E402
    CALIBRATION,
    EvalConfig,
    Source,
    TorchSource,
    evaluate,
    frechet_distance,
    frechet_features,
    matched_frechet,
    load_source,
    mean_pairwise_distance,
    moments,
    perturb,
    pixel_vectors,
)

K = len(OASIS_FOLDERS)


def _quiet(_msg: str) -> None:
    pass


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # These models are tiny: on a busy shared CPU, torch's intra-op threads mostly wait on each other
    # (a classifier step measured ~17x slower with 2 threads than with 1 while other jobs ran).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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


def test_stratified_split():
    labels = np.repeat(np.arange(4), [100, 40, 10, 3])
    train, held = stratified_split(labels, 0.2, seed=0)
    assert len(np.intersect1d(train, held)) == 0
    assert sorted(np.concatenate([train, held]).tolist()) == list(range(len(labels)))
    assert np.bincount(labels[held], minlength=4).tolist() == [20, 8, 2, 1]
    again, _ = stratified_split(labels, 0.2, seed=0)
    other, _ = stratified_split(labels, 0.2, seed=1)
    assert np.array_equal(train, again)
    assert not np.array_equal(train, other)


# ---------------------------------------------------------------- tiny real data and classifier

def _synthetic(n: int, seed: int) -> ImageSet:
    # one slice per subject: independent images, as the evaluator's by-image split assumes
    images, labels = synth.render_set(n, seed=seed, img_size=32, workers=1, slices_per_subject=1)
    return ImageSet(images=images, labels=labels, class_names=list(OASIS_FOLDERS),
                    description=f"synthetic OASIS-like set (n={n}, seed={seed}, test)")


@pytest.fixture(scope="module")
def real_set() -> ImageSet:
    return _synthetic(800, seed=11)


@pytest.fixture(scope="module")
def other_real_set() -> ImageSet:
    """Unseen real images of the same distribution: a fresh set with another seed."""
    return _synthetic(400, seed=12)


CLF_CONFIG = ClassifierConfig(input_size=32, epochs=4, batch_size=32, lr=3e-3)


@pytest.fixture(scope="module")
def classifier(real_set) -> StageClassifier:
    torch.manual_seed(0)
    return train_classifier(real_set, CLF_CONFIG, device="cpu", log=_quiet)


class RealSource(Source):
    """A 'generator' that returns real images of the asked stage (stage-faithful by construction)."""

    def __init__(self, image_set: ImageSet) -> None:
        self.set = image_set
        self.description, self.kind = "real images", "test"
        self.img_size = image_set.images.shape[-1]
        self.num_classes = len(image_set.class_names)
        self.stage_names = tuple(image_set.class_names)

    def generate(self, stage: int, n: int, seed: int) -> np.ndarray:
        idx = np.flatnonzero(self.set.labels == stage)
        idx = np.random.default_rng(seed).choice(idx, size=n, replace=len(idx) < n)
        return np.asarray(self.set.images[idx])


class NoiseSource(RealSource):
    """Uniform noise images: nothing like a brain slice."""

    def generate(self, stage: int, n: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng([seed, stage])
        return rng.integers(0, 256, size=(n, self.img_size, self.img_size), dtype=np.uint8)


def _stage_blind_generator():
    """A 32-px Generator whose label embedding is the same for every stage, so it ignores the stage."""
    from cgan.train.models import Generator

    torch.manual_seed(0)
    g = Generator(img_size=32, width=64)
    with torch.no_grad():
        for m in g.modules():
            if isinstance(m, torch.nn.ConvTranspose2d):
                m.weight.normal_(0.0, 0.1)  # images that span the output range
            elif isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
        g.label_emb.weight.copy_(g.label_emb.weight[0:1].expand_as(g.label_emb.weight))
    return g.eval()


@pytest.mark.slow
def test_classifier_beats_chance_on_held_out(classifier):
    held = classifier.metrics["held_out"]
    assert held["balanced_accuracy"] > 0.5  # chance is 0.25
    m = np.asarray(held["confusion"])
    assert m.sum() == classifier.metrics["n_held_out"]


@pytest.mark.slow
def test_classifier_round_trip_and_cache(tmp_path, real_set, classifier):
    path = classifier.save(tmp_path / "clf.pt")
    loaded = StageClassifier.load(path)
    x = np.asarray(real_set.images[:16])
    np.testing.assert_allclose(loaded.embed(x)[1], classifier.embed(x)[1], rtol=1e-5, atol=1e-5)
    assert loaded.metrics["held_out"]["accuracy"] == classifier.metrics["held_out"]["accuracy"]

    # get_classifier: trains and caches once per (dataset, config), then reuses the file
    cfg = ClassifierConfig(input_size=32, epochs=1, max_steps=2, batch_size=16)
    logs: list[str] = []
    first = get_classifier(real_set, cfg, cache_dir=tmp_path, device="cpu", log=logs.append)
    cached = cache_file(tmp_path, real_set, cfg)
    assert cached.is_file() and first.path == cached
    stamp = cached.stat().st_mtime_ns
    second = get_classifier(real_set, cfg, cache_dir=tmp_path, device="cpu", log=logs.append)
    assert cached.stat().st_mtime_ns == stamp
    assert any(line.startswith("using the reference classifier") for line in logs)
    np.testing.assert_array_equal(second.predict(x), first.predict(x))
    # another config is another file
    assert cache_file(tmp_path, real_set, ClassifierConfig(input_size=32, epochs=2)) != cached


def test_classifier_refuses_foreign_files(tmp_path):
    bad = tmp_path / "not_a_classifier.pt"
    torch.save({"model": {}}, bad)
    with pytest.raises(ClassifierError, match="not a cgan-eval classifier"):
        StageClassifier.load(bad)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(ClassifierError, match="corrupt"):
        StageClassifier.load(junk)


# ---------------------------------------------------------------- whole evaluations

def _eval(tmp_path, source, real_set, classifier, n=48, **kw):
    config = EvalConfig(n=n, seed=0, out=tmp_path / "eval", device="cpu", **kw)
    return evaluate(config, source=source, image_set=real_set, classifier=classifier, log=_quiet).report


@pytest.mark.slow
def test_real_vs_real_sits_near_the_baseline_and_noise_does_not(tmp_path, real_set, other_real_set, classifier):
    real = _eval(tmp_path / "real", RealSource(other_real_set), real_set, classifier)
    noise = _eval(tmp_path / "noise", NoiseSource(other_real_set), real_set, classifier)
    r, z = real["frechet"]["overall"], noise["frechet"]["overall"]
    assert r["ratio"] < 2.0
    assert z["ratio"] > 10 * r["ratio"]
    assert z["generated"] > 10 * r["generated"]
    # unseen real images are classified about as well as the held-out ones (the ceiling)
    assert real["conditional_accuracy"]["overall"] > real["classifier"]["held_out"]["balanced_accuracy"] - 0.2
    assert real["conditional_accuracy"]["overall"] > 0.5
    # real diversity matches real diversity (on stages with enough held-out images to say)
    enough = [s for s, p in enumerate(real["frechet"]["per_stage"]) if p["m"] >= 20]
    assert enough
    for space in ("feature", "pixel"):
        ratios = real["diversity"][space]["ratio"]
        assert all(0.6 < ratios[s] < 1.6 for s in enough), (space, ratios)
    # the calibration rows: degraded real images score worse than unseen real ones, more so the stronger
    # the blur; and the markdown report shows them beside the model's ratio
    calib = {(row["kind"], row["amount"]): row["ratio"] for row in real["frechet"]["calibration"]["rows"]}
    assert set(calib) == {(kind, amount) for kind, amount, _ in CALIBRATION}
    assert calib[("blur", 1.0)] > calib[("blur", 0.5)]
    assert calib[("blur", 1.0)] > 2 * r["ratio"]
    md = (tmp_path / "real" / "eval" / "report.md").read_text()
    assert "## What an FD ratio means on this data" in md and "Gaussian blur, sigma 1 px" in md
    # noise is nothing like the real images: one predicted stage for all of it
    assert noise["conditional_accuracy"]["overall"] < 0.5
    for c in real["passes_bar"]["criteria"]:
        if c["name"] == "n_per_stage":
            assert not c["met"]  # n=48 is below the bar's 256
    assert not real["passes_bar"]["all_met"]


@pytest.mark.slow
def test_stage_blind_generator_scores_chance(tmp_path, real_set, classifier):
    """An exported Generator with equal label embeddings makes the same images for every stage:
    every confusion row is the same, so the conditional accuracy is exactly 1/K."""
    from cgan.export.api import export_generator
    from cgan.runtime import load

    onnx_path = tmp_path / "blind.onnx"
    export_generator(_stage_blind_generator(), onnx_path, model_card=False, provenance={"training_data": "none (test)"})
    n = 40
    source = load_source(onnx_path, device="cpu")
    assert source.kind == "onnx" and load(onnx_path).info.img_size == 32
    report = _eval(tmp_path, source, real_set, classifier, n=n)
    cm = np.asarray(report["conditional_accuracy"]["confusion"])
    assert cm.shape == (K, K)
    assert cm.sum(axis=1).tolist() == [n] * K
    assert all(np.array_equal(cm[0], row) for row in cm)
    assert report["conditional_accuracy"]["overall"] == pytest.approx(1.0 / K)
    assert not report["passes_bar"]["all_met"]
    # the report files
    out = tmp_path / "eval"
    data = json.loads((out / "report.json").read_text())
    assert data["conditional_accuracy"]["confusion"] == cm.tolist()
    assert {c["name"] for c in data["passes_bar"]["criteria"]} >= {
        "real_held_out_accuracy", "conditional_accuracy_overall", "conditional_accuracy_min_stage",
        "fd_ratio_overall", "diversity_ratio_min"}
    md = (out / "report.md").read_text()
    assert "| stage |" in md and "Confusion matrix" in md and "samples.png" in md
    from PIL import Image

    with Image.open(out / "samples.png") as im:
        assert im.mode == "L" and im.size[1] > K * 32


@pytest.mark.slow
def test_checkpoint_and_onnx_generate_the_same_images(tmp_path):
    """A .pth checkpoint goes through torch and an .onnx through the runtime; both follow the seed contract."""
    from cgan.export.api import export_generator

    g = _stage_blind_generator()
    g.label_emb.weight.data.normal_()  # stage-dependent again
    ckpt = tmp_path / "gen.pth"
    torch.save({"model": g.state_dict(), "z_dim": 100, "num_classes": 4, "img_size": 32}, ckpt)
    export_generator(g, tmp_path / "gen.onnx", model_card=False, provenance={"training_data": "none (test)"})
    a = load_source(ckpt, device="cpu")
    b = load_source(tmp_path / "gen.onnx", device="cpu")
    assert isinstance(a, TorchSource) and a.img_size == b.img_size == 32
    for stage in (0, 3):
        x, y = a.generate(stage, 6, seed=5).astype(int), b.generate(stage, 6, seed=5).astype(int)
        assert np.abs(x - y).max() <= 1


@pytest.mark.slow
def test_markers_on_the_synthetic_set(tmp_path, real_set, other_real_set, classifier):
    report = _eval(tmp_path, RealSource(other_real_set), real_set, classifier, n=32, markers=True)
    markers = report["markers"]
    for name in synth.MARKER_NAMES:
        row = markers[name]
        assert len(row["generated_mean"]) == K and len(row["real_std"]) == K
        # real images against real images: no marker is off by more than a real standard deviation
        assert all(abs(d) < 1.0 for d in row["effect_size"]), (name, row["effect_size"])
    # the markers follow the stages on real images: ventricles grow from stage 0 to stage 3
    assert markers["ventricle_fraction"]["real_mean"][3] > markers["ventricle_fraction"]["real_mean"][0]
    assert "Atrophy markers" in (tmp_path / "eval" / "report.md").read_text()
