"""cgan.export: checkpoints of every accepted format -> validated ONNX that reproduces torch; every refusal writes nothing."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto

from cgan.export.api import ExportReport, export_checkpoint, export_generator, load_generator
from cgan.export.errors import ArchitectureError, CheckpointError, ExportError, OpsetError, ValidationError
from cgan.export.onnx_export import DEFAULT_OPSET, MIN_OPSET, opset_range
from cgan.runtime.contract import DISCLAIMER, STAGE_NAMES, Key, read_metadata
from cgan.train.models import Generator, GeneratorConfig, ProjectionDiscriminator, count_parameters

from conftest import _BLOCK_TORCH

SMALL = GeneratorConfig(z_dim=16, num_classes=4, img_size=32, width=64)


def fresh_generator(config: GeneratorConfig = SMALL, seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    return Generator(config)


def trained_generator(config: GeneratorConfig = SMALL, steps: int = 6) -> Generator:
    """A few Adam steps on random targets in train mode: weights move and BatchNorm stats become non-trivial."""
    g = fresh_generator(config, seed=1)
    opt = torch.optim.Adam(g.parameters(), lr=2e-3, betas=(0.5, 0.999))
    rng = torch.Generator().manual_seed(2)
    g.train()
    for _ in range(steps):
        z = torch.randn(16, config.z_dim, generator=rng)
        labels = torch.randint(0, config.num_classes, (16,), generator=rng)
        target = torch.rand(16, config.channels, config.img_size, config.img_size, generator=rng) * 2 - 1
        loss = torch.nn.functional.mse_loss(g(z, labels), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return g


def save_seed_format(g: Generator, path: Path, **extra) -> Path:
    """The original's dict keys (model, z_dim, num_classes, img_size) plus optional keys of ours."""
    cfg = g.config
    torch.save({"model": g.state_dict(), "z_dim": cfg.z_dim, "num_classes": cfg.num_classes, "img_size": cfg.img_size, **extra}, path)
    return path


def torch_images(g: Generator, z: np.ndarray, stages: np.ndarray) -> np.ndarray:
    g = g.eval()
    with torch.no_grad():
        return g(torch.from_numpy(z), torch.from_numpy(stages)).numpy()


