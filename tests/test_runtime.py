"""The runtime's Python API on a real exported model: load, generate, determinism, threads, providers, errors."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np
import onnxruntime as ort
import pytest

from _models import TRAINING_DATA, model_file
from cgan.runtime import ModelError, OnnxGenerator, StageError, load
from cgan.runtime.api import GenerateError
from cgan.runtime.contract import STAGE_NAMES, Key, noise, to_uint8
from cgan.runtime.resolve import EMBEDDED_DEFAULT, LAST_EXPORT, MODEL_FILE, parse_hub_spec, resolve_model
from cgan.runtime.session import CPU, CUDA, ProviderError, choose_providers

# Determinism tolerance across batch sizes (CPU): float32 outputs within 1e-5 absolute, uint8 pixels
# within 1 level (a float difference can only matter at a rounding boundary), and at least 99.9 % identical.
FLOAT_ATOL = 1e-5
MIN_IDENTICAL = 0.999


@pytest.fixture(scope="module")
def gen() -> OnnxGenerator:
    return load(model_file("gen32"), provider="cpu", engine="onnxruntime")  # ONNX Runtime's session (test_engines.py: OpenVINO)


def test_load_reads_the_model_contract(gen):
    assert gen.info.img_size == 32 and gen.info.num_classes == 4 and gen.info.z_dim == 100
    assert gen.info.stage_names == STAGE_NAMES
    assert gen.info.provenance[Key.TRAINING_DATA] == TRAINING_DATA
    assert gen.provider == CPU
    assert gen.path == model_file("gen32")
    line = gen.describe()
    assert str(model_file("gen32")) in line and TRAINING_DATA in line and CPU in line


def test_generate_gives_uint8_images_at_the_model_size(gen):
    images = gen.generate(stage=2, n=16, seed=0)
    assert images.shape == (16, 32, 32) and images.dtype == np.uint8
    assert images.max() > images.min()  # not a constant image
    floats = gen.generate_float(stage=2, n=16, seed=0)
    assert floats.shape == (16, 1, 32, 32) and floats.dtype == np.float32
    assert floats.min() >= -1.0 and floats.max() <= 1.0
    np.testing.assert_array_equal(images, to_uint8(floats)[:, 0])


def test_stage_by_name_and_stage_changes_the_image(gen):
    np.testing.assert_array_equal(gen.generate(stage="mild", n=4), gen.generate(stage=2, n=4))
    np.testing.assert_array_equal(gen.generate(stage="VERY MILD", n=4), gen.generate(stage=1, n=4))
    assert not np.array_equal(gen.generate(stage=0, n=4), gen.generate(stage=3, n=4))
    assert not np.array_equal(gen.generate(stage=0, n=4, seed=0), gen.generate(stage=0, n=4, seed=1))


@pytest.mark.parametrize("stage", [0, 3])
def test_same_images_whatever_the_batch_size(gen, stage):
    ref = gen.generate_float(stage=stage, n=64, seed=5, batch_size=64)
    for bs in (1, 7):
        other = gen.generate_float(stage=stage, n=64, seed=5, batch_size=bs)
        np.testing.assert_allclose(other, ref, rtol=0, atol=FLOAT_ATOL)
        a, b = to_uint8(other), to_uint8(ref)
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
        assert (a == b).mean() >= MIN_IDENTICAL


def test_image_k_depends_only_on_seed_stage_and_k(gen):
    whole = gen.generate(stage=1, n=20, seed=3, batch_size=8)
    parts = np.concatenate([gen.generate(stage=1, n=6, seed=3, start=0, batch_size=4), gen.generate(stage=1, n=14, seed=3, start=6, batch_size=5)])
    np.testing.assert_array_equal(parts, whole)
    for k in (0, 7, 19):
        np.testing.assert_array_equal(gen.generate(stage=1, n=1, seed=3, start=k)[0], whole[k])


def test_batches_follow_the_noise_contract(gen):
    batches = list(gen.batches(0, 10, seed=2, start=4, batch_size=4))
    assert [b.start for b in batches] == [4, 8, 12] and [len(b.images) for b in batches] == [4, 4, 2]
    # the model on the contract's noise rows, run directly in onnxruntime
    session = ort.InferenceSession(str(model_file("gen32")), providers=["CPUExecutionProvider"])
    (direct,) = session.run(["image"], {"z": noise(2, 4, 10, 100), "stage": np.zeros(10, dtype=np.int64)})
    np.testing.assert_allclose(np.concatenate([b.images for b in batches]), direct, rtol=0, atol=FLOAT_ATOL)


def test_concurrent_generate_from_threads_matches_serial(gen):
    jobs = [(stage, seed) for stage in range(4) for seed in range(3)]
    serial = {job: gen.generate(stage=job[0], n=9, seed=job[1], batch_size=4) for job in jobs}
    results: dict = {}
    errors: list = []

    def work(job):
        try:
            results[job] = gen.generate(stage=job[0], n=9, seed=job[1], batch_size=4)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(job,)) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for job in jobs:
        np.testing.assert_array_equal(results[job], serial[job])


def test_io_binding_path_equals_plain_run(gen):
    """The GPU code path (IO binding into the caller's buffer) run on the CPU provider."""
    session = gen._session
    z = noise(0, 0, 7, 100)
    stages = np.arange(7, dtype=np.int64) % 4
    out = np.full((7, 1, 32, 32), 5.0, dtype=np.float32)
    returned = session.run_bound(z, stages, out)
    assert returned is out
    np.testing.assert_allclose(out, session.run(z, stages), rtol=0, atol=FLOAT_ATOL)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(stage=4), "out of range"),
        (dict(stage=-1), "out of range"),
        (dict(stage="severe"), "unknown stage"),
    ],
)
def test_bad_stage(gen, kwargs, words):
    with pytest.raises(StageError, match=words):
        gen.generate(n=1, **kwargs)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(n=0), "n must be >= 1"),
        (dict(n=-3), "n must be >= 1"),
        (dict(n=2, batch_size=0), "batch size must be >= 1"),
        (dict(n=2, seed=-1), "seed must be >= 0"),
        (dict(n=2, start=-1), "start must be >= 0"),
        (dict(n=2.5), "n must be an integer"),
    ],
)
def test_bad_counts(gen, kwargs, words):
    with pytest.raises(GenerateError, match=words):
        gen.generate(stage=0, **kwargs)


