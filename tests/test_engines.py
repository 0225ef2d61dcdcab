"""The engines: OpenVINO (an extra) gives ONNX Runtime's images from the same file and noise; auto's rule; errors."""

from __future__ import annotations

import sys
import threading

import numpy as np
import pytest

from _cli import call_main
from _models import model_file
from cgan.runtime import load
from cgan.runtime.cli import main as run_main
from cgan.runtime.contract import noise
from cgan.runtime.engines import OPENVINO_MIN_IMAGES, EngineError, choose_engine, openvino_installed

needs_openvino = pytest.mark.skipif(not openvino_installed(), reason="openvino is not installed (the [openvino] extra)")


@pytest.fixture(scope="module")
def engines():
    pytest.importorskip("openvino")
    return load(model_file("gen32"), engine="onnxruntime"), load(model_file("gen32"), engine="openvino")


def test_choose_engine_rule():
    assert choose_engine("onnxruntime", "auto") == "onnxruntime"
    assert choose_engine("auto", "cuda") == "onnxruntime"  # OpenVINO is CPU-only here
    assert choose_engine("auto", "cpu", OPENVINO_MIN_IMAGES - 1) == "onnxruntime"  # start-up costs more than it saves
    assert choose_engine("auto", "cpu", latency=True) == "onnxruntime"
    want = "openvino" if openvino_installed() else "onnxruntime"
    assert choose_engine("auto", "cpu") == want
    assert choose_engine("auto", "auto", OPENVINO_MIN_IMAGES, cuda_available=False) == want
    assert choose_engine("AUTO", "auto", cuda_available=True) == "onnxruntime"
    with pytest.raises(EngineError, match="unknown engine 'tensorflow'; expected one of auto, onnxruntime, openvino"):
        choose_engine("tensorflow")
    with pytest.raises(EngineError, match="CPU only"):
        choose_engine("openvino", "cuda")


def test_openvino_missing_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # what an interpreter without the package sees
    assert not openvino_installed()
    assert choose_engine("auto", "cpu") == "onnxruntime"
    with pytest.raises(EngineError, match=r"pip install 'dementia-cgan\[openvino\]'"):
        load(model_file("gen32"), engine="openvino")


@needs_openvino
@pytest.mark.parametrize("batch", [1, 7, 64])
def test_openvino_gives_onnxruntime_images_within_one_grey_level(engines, batch):
    ort_gen, ov_gen = engines
    assert ov_gen.engine == "openvino" and ort_gen.engine == "onnxruntime"
    for stage in range(4):
        for _ in range(2):  # the second call of a batch size runs the static-shape compilation
            a = ort_gen.generate_float(stage=stage, n=batch, seed=11, start=3)
            b = ov_gen.generate_float(stage=stage, n=batch, seed=11, start=3)
            assert a.shape == b.shape == (batch, 1, 32, 32)
            assert np.abs(a - b).max() <= 1e-5
            grey = np.abs(ort_gen.to_uint8(a).astype(np.int16) - ov_gen.to_uint8(b).astype(np.int16))
            assert grey.max() <= 1
            assert np.ptp(a) > 0.3  # images with content: the comparison is not vacuous


@needs_openvino
def test_openvino_image_k_does_not_depend_on_the_batch_size_and_calls_may_overlap(engines):
    _, ov_gen = engines
    whole = ov_gen.generate(stage=2, n=20, seed=4)
    split = ov_gen.generate(stage=2, n=20, seed=4, batch_size=6)
    assert np.abs(whole.astype(np.int16) - split).max() <= 1
    z = noise(4, 0, 5, 100)
    serial = ov_gen._session.run(z, np.full(5, 1, dtype=np.int64))
    results, errors = [], []

    def work():
        try:
            results.append(ov_gen._session.run(z, np.full(5, 1, dtype=np.int64)))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 4
    for got in results:
        np.testing.assert_array_equal(got, serial)


@needs_openvino
def test_cgan_run_prints_the_engine_and_both_engines_write_the_same_pngs(tmp_path):
    from PIL import Image

    pngs = {}
    for engine in ("onnxruntime", "openvino"):
        out = tmp_path / engine
        res = call_main(run_main, ["--model", str(model_file("gen32")), "--engine", engine, "--n", "3", "--stage", "1", "--out", str(out)])
        assert res.exit_code == 0, res.stderr
        assert f"engine: {engine} " in res.stderr and f"engine={engine}" in res.stdout
        pngs[engine] = [np.asarray(Image.open(p)).astype(np.int16) for p in sorted(out.iterdir())]
    assert len(pngs["openvino"]) == 3
    for a, b in zip(pngs["onnxruntime"], pngs["openvino"]):
        assert np.abs(a - b).max() <= 1


def test_cgan_run_refuses_an_unknown_engine_in_one_line(tmp_path):
    res = call_main(run_main, ["--model", str(model_file("gen32")), "--engine", "tpu", "--out", str(tmp_path / "o")])
    assert res.exit_code == 1
    assert res.stderr.strip() == "error: unknown engine 'tpu'; expected one of auto, onnxruntime, openvino"
    assert not (tmp_path / "o").exists()


@needs_openvino
def test_openvino_refuses_a_file_that_is_not_a_model_in_one_line(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_text("not a model\n")
    res = call_main(run_main, ["--model", str(bad), "--engine", "openvino", "--out", str(tmp_path / "o")])
    assert res.exit_code == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "not a readable ONNX model for OpenVINO" in lines[0]