def onnx_max_err(path: Path, g: Generator, batch_sizes=(1, 3, 64), seed: int = 123) -> float:
    """Our own comparison (not the exporter's): onnxruntime vs torch eval at several batch sizes, all stages."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    cfg = g.config
    worst = 0.0
    for n in batch_sizes:
        for offset in range(cfg.num_classes if n < cfg.num_classes else 1):
            stages = ((np.arange(n) + offset) % cfg.num_classes).astype(np.int64)
            z = rng.standard_normal((n, cfg.z_dim), dtype=np.float32)
            (got,) = session.run(["image"], {"z": z, "stage": stages})
            assert got.shape == (n, cfg.channels, cfg.img_size, cfg.img_size)
            assert got.dtype == np.float32
            worst = max(worst, float(np.abs(got - torch_images(g, z, stages)).max()))
    return worst


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.fixture(scope="module")
def fresh_export(tmp_path_factory) -> tuple[Generator, ExportReport]:
    g = fresh_generator()
    out = tmp_path_factory.mktemp("fresh") / "gen.onnx"
    return g, export_generator(g, out, provenance={"training_data": "none (freshly initialised)", "epochs": 0})


@pytest.fixture(scope="module")
def trained_export(tmp_path_factory) -> tuple[Generator, Path, ExportReport]:
    g = trained_generator()
    folder = tmp_path_factory.mktemp("trained")
    ckpt = save_seed_format(
        g,
        folder / "cDCGAN_generator.pth",
        config=g.config.to_dict(),
        provenance={"training_data": "random targets (test)", "epochs": "1", "steps": "6", "seed": "2"},
        ema=False,
    )
    return g, ckpt, export_checkpoint(ckpt, folder / "out" / "cDCGAN_generator.onnx")


# ---------------------------------------------------------------- round trips


def test_fresh_generator_round_trip_matches_torch_at_batch_1_3_64(fresh_export):
    g, report = fresh_export
    assert report.path.is_file()
    assert report.max_abs_err <= 1e-4
    assert onnx_max_err(report.path, g) <= 1e-4


def test_trained_generator_with_real_batchnorm_stats_round_trip(trained_export):
    g, _, report = trained_export
    bn = g.net[1]
    # the folding is exercised only if the running statistics are far from their initial 0 / 1
    assert bn.running_mean.abs().max() > 1e-3 and (bn.running_var - 1).abs().max() > 1e-3
    assert g.training, "export must not switch the caller's module to eval mode"
    err = onnx_max_err(report.path, g)
    assert err <= 1e-4
    # train-mode BatchNorm (batch statistics) would give other images: the graph really is eval mode
    z = np.random.default_rng(5).standard_normal((8, SMALL.z_dim), dtype=np.float32)
    stages = np.arange(8, dtype=np.int64) % 4
    with torch.no_grad():
        train_mode = g.train()(torch.from_numpy(z), torch.from_numpy(stages)).numpy()
    session = ort.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"z": z, "stage": stages})
    assert np.abs(got - train_mode).max() > 100 * max(err, 1e-6)


def test_graph_is_inference_only_standard_and_self_contained(fresh_export):
    _, report = fresh_export
    model = onnx.load(str(report.path), load_external_data=False)
    onnx.checker.check_model(model, full_check=True)
    ops = {n.op_type for n in model.graph.node}
    assert "BatchNormalization" not in ops and "ConvTranspose" in ops
    assert {o.domain for o in model.opset_import} <= {"", "ai.onnx"}
    assert {n.domain for n in model.graph.node} <= {"", "ai.onnx"}
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [DEFAULT_OPSET]
    assert all(init.data_location != TensorProto.EXTERNAL for init in model.graph.initializer)
    assert not list(report.path.parent.glob("*.data"))

    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)

    def sig(v):
        t = v.type.tensor_type
        return v.name, t.elem_type, [d.dim_value if d.HasField("dim_value") else d.dim_param for d in t.shape.dim]

    (z, stage), (image,) = [sig(v) for v in inferred.graph.input], [sig(v) for v in inferred.graph.output]
    batch = z[2][0]
    assert isinstance(batch, str) and batch, "batch dimension must be symbolic"
    assert z == ("z", TensorProto.FLOAT, [batch, SMALL.z_dim])
    assert stage == ("stage", TensorProto.INT64, [batch])
    assert image == ("image", TensorProto.FLOAT, [batch, 1, SMALL.img_size, SMALL.img_size])


def test_metadata_contract_and_provenance(trained_export):
    _, ckpt, report = trained_export
    info = read_metadata(report.path)
    assert info == report.info
    assert (info.z_dim, info.num_classes, info.img_size, info.channels) == (16, 4, 32, 1)
    assert info.stage_names == STAGE_NAMES and info.precision == "fp32"
    prov = info.provenance
    assert prov[Key.CHECKPOINT_SHA256] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert prov[Key.TRAINING_DATA] == "random targets (test)"
    assert (prov[Key.EPOCHS], prov[Key.STEPS], prov["cgan.seed"]) == ("1", "6", "2")
    assert prov[Key.OPSET] == "17"
    assert float(prov[Key.PARITY_MAX_ABS_ERR]) == pytest.approx(report.max_abs_err, rel=1e-3)
    assert float(prov[Key.PARITY_TOLERANCE]) == 1e-4
    for key in (Key.CREATED, Key.EXPORTED, Key.TOOL_VERSION):
        assert prov[key]
    assert prov[Key.PARITY_PROVIDERS] == "CPUExecutionProvider"


def test_metadata_readable_by_runtime_without_torch(fresh_export):
    _, report = fresh_export
    code = _BLOCK_TORCH + (
        "import json, sys\n"
        "from cgan.runtime import read_metadata\n"
        f"info = read_metadata({str(report.path)!r})\n"
        "print(json.dumps({'info': info.as_dict(), 'torch': 'torch' in sys.modules}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["torch"] is False
    assert out["info"] == json.loads(json.dumps(report.info.as_dict()))


def test_model_card_beside_the_model(fresh_export):
    _, report = fresh_export
    assert report.card_path == report.path.parent / (report.path.stem + ".README.md")
    text = report.card_path.read_text()
    front = text.split("---")[1]
    assert "license: mit" in front and "library_name: onnx" in front and "tags:" in front
    assert DISCLAIMER in text
    for name in STAGE_NAMES:
        assert name in text
    assert f"cgan-run --model {report.path.name}" in text
    assert "onnxruntime" in text and report.info.provenance[Key.PARITY_MAX_ABS_ERR] in text


def test_card_names_the_checkpoint_a_fine_tuned_model_started_from(fresh_export, tmp_path):
    g, _ = fresh_export
    report = export_generator(g, tmp_path / "m.onnx", tolerance=1.0, provenance={
        "steps": "40", "init_from": "ckpt_000003000.pt (step 3000 of a run seeded 42)"})
    assert report.info.provenance[Key.INIT_FROM].startswith("ckpt_000003000.pt")
    assert "| steps | 40, fine-tuned from ckpt_000003000.pt (step 3000 of a run seeded 42) |" in report.card_path.read_text()
    plain = export_generator(g, tmp_path / "p" / "m.onnx", tolerance=1.0, provenance={"steps": "40"})
    assert "| steps | 40 |" in plain.card_path.read_text()


def test_card_snippet_runs_as_written(fresh_export, tmp_path, monkeypatch):
    _, report = fresh_export
    text = report.card_path.read_text()
    snippet = text.split("```python\n")[1].split("```")[0]
    monkeypatch.chdir(report.path.parent)
    exec(compile(snippet.replace("sample.png", str(tmp_path / "sample.png")), "card", "exec"), {})
    assert (tmp_path / "sample.png").stat().st_size > 0


@pytest.mark.slow
def test_no_card_writes_only_the_model(tmp_path):
    report = export_generator(fresh_generator(), tmp_path / "m.onnx", model_card=False)
    assert report.card_path is None and files_in(tmp_path) == ["m.onnx"]


# ---------------------------------------------------------------- checkpoint formats


@pytest.mark.slow
def test_original_published_format_exactly(tmp_path):
    g = fresh_generator(GeneratorConfig(), seed=3)  # 128 px, z_dim 100, 4 classes, width 512: the original's
    assert count_parameters(g) == 3_639_760
    path = tmp_path / "cDCGAN_generator.pth"
    torch.save({"model": g.state_dict(), "z_dim": 100, "num_classes": 4, "img_size": 128}, path)
    assert set(torch.load(path, weights_only=True)) == {"model", "z_dim", "num_classes", "img_size"}
    loaded, meta = load_generator(path)
    assert meta["format"] == "original"
    assert meta["config"] == GeneratorConfig().to_dict()
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), g.state_dict().values()))
    report = export_checkpoint(path, tmp_path / "out.onnx")
    assert report.info.img_size == 128 and report.info.provenance["cgan.checkpoint_format"] == "original"
    assert onnx_max_err(report.path, g, batch_sizes=(1, 3)) <= 1e-4


def test_training_checkpoint_as_cgan_train_writes_it(tmp_path):
    g, ema = fresh_generator(seed=4), fresh_generator(seed=5)
    body = {
        "format": "cgan-train-checkpoint",
        "version": 1,
        "config": SMALL.to_dict(),
        "train_config": {"lr_g": 2e-4, "data": None},
        "training_data": "synthetic OASIS-like set (n=64, seed=0)",
        "generator": g.state_dict(),
        "generator_ema": ema.state_dict(),
        "discriminator": ProjectionDiscriminator(img_size=32).state_dict(),
        "opt_g": torch.optim.Adam(g.parameters()).state_dict(),
        "rng": [{"torch": torch.get_rng_state(), "python": (3, tuple(range(5)), None)}],
        "step": 120,
        "epoch": 3,
        "batch": 0,
        "created": "2025-01-01T00:00:00+00:00",
        "tool_version": "0.1.0",
    }
    path = tmp_path / "ckpt_000000120.pt"
    torch.save(body, path)
    loaded, meta = load_generator(path)
    assert meta["format"] == "training-checkpoint" and meta["state_key"] == "generator_ema"
    assert torch.equal(loaded.net[0].weight, ema.net[0].weight) and not loaded.training
    prov = meta["provenance"]
    assert (prov["epochs"], prov["steps"], prov["training_data"]) == ("3", "120", body["training_data"])

    body["generator_ema"] = None  # trained without EMA: the raw generator is exported
    body["generator"] = {f"module.{k}": v for k, v in g.state_dict().items()}  # as DDP names them
    torch.save(body, path)
    loaded, meta = load_generator(path)
    assert meta["state_key"] == "generator" and torch.equal(loaded.net[0].weight, g.net[0].weight)


@pytest.mark.slow
def test_trainer_provenance_keys_never_override_the_exporters(fresh_export, tmp_path):
    g, _ = fresh_export
    report = export_generator(g, tmp_path / "m.onnx", model_card=False, tolerance=1.0,
                              provenance={"precision": "bf16-mixed", "cgan.opset": "99", "seed": 7})
    prov = report.info.provenance
    assert report.info.precision == "fp32" and prov[Key.OPSET] == "17"
    assert prov["cgan.train_precision"] == "bf16-mixed" and prov["cgan.seed"] == "7"


def test_bare_state_dict_infers_architecture(tmp_path):
    cfg = GeneratorConfig(z_dim=10, num_classes=3, img_size=64, width=32, channels=1)
    path = tmp_path / "bare.pt"
    torch.save(fresh_generator(cfg).state_dict(), path)
    loaded, meta = load_generator(path)
    assert meta["format"] == "state-dict" and loaded.config == cfg


# ---------------------------------------------------------------- refusals


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        export_checkpoint(tmp_path / "nope.pth", tmp_path / "out.onnx")
    assert files_in(tmp_path) == []


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04truncated zip"])
def test_corrupt_checkpoint(tmp_path, content):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(content)
    with pytest.raises(CheckpointError, match="corrupt or not a PyTorch file"):
        export_checkpoint(bad, tmp_path / "out" / "m.onnx")
    assert not (tmp_path / "out").exists() or files_in(tmp_path / "out") == []


def test_truncated_real_checkpoint(tmp_path):
    good = save_seed_format(fresh_generator(), tmp_path / "good.pth")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_generator(bad)


class _Payload:
    """Unpickling this calls open(marker, 'w'): the file appears only if pickled code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_code_is_refused_never_executed(tmp_path):
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.pth"
    torch.save({"model": fresh_generator().state_dict(), "z_dim": 16, "num_classes": 4, "img_size": 32, "x": _Payload(marker)}, path)
    with pytest.raises(CheckpointError, match="refused: the file needs pickled code to load") as exc:
        export_checkpoint(path, tmp_path / "out.onnx")
    assert "open" in str(exc.value) and "never executed here" in str(exc.value)
    assert "weights_only" not in str(exc.value) and "Re-running" not in str(exc.value)  # none of torch's advice to disable it
    assert not marker.exists() and not (tmp_path / "out.onnx").exists()
    # the payload is real: an unsafe load would have run it
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_pickled_module_is_refused(tmp_path):
    path = tmp_path / "whole_model.pth"
    torch.save(fresh_generator(), path)
    with pytest.raises(CheckpointError, match="needs pickled code to load"):
        load_generator(path)