@pytest.mark.parametrize(
    "kind, words",
    [
        ("not_onnx", "not a readable ONNX model"),
        ("truncated", "not a readable ONNX model"),
        ("no_metadata", "lacks the dementia-cgan metadata"),
        ("bad_inputs", "has inputs .*the contract needs exactly"),
    ],
)
def test_bad_model_files(kind, words):
    with pytest.raises(ModelError, match=words):
        load(model_file(kind), provider="cpu")


def test_missing_model_and_directory(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load(tmp_path / "nope.onnx")
    with pytest.raises(ModelError, match="is a directory"):
        load(tmp_path)


def test_resolution_prefers_the_last_export(tmp_path):
    (tmp_path / LAST_EXPORT).parent.mkdir(parents=True)
    (tmp_path / LAST_EXPORT).write_bytes(model_file("gen32").read_bytes())
    resolved = resolve_model(None, cwd=tmp_path)
    assert resolved.kind == "last-export" and resolved.path == tmp_path / LAST_EXPORT
    gen = load(cwd=tmp_path, provider="cpu")
    assert "last export" in gen.source and gen.info.img_size == 32
    # an explicit model wins over the last export
    assert resolve_model(model_file("gen32"), cwd=tmp_path).kind == "path"


def test_resolution_falls_back_to_the_embedded_default(tmp_path):
    if EMBEDDED_DEFAULT.is_file():
        resolved = resolve_model(None, cwd=tmp_path)
        assert resolved.kind == "embedded" and resolved.path == EMBEDDED_DEFAULT
        assert load(cwd=tmp_path, provider="cpu").info.provenance.get(Key.TRAINING_DATA)
    else:
        with pytest.raises(ModelError, match="no embedded default model"):
            resolve_model(None, cwd=tmp_path)


@pytest.mark.parametrize(
    "text, repo, filename, revision",
    [
        ("hf:alice/cgan", "alice/cgan", MODEL_FILE, None),
        ("hf:alice/cgan/models/g.onnx", "alice/cgan", "models/g.onnx", None),
        ("hf:alice/cgan@v1/g.onnx", "alice/cgan", "g.onnx", "v1"),
    ],
)
def test_hub_spec(text, repo, filename, revision):
    spec = parse_hub_spec(text)
    assert (spec.repo_id, spec.filename, spec.revision) == (repo, filename, revision)


@pytest.mark.parametrize("text", ["hf:", "hf:alice", "hf:/cgan", "hf:alice/cgan@"])
def test_bad_hub_spec(text):
    with pytest.raises(ModelError, match="hf:OWNER/REPO"):
        parse_hub_spec(text)


# ---------------------------------------------------------------- providers

def test_provider_choice():
    assert choose_providers("auto", [CPU]) == [CPU]
    assert choose_providers("auto", [CUDA, CPU]) == [CUDA, CPU]
    assert choose_providers("cuda", [CUDA, CPU]) == [CUDA, CPU]
    assert choose_providers("CPU", [CUDA, CPU]) == [CPU]
    assert choose_providers("cudaexecutionprovider", [CUDA, CPU]) == [CUDA, CPU]
    assert choose_providers("CUDAExecutionProvider", [CUDA, CPU]) == [CUDA, CPU]


@pytest.mark.parametrize("name", ["cuda", "tensorrt", "nonsense"])
def test_unavailable_provider_lists_the_available_ones(name):
    with pytest.raises(ProviderError, match="available: .*cpu \\(CPUExecutionProvider\\)"):
        choose_providers(name, [CPU])


def test_load_with_an_unavailable_provider():
    missing = next(p for p in (CUDA, "TensorrtExecutionProvider", "NoSuchExecutionProvider") if p not in ort.get_available_providers())
    with pytest.raises(ProviderError, match="not available"):
        load(model_file("gen32"), provider=missing)


def test_threads_option(gen):
    one = load(model_file("gen32"), provider="cpu", threads=1)
    assert "1 threads" in one.describe()
    np.testing.assert_allclose(one.generate_float(1, 8), gen.generate_float(1, 8), rtol=0, atol=FLOAT_ATOL)


@pytest.mark.cuda
@pytest.mark.skipif(CUDA not in ort.get_available_providers(), reason="needs CUDAExecutionProvider (onnxruntime-gpu and a GPU)")
def test_cuda_matches_cpu(gen):
    cuda = load(model_file("gen32"), provider="cuda")
    assert cuda.provider == CUDA and cuda._session.device == "cuda"
    assert cuda.default_batch_size > gen.default_batch_size
    for bs in (1, 7, 64):
        got = cuda.generate_float(stage=2, n=64, seed=1, batch_size=bs)
        np.testing.assert_allclose(got, gen.generate_float(stage=2, n=64, seed=1), rtol=0, atol=1e-3)
    assert cuda.generate(stage=2, n=16).dtype == np.uint8


def test_import_is_light():
    """`import cgan.runtime` loads neither onnxruntime nor huggingface_hub (they come with the first model)."""
    code = "import sys, cgan.runtime; print(sorted(m for m in ('onnxruntime', 'huggingface_hub', 'PIL', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ), check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("shape", [(32, 32), (17, 5), (8, 9, 3), (6, 4, 4), (5, 7, 2)])
def test_png_encoder_round_trips(shape):
    """cgan-run's own PNG encoder: PIL decodes the same pixels and the text chunks."""
    import io

    from PIL import Image

    from cgan.runtime.writers import png_bytes

    pixels = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
    data = png_bytes(pixels, {"Comment": "synthetic", "cgan.index": "42"})
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        assert im.mode == {2: "L", 3: {2: "LA", 3: "RGB", 4: "RGBA"}.get(shape[-1])}[len(shape)]
        np.testing.assert_array_equal(np.asarray(im), pixels)
        assert im.text == {"Comment": "synthetic", "cgan.index": "42"}


def test_npy_writer_abort_leaves_nothing(tmp_path):
    from cgan.runtime.writers import NpyStackWriter

    target = tmp_path / "stack.npy"
    writer = NpyStackWriter(target, (4, 1, 2, 2), {"stage": 0})
    writer.write(0, np.ones((2, 1, 2, 2), dtype=np.float32))
    writer.abort()
    assert list(tmp_path.iterdir()) == []
    writer = NpyStackWriter(target, (2, 1, 2, 2), {"stage": 0})
    writer.write(0, np.full((2, 1, 2, 2), 0.5, dtype=np.float32))
    writer.finish()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stack.json", "stack.npy"]
    np.testing.assert_array_equal(np.load(target), np.full((2, 1, 2, 2), 0.5, dtype=np.float32))


def test_png_writer_reports_a_failed_write(tmp_path):
    from cgan.runtime.errors import OutputError
    from cgan.runtime.writers import PngWriter

    pixels = np.zeros((3, 8, 8), dtype=np.uint8)
    writer = PngWriter(workers=1)  # one thread: the first batch is done before the second fails
    writer.submit(pixels, [tmp_path / f"{i}.png" for i in range(3)])
    writer.submit(pixels, [tmp_path / "missing-dir" / f"{i}.png" for i in range(3)])
    with pytest.raises(OutputError, match="cannot write .*missing-dir"):
        writer.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0.png", "1.png", "2.png"]  # and no temporary files
    with pytest.raises(OutputError):  # the error stays: no further batches are taken
        writer.submit(pixels, [tmp_path / "late.png"])