def test_other_architecture_names_the_keys(tmp_path):
    path = tmp_path / "disc.pth"
    torch.save({"model": ProjectionDiscriminator(img_size=32).state_dict()}, path)
    with pytest.raises(ArchitectureError) as exc:
        load_generator(path)
    assert "label_emb.weight" in str(exc.value) and "features.0" in str(exc.value)


def test_changed_shape_and_missing_key_are_named(tmp_path):
    state = fresh_generator().state_dict()
    state["net.3.weight"] = torch.zeros(64, 48, 4, 4)
    del state["net.4.running_var"]
    state["net.99.extra"] = torch.zeros(1)
    path = save_seed_format(fresh_generator(), tmp_path / "g.pth")
    obj = torch.load(path, weights_only=True)
    obj["model"] = state
    torch.save(obj, path)
    with pytest.raises(ArchitectureError) as exc:
        load_generator(path)
    message = str(exc.value)
    assert "net.4.running_var" in message and "net.99.extra" in message and "net.3.weight (64, 48, 4, 4)" in message


def test_declared_size_contradicting_weights(tmp_path):
    path = tmp_path / "g.pth"
    g = fresh_generator()
    torch.save({"model": g.state_dict(), "z_dim": 16, "num_classes": 4, "img_size": 128}, path)
    with pytest.raises(ArchitectureError, match="img_size=128"):
        load_generator(path)


def test_unwritable_output(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(ExportError, match="cannot write"):
        export_generator(fresh_generator(), blocker / "sub" / "m.onnx")
    with pytest.raises(ExportError, match="is a directory"):
        export_generator(fresh_generator(), tmp_path)
    assert files_in(tmp_path) == ["a_file"]


def test_not_a_generator_is_refused(tmp_path):
    with pytest.raises(ExportError, match="needs a cgan.train.models.Generator"):
        export_generator(ProjectionDiscriminator(img_size=32), tmp_path / "m.onnx")
    assert files_in(tmp_path) == []


def test_an_existing_output_is_refused_unless_overwrite_is_asked_for(tmp_path):
    """As cgan-export: the library keeps an existing model file (and its card) unless told to replace it."""
    out = tmp_path / "m.onnx"
    out.write_bytes(b"old")
    with pytest.raises(ExportError, match="already exists"):
        export_generator(fresh_generator(), out)
    assert out.read_bytes() == b"old" and files_in(tmp_path) == ["m.onnx"]
    card = tmp_path / "n.README.md"
    card.write_text("my notes")
    with pytest.raises(ExportError, match="already exists"):
        export_generator(fresh_generator(), tmp_path / "n.onnx")
    assert card.read_text() == "my notes" and not (tmp_path / "n.onnx").exists()
    report = export_generator(fresh_generator(), out, overwrite=True, model_card=False)
    assert report.path == out and out.read_bytes()[:3] != b"old"


@pytest.mark.slow
def test_validation_failure_writes_nothing_and_keeps_old_file(tmp_path):
    out = tmp_path / "m.onnx"
    out.write_bytes(b"previous export")
    with pytest.raises(ValidationError, match="differs from the torch Generator"):
        export_generator(fresh_generator(), out, tolerance=1e-12, overwrite=True)
    assert out.read_bytes() == b"previous export"
    assert files_in(tmp_path) == ["m.onnx"]  # no temp file, no card


@pytest.mark.parametrize("opset", [0, 12, MIN_OPSET - 1, opset_range()[1] + 1])
def test_unsupported_opsets_are_refused_before_any_work(tmp_path, opset):
    with pytest.raises(OpsetError, match=f"opset {opset} is not supported; choose {MIN_OPSET}\\.\\."):
        export_generator(fresh_generator(), tmp_path / "m.onnx", opset=opset)
    assert files_in(tmp_path) == []


@pytest.mark.slow
@pytest.mark.parametrize("opset", [18, opset_range()[1]])
def test_other_supported_opsets_export_and_match(tmp_path, opset):
    g = trained_generator(steps=2)
    report = export_generator(g, tmp_path / "m.onnx", opset=opset, model_card=False)
    model = onnx.load(str(report.path))
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [opset]
    assert read_metadata(report.path).provenance[Key.OPSET] == str(opset)
    assert onnx_max_err(report.path, g, batch_sizes=(1, 64)) <= 1e-4


# ---------------------------------------------------------------- fp16


@pytest.mark.slow
def test_fp16_weights_with_fp32_boundary(tmp_path, fresh_export):
    fp32_size = fresh_export[1].size_bytes
    g = trained_generator()
    report = export_generator(g, tmp_path / "m16.onnx", fp16=True)
    model = onnx.load(str(report.path))
    weights = [i for i in model.graph.initializer if len(i.dims) == 4]
    assert weights and all(i.data_type == TensorProto.FLOAT16 for i in weights)
    assert {i.name: i.type.tensor_type.elem_type for i in model.graph.input} == {"z": TensorProto.FLOAT, "stage": TensorProto.INT64}
    assert model.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert "Cast" in {n.op_type for n in model.graph.node}
    info = read_metadata(report.path)
    assert info.precision == "fp16" and float(info.provenance[Key.PARITY_TOLERANCE]) == 2e-2
    err = onnx_max_err(report.path, g)
    assert 0 < err <= 2e-2
    assert report.size_bytes < 0.6 * fp32_size  # the same architecture in fp32


@pytest.mark.cuda
def test_fp16_is_also_validated_on_cuda_when_available(tmp_path):
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime has no CUDAExecutionProvider here")
    report = export_generator(trained_generator(), tmp_path / "m16.onnx", fp16=True)
    assert report.providers == ("CPUExecutionProvider", "CUDAExecutionProvider")
    assert read_metadata(report.path).provenance[Key.PARITY_PROVIDERS] == "CPUExecutionProvider,CUDAExecutionProvider"


def test_card_quotes_what_it_reads_from_the_model_and_the_file_name():
    """Stage names, provenance and the file name reach the card only as text (tables), a shell word and a Python literal."""
    import ast
    import shlex

    from cgan.export.card import render_card
    from cgan.runtime.contract import ModelError, ModelInfo

    hostile = 'a"); import os; os.system("id"); ("b.onnx'
    info = ModelInfo(z_dim=8, num_classes=4, img_size=32, channels=1, stage_names=("<b>x</b>", "a | b", "`c`", "d"),
                     provenance={Key.TRAINING_DATA: "<script>alert(1)</script>"})
    card = render_card(info, hostile)
    snippet = card.split("```python\n")[1].split("```")[0]
    tree = ast.parse(snippet)
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                for alias in node.names} | {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported == {"numpy", "onnxruntime", "PIL", "Image"}
    assert any(isinstance(n, ast.Constant) and n.value == hostile for n in ast.walk(tree))
    command = next(line for line in card.splitlines() if line.startswith("cgan-run --model ") and "hf:" not in line)
    assert shlex.split(command)[2] == hostile
    assert "<b>" not in card and "<script>" not in card and "| a | b |" not in card
    assert "| 1 | a &#124; b |" in card
    with pytest.raises(ModelError, match="control character"):
        render_card(ModelInfo(z_dim=8, num_classes=1, img_size=32, channels=1, stage_names=("x\nimport os",)), "m.onnx")
