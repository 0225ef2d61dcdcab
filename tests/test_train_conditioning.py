"""The conditioning levers (--aux-weight, --generator cbn) and the warm start from an exported generator
(--init-from MODEL.onnx, --d-warmup): each changes what it should and nothing else, exports through the
same contract, and a tiny run with each trains and resumes exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from cgan.runtime.api import load
from cgan.runtime.contract import Key, noise
from cgan.runtime.errors import CganError
from cgan.train.loop.batches import draw_order, epoch_order, stratified_order
from cgan.train.cli import app
from cgan.train.loop.run import TrainConfig, train
from cgan.train.models import GeneratorConfig, build_generator
from cgan.train.loop.objectives import d_loss, g_loss, matched_stage_loss, stage_loss
from cgan.train.store.read_exported import read_exported, rebuild_generator

from _models import model_file
from _train_setup import (BATCH, DISC_WIDTH, IMG, WIDTH, assert_refused_in_one_line, dataset,  # noqa: F401 - fixtures
                          first_batch, keep_torch_threads, make_run, quiet, torch_threads_kept, trained_checkpoint)


def onnx_images(path, z: np.ndarray, stage: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["image"], {"z": z, "stage": stage})[0]


def balanced_noise(n_per_stage: int, z_dim: int = 100, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    z = noise(seed, 0, 4 * n_per_stage, z_dim)
    return z, np.arange(len(z), dtype=np.int64) % 4


# ---------------------------------------------------------------- the AC-GAN stage classifier

def test_aux_weight_zero_is_the_run_without_the_lever(dataset):
    """Weight 0 builds no classifier: the same D, the same losses and the same weights as the default run."""
    runs = [make_run(dataset[2]), make_run(dataset[2], aux_weight=0.0)]
    assert runs[1].D.classifier is None
    losses = [torch.stack([r.train_step(*first_batch(r)) for _ in range(2)]) for r in runs]
    assert torch.equal(losses[0], losses[1])
    for a, b in zip(runs[0].G.state_dict().values(), runs[1].G.state_dict().values()):
        assert torch.equal(a, b)


def test_aux_term_adds_the_stage_cross_entropy_and_nothing_else(dataset):
    """Same seed, batch and noise: with --aux-weight 0.5, D's adversarial logits are those of the run
    without it, and its loss is larger by exactly 0.5 * (CE on real + CE on generated), the cross-entropies
    read off the classifier's own outputs; G's loss adds 0.5 * CE of its images' asked-for stages."""
    w = 0.5
    off, on = make_run(dataset[2]), make_run(dataset[2], aux_weight=w)
    seen = []
    on.D.register_forward_hook(lambda _m, _a, out: seen.append(tuple(t.detach().clone() for t in out)))
    real, labels = first_batch(off)
    base, with_aux = off.train_step(real, labels), on.train_step(real, labels)
    (d_logits, d_stages), (g_logits, g_stages) = seen
    ce_real = F.cross_entropy(d_stages[:BATCH], labels)
    ce_fake = F.cross_entropy(d_stages[BATCH:], labels)
    assert ce_real.item() > 0 and ce_fake.item() > 0
    torch.testing.assert_close(with_aux[0] - base[0], w * (ce_real + ce_fake), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(with_aux[2:], base[2:])  # D(x), D(G(z)): the adversarial part is unchanged
    torch.testing.assert_close(with_aux[1], g_loss("bce", g_logits) + w * F.cross_entropy(g_stages, labels))
    torch.testing.assert_close(on.last_aux, torch.stack([ce_real, ce_fake, F.cross_entropy(g_stages, labels)]))


def test_twin_head_reads_generated_images_as_their_own_classes(dataset):
    """--aux-head twin: the classifier has two classes per stage; D's term is CE(real, s) + CE(generated, K + s)
    and G's is CE(its images, s): it is rewarded for being read as the real stage it was asked for."""
    w, k = 0.5, 4
    off, on = make_run(dataset[2]), make_run(dataset[2], aux_weight=w, aux_head="twin")
    assert on.D.classifier.out_features == 2 * k
    seen = []
    on.D.register_forward_hook(lambda _m, _a, out: seen.append(tuple(t.detach().clone() for t in out)))
    real, labels = first_batch(off)
    base, with_aux = off.train_step(real, labels), on.train_step(real, labels)
    (_, d_stages), (g_logits, g_stages) = seen
    ce_real = F.cross_entropy(d_stages[:BATCH], labels)
    ce_fake = F.cross_entropy(d_stages[BATCH:], labels + k)
    assert ce_fake.item() != pytest.approx(F.cross_entropy(d_stages[BATCH:], labels).item())
    torch.testing.assert_close(with_aux[0] - base[0], w * (ce_real + ce_fake), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(with_aux[1], g_loss("bce", g_logits) + w * F.cross_entropy(g_stages, labels))


def test_real_only_head_is_fitted_on_real_images_alone(dataset):
    """--aux-head real: one class per stage, as ac; D's term is CE(real, s) alone, so the classifier's weights
    take no gradient from generated images (the generator cannot teach it marks of its own); G's term is
    still CE(its images, s), and the term on generated images is reported."""
    w = 0.5
    ac, real_only = make_run(dataset[2], aux_weight=w), make_run(dataset[2], aux_weight=w, aux_head="real")
    assert real_only.D.classifier.out_features == ac.D.classifier.out_features == 4
    seen = []
    real_only.D.register_forward_hook(lambda _m, _a, out: seen.append(tuple(t.detach().clone() for t in out)))
    real, labels = first_batch(ac)
    classifier_before = real_only.D.classifier.weight.detach().clone().requires_grad_(True)
    bias_before = real_only.D.classifier.bias.detach().clone()
    inputs = []
    real_only.D.classifier.register_forward_hook(lambda _m, a, _o: inputs.append(a[0].detach().clone()))
    with_ac, with_real = ac.train_step(real, labels), real_only.train_step(real, labels)
    (_, d_stages), (g_logits, g_stages) = seen
    ce_real = F.cross_entropy(d_stages[:BATCH], labels)
    ce_fake = F.cross_entropy(d_stages[BATCH:], labels)
    # the same step of the plain head adds w * CE(generated) to D's loss; the real-only head does not
    torch.testing.assert_close(with_ac[0] - with_real[0], w * ce_fake, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(with_real[1], g_loss("bce", g_logits) + w * F.cross_entropy(g_stages, labels))
    torch.testing.assert_close(real_only.last_aux, torch.stack([ce_real, ce_fake, F.cross_entropy(g_stages, labels)]))
    # the classifier's weight gradient from D's step is that of the real half's term alone
    head = real_only.D.classifier
    torch.testing.assert_close(head.weight.grad, torch.autograd.grad(
        w * F.cross_entropy(F.linear(inputs[0][:BATCH], classifier_before, bias_before), labels), classifier_before)[0])


def test_matched_head_fits_on_real_images_and_scores_g_against_their_reading(dataset):
    """--aux-head matched: D's term is the real-only head's, CE(real, s); G's is KL(t_s || p), t_s the mean
    posterior D's head gave this step's real images of stage s (worked out here sample by sample)."""
    w = 0.5
    real_only, matched = (make_run(dataset[2], aux_weight=w, aux_head=h) for h in ("real", "matched"))
    seen = []
    matched.D.register_forward_hook(lambda _m, _a, out: seen.append(tuple(t.detach().clone() for t in out)))
    real, labels = first_batch(matched)
    with_real, with_matched = real_only.train_step(real, labels), matched.train_step(real, labels)
    (_, d_stages), (g_logits, g_stages) = seen
    torch.testing.assert_close(with_matched[0], with_real[0])  # the same D step, seeds and weights alike
    post = F.softmax(d_stages[:BATCH], dim=1)
    kl = []
    for i, s in enumerate(labels.tolist()):
        t = torch.stack([post[j] for j in range(BATCH) if labels[j] == s]).mean(0)
        kl.append((t * (t.log() - F.log_softmax(g_stages[i], dim=0))).sum())
    torch.testing.assert_close(with_matched[1], g_loss("bce", g_logits) + w * torch.stack(kl).mean(), rtol=1e-5, atol=1e-6)
    assert matched.last_aux[2] != pytest.approx(F.cross_entropy(g_stages, labels).item())


def test_the_matched_term_does_not_reward_drawing_a_stage_more_surely_than_real_ones():
    """Where D reads the real images of stage 0 as stage 0 with p = 0.6, a generated image read so is at the
    term's minimum (0, no gradient); one read more surely is pushed back (the plain term pushes it further);
    a stage with no real image in the batch is scored as the plain term scores it."""
    real_logits = torch.log(torch.tensor([[0.6, 0.3, 0.05, 0.05], [0.6, 0.3, 0.05, 0.05], [0.1, 0.7, 0.1, 0.1]]))
    real_stages = torch.tensor([0, 0, 1])
    stages = torch.tensor([0])
    as_real = real_logits[:1].clone().requires_grad_(True)
    loss = matched_stage_loss(as_real, stages, real_logits, real_stages)
    (grad,) = torch.autograd.grad(loss, as_real)
    assert loss.item() == pytest.approx(0, abs=1e-6) and grad.abs().max() < 1e-6
    surer = torch.log(torch.tensor([[0.95, 0.03, 0.01, 0.01]])).requires_grad_(True)
    (matched_grad,) = torch.autograd.grad(matched_stage_loss(surer, stages, real_logits, real_stages), surer)
    (plain_grad,) = torch.autograd.grad(stage_loss(surer, stages), surer)
    assert matched_grad[0, 0] > 0 > plain_grad[0, 0]  # descent lowers stage 0's logit here, raises it there
    alone = torch.randn(2, 4)
    torch.testing.assert_close(matched_stage_loss(alone, torch.tensor([3, 3]), real_logits, real_stages),
                               stage_loss(alone, torch.tensor([3, 3])))


def test_tune_stage_moves_the_stage_code_and_nothing_else(dataset):
    """--tune stage from a warm start: after D-only and full steps, every weight and BatchNorm statistic of
    G's body is bit for bit the starting model's (no gradient was even computed for them), the stage code
    moved, and the model still is the export's function apart from its stage code."""
    from cgan.train.store.read_init import read_init

    for arch in ("dcgan", "cbn"):
        run = make_run(dataset[2], init_from=model_file("gen32"), d_warmup=1, tune="stage", generator=arch,
                       aux_weight=0.5, aux_head="twin", lr_g=0.05)
        run.load_init(read_init(run.config), run.config.init_from)
        before = {k: v.detach().clone() for k, v in run.G.state_dict().items()}
        stage = {"label_emb.weight"} | {k for k in before if k.endswith((".gain.weight", ".shift.weight"))}
        assert len(stage) == (1 if arch == "dcgan" else 1 + 2 * (len(run.G.norms)))
        for step in range(3):
            run.step = step
            run.train_step(*first_batch(run))
        after = run.G.state_dict()
        frozen = [k for k in before if k not in stage]
        assert frozen and all(torch.equal(before[k], after[k]) for k in frozen), arch
        assert all(not torch.equal(before[k], after[k]) for k in stage), arch
        assert all(p.grad is None for n, p in run.G.named_parameters() if n not in stage)
        assert not run.G.training
        assert run.provenance()["tune"].startswith("stage code only")


def test_aux_classifier_needs_the_projection_discriminator():
    with pytest.raises(CganError, match="--aux-weight needs --disc projection"):
        TrainConfig(disc="spatial", aux_weight=1.0).validate()


# ---------------------------------------------------------------- the conditional-BatchNorm generator

def test_cbn_stage_rows_act_on_their_own_stage_only():
    """A change to one stage's gain in one block changes that stage's images, and no other stage's."""
    torch.manual_seed(0)
    g = build_generator(GeneratorConfig(img_size=IMG, width=WIDTH, arch="cbn")).eval()
    z = torch.from_numpy(noise(0, 0, 4, 100))
    before = [g(z, torch.full((4,), s)) for s in range(4)]
    with torch.no_grad():
        g.norms[1].gain.weight[2] *= 1.5
    after = [g(z, torch.full((4,), s)) for s in range(4)]
    for s in range(4):
        assert torch.equal(before[s], after[s]) == (s != 2), s


def test_the_original_checkpoint_layout_is_still_the_default():
    g = build_generator(GeneratorConfig())
    assert sum(p.numel() for p in g.parameters()) == 3_639_760
    assert "net.15.weight" in g.state_dict() and "label_emb.weight" in g.state_dict()


@pytest.fixture(scope="module")
def cbn_run(dataset, tmp_path_factory):
    """A tiny cbn training run, its generator file exported by cgan-export's checkpoint path (one export)."""
    from cgan.export.api import export_checkpoint

    data, cache, images = dataset
    out = tmp_path_factory.mktemp("cbn") / "run"
    with torch_threads_kept():
        result = train(TrainConfig(data=data, cache_dir=cache, img_size=IMG, width=WIDTH, disc_width=DISC_WIDTH,
                                   batch_size=BATCH, max_steps=3, quiet=True, device="cpu", threads=1, generator="cbn", out=out,
                                   lr_g=0.05), image_set=images, log=quiet)  # a large rate: the stage rows move apart
    onnx_path = out / "cbn.onnx"
    export_checkpoint(result.generator, onnx_path, model_card=False)
    return result, onnx_path


def test_cbn_generator_exports_from_its_file_and_runs_in_the_runtime(cbn_run):
    result, onnx_path = cbn_run
    payload = torch.load(result.generator, weights_only=True)
    assert payload["config"]["arch"] == "cbn"
    assert payload["provenance"]["generator"].startswith("cbn")
    g = build_generator(GeneratorConfig(**payload["config"]))
    g.load_state_dict(payload["model"])  # strict
    model = load(onnx_path)
    assert model.info.provenance[Key.ARCHITECTURE] == "cbn"
    assert (model.info.z_dim, model.info.num_classes, model.info.img_size) == (100, 4, IMG)
    for stage in range(4):
        got = model.generate_float(stage, 3, seed=5)
        want = g.eval()(torch.from_numpy(noise(5, 0, 3, 100)), torch.full((3,), stage)).detach().numpy()
        np.testing.assert_allclose(got, want, atol=1e-4)
    # the stage acts: one noise, four stages, four different images
    per_stage = [model.generate_float(s, 1, seed=5) for s in range(4)]
    assert all(not np.array_equal(per_stage[0], p) for p in per_stage[1:])


# ---------------------------------------------------------------- the warm start

@pytest.mark.parametrize("target", ["dcgan", "cbn"])
def test_warm_start_rebuilds_a_dcgan_export_exactly(target):
    """gen32 (a 32-px export whose BatchNorm statistics are far from 0/1) rebuilt as either generator:
    the stage embedding, the folded conv weights and the output layer come back bit for bit, and the
    eval-mode images match ONNX Runtime's to 1e-5."""
    import onnx
    from onnx import numpy_helper

    path = model_file("gen32")
    g = rebuild_generator(read_exported(path), GeneratorConfig(img_size=32, width=64, arch=target))
    inits = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in onnx.load(str(path)).graph.initializer}
    state = g.state_dict()
    assert torch.equal(state["label_emb.weight"], inits["label_emb.weight"])
    convs = ["net.0.weight", "net.3.weight", "net.6.weight"] if target == "dcgan" else [f"convs.{i}.weight" for i in range(3)]
    for name, folded in zip(convs, ["net.0.weight", "net.2.weight", "net.4.weight"]):
        assert torch.equal(state[name], inits[folded])
    assert torch.equal(state["net.9.weight" if target == "dcgan" else "to_image.weight"], inits["net.6.weight"])
    z, stage = balanced_noise(4)
    got = g.eval()(torch.from_numpy(z), torch.from_numpy(stage)).detach().numpy()
    assert np.abs(got - onnx_images(path, z, stage)).max() <= 1e-5


def test_warm_start_training_mode_is_close_to_the_export_thanks_to_calibration():
    """In training mode BatchNorm uses the batch's statistics. With the calibrated statistics a balanced
    batch of 64 gives nearly the exported images; putting the folded bias in BatchNorm's beta with
    statistics 0/1 instead (an uncalibrated rebuild, the same function in eval mode) does not."""
    path = model_file("gen32")
    exp = read_exported(path)
    g = rebuild_generator(exp, GeneratorConfig(img_size=32, width=64))
    z, stage = balanced_noise(16, seed=11)
    want = onnx_images(path, z, stage)
    naive = build_generator(GeneratorConfig(img_size=32, width=64))
    with torch.no_grad():
        naive.load_state_dict(g.state_dict())
        bns = [m for m in naive.net if isinstance(m, torch.nn.BatchNorm2d)]
        for bn, c in zip(bns, exp.offset):
            bn.weight.fill_(1.0)
            bn.bias.copy_(torch.from_numpy(c[0]))
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)
        eval_naive = naive.eval()(torch.from_numpy(z), torch.from_numpy(stage)).numpy()
        assert np.abs(eval_naive - want).max() <= 1e-5  # the naive rebuild is exact in eval mode too
        calibrated = np.abs(g.train()(torch.from_numpy(z), torch.from_numpy(stage)).numpy() - want).mean()
        uncalibrated = np.abs(naive.train()(torch.from_numpy(z), torch.from_numpy(stage)).numpy() - want).mean()
    assert calibrated < 0.25 * uncalibrated, (calibrated, uncalibrated)


def test_warm_start_of_a_cbn_export_reproduces_it(cbn_run):
    _, onnx_path = cbn_run
    g = rebuild_generator(read_exported(onnx_path), GeneratorConfig(img_size=IMG, width=WIDTH, arch="cbn"))
    z, stage = balanced_noise(4)
    got = g.eval()(torch.from_numpy(z), torch.from_numpy(stage)).detach().numpy()
    assert np.abs(got - onnx_images(onnx_path, z, stage)).max() <= 1e-5


def test_a_run_warm_started_from_an_export_generates_its_images_before_any_step(dataset):
    run = make_run(dataset[2], init_from=model_file("gen32"), d_warmup=2, ema=True)
    from cgan.train.store.read_init import read_init

    run.load_init(read_init(run.config), run.config.init_from)
    z, stage = balanced_noise(4)
    want = onnx_images(model_file("gen32"), z, stage)
    for g in (run.G, run.G_ema):
        got = g.eval()(torch.from_numpy(z), torch.from_numpy(stage)).detach().numpy()
        assert np.abs(got - want).max() <= 1e-5
    assert "fresh discriminator" in run.provenance()["init_from"]


def test_d_warmup_trains_d_alone_then_both(dataset):
    """Steps below --d-warmup leave G's weights as they were (its BatchNorm statistics still follow the
    batches) and move D; the G loss reported is the one against D before its update; then G moves."""
    run = make_run(dataset[2], d_warmup=2)
    fake_logits = []
    run.D.register_forward_hook(lambda _m, _a, out: fake_logits.append(out.detach()[BATCH:].clone()))
    params = lambda m: {k: v.detach().clone() for k, v in m.named_parameters()}  # noqa: E731
    g0, d0 = params(run.G), params(run.D)
    for step in range(2):
        run.step = step
        reported = run.train_step(*first_batch(run))
        torch.testing.assert_close(reported[1], g_loss("bce", fake_logits[-1]))
    assert all(torch.equal(v, params(run.G)[k]) for k, v in g0.items())
    assert any(not torch.equal(v, params(run.D)[k]) for k, v in d0.items())
    run.step = 2
    run.train_step(*first_batch(run))
    assert any(not torch.equal(v, params(run.G)[k]) for k, v in g0.items())


def test_warm_start_refusals_name_the_flag(dataset, tmp_path):
    from cgan.train.store.read_init import read_init

    with pytest.raises(CganError, match="--width"):
        read_init(TrainConfig(img_size=32, width=32, init_from=model_file("gen32")))
    with pytest.raises(CganError, match="no such file"):
        read_init(TrainConfig(init_from=tmp_path / "missing.onnx"))
    import onnx

    half = onnx.load(str(model_file("gen32")))  # what an fp16 export says of itself
    for prop in half.metadata_props:
        if prop.key == "cgan.precision":
            prop.value = "fp16"
    onnx.save(half, tmp_path / "half.onnx")
    with pytest.raises(CganError, match="is an fp16 export; a warm start reads fp32 weights exactly"):
        read_init(TrainConfig(img_size=32, width=64, init_from=tmp_path / "half.onnx"))
    bad = tmp_path / "bad.onnx"
    bad.write_text("not a model\n")
    with pytest.raises(CganError, match="not a readable ONNX model"):
        read_init(TrainConfig(init_from=bad))


def test_the_embedded_default_is_read_as_a_dcgan_export():
    exp = read_exported("default")
    assert exp.config == GeneratorConfig()  # 128 px, z 100, 4 stages, width 512, dcgan
    assert "embedded default" in exp.describe()


# ---------------------------------------------------------------- stage-balanced batches

@pytest.mark.parametrize("batch", [8, 6])
def test_balanced_batches_hold_every_stage_in_equal_shares(batch):
    labels = np.array([0] * 50 + [1] * 10 + [2] * 4 + [3] * 1)  # skewed, as OASIS is
    order = stratified_order(labels, 4, seed=3, epoch=0)
    assert len(order) == len(labels)
    counts = [np.bincount(labels[order[i:i + batch]], minlength=4) for i in range(0, len(order) - batch + 1, batch)]
    for c in counts:
        assert c.max() - c.min() <= (0 if batch % 4 == 0 else 1), c
    if batch % 4:  # the stages left over take turns: over the epoch every stage is drawn equally often
        total = np.bincount(labels[order], minlength=4)
        assert total.max() - total.min() <= 1
    np.testing.assert_array_equal(order, stratified_order(labels, 4, seed=3, epoch=0))
    assert not np.array_equal(order, stratified_order(labels, 4, seed=3, epoch=1))
    # ranks draw disjoint streams of the same shape
    r0, r1 = (stratified_order(labels, 4, seed=3, epoch=0, rank=r, world_size=2) for r in (0, 1))
    assert len(r0) == len(r1) == len(labels) // 2 and not np.array_equal(r0, r1)


def test_the_loop_draws_stage_balanced_batches_only_when_asked():
    labels = np.array([0] * 50 + [1] * 10 + [2] * 4 + [3] * 1)
    kw = dict(seed=3, epoch=2, balance=True, rank=1, world_size=2)
    on = draw_order(labels, 4, balanced_batches=True, **kw)
    assert all(np.bincount(labels[on[i:i + 4]], minlength=4).tolist() == [1, 1, 1, 1] for i in range(0, len(on) - 3, 4))
    np.testing.assert_array_equal(draw_order(labels, 4, balanced_batches=False, **kw), epoch_order(labels, 4, **kw))


def test_balanced_batches_refuse_a_stage_without_images():
    with pytest.raises(CganError, match="--balanced-batches needs images of every stage; stage\\(s\\) 2"):
        stratified_order(np.array([0, 1, 3, 3]), 4, seed=0, epoch=0)


# ---------------------------------------------------------------- whole runs

LEVERS = {
    "aux": dict(aux_weight=0.5),
    "cbn": dict(generator="cbn"),
    "warm": dict(init_from="gen32", d_warmup=2),
    "batches": dict(balanced_batches=True),
    "tune": dict(init_from="gen32", d_warmup=1, tune="stage", aux_weight=0.5, aux_head="twin"),
    "freeze": dict(init_from="checkpoint", freeze_d=2, freeze_bn=True, aux_weight=0.5),
    "sampling": dict(balance_power=0.5),
    "matched": dict(init_from="checkpoint", aux_weight=0.5, aux_head="matched"),
}


@pytest.mark.parametrize("lever", sorted(LEVERS))
def test_a_run_with_each_lever_trains_resumes_exactly_and_records_it(dataset, trained_checkpoint, tmp_path, lever):
    data, cache, images = dataset
    settings = dict(LEVERS[lever])
    if "init_from" in settings:
        settings["init_from"] = model_file("gen32") if settings["init_from"] == "gen32" else trained_checkpoint
    base = dict(data=data, cache_dir=cache, img_size=IMG, width=WIDTH, disc_width=DISC_WIDTH, batch_size=BATCH,
                checkpoint_every=2, quiet=True, device="cpu", threads=1)
    whole = train(TrainConfig(out=tmp_path / "whole", max_steps=5, **base, **settings), image_set=images, log=quiet)
    train(TrainConfig(out=tmp_path / "split", max_steps=3, **base, **settings), image_set=images, log=quiet)
    rest = train(TrainConfig(out=tmp_path / "split", max_steps=5, resume=True, **base), image_set=images, log=quiet)
    assert np.isfinite(whole.step_losses).all()
    np.testing.assert_array_equal(rest.step_losses, whole.step_losses[3:])
    saved = json.loads((tmp_path / "whole" / "config.json").read_text())
    for key, value in settings.items():
        assert saved[key] == (str(value) if key == "init_from" else value), key
    provenance = torch.load(tmp_path / "split" / "cDCGAN_generator.pth", weights_only=True)["provenance"]
    expected = {"aux": ("objective", "bce; AC-GAN stage classifier weight 0.5"),
                "cbn": ("generator", "cbn"), "warm": ("d_warmup", "2 steps of D alone"),
                "batches": ("batches", "stage-balanced"), "tune": ("tune", "stage code only"),
                "freeze": ("freeze_d", "the discriminator's first 2 of 4"),
                "sampling": ("sampling", "image weight 1/count^0.5 (stage shares proportional to count^0.5)"),
                "matched": ("objective", "bce; matched (fitted on real images; G read as the real stage is) stage "
                                         "classifier weight 0.5")}[lever]
    assert provenance[expected[0]].startswith(expected[1])


runner = CliRunner()


def test_every_lever_through_the_command_line(dataset, tmp_path):
    """The flags reach the run: a warm start from an export into the cbn generator, with the classifier,
    stage-balanced batches and one discriminator-only step, two steps in all."""
    data, cache, _ = dataset
    out = tmp_path / "run"
    result = runner.invoke(app, ["--data", str(data), "--cache-dir", str(cache), "--img-size", str(IMG),
                                 "--batch-size", str(BATCH), "--width", str(WIDTH), "--disc-width", str(DISC_WIDTH),
                                 "--device", "cpu", "--threads", "1", "--out", str(out), "--max-steps", "2",
                                 "--init-from", str(model_file("gen32")), "--generator", "cbn", "--aux-weight", "0.25",
                                 "--balanced-batches", "--d-warmup", "1"])
    assert result.exit_code == 0, result.output
    assert "warm start from" in result.output and "D alone for the first 1 steps" in result.output
    saved = json.loads((out / "config.json").read_text())
    assert (saved["generator"], saved["aux_weight"], saved["balanced_batches"], saved["d_warmup"]) == ("cbn", 0.25, True, 1)
    provenance = torch.load(out / "cDCGAN_generator.pth", weights_only=True)["provenance"]
    assert provenance["init_from"].startswith(str(model_file("gen32")))
    assert provenance["generator"].startswith("cbn") and provenance["batches"].startswith("stage-balanced")
    assert provenance["objective"].endswith("AC-GAN stage classifier weight 0.25")


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--aux-weight", "-1"], "--aux-weight"),
        (["--aux-weight", "1", "--disc", "spatial"], "--disc projection"),
        (["--generator", "stylegan"], "--generator"),
        (["--d-warmup", "-2"], "--d-warmup"),
        (["--balanced-batches", "--no-balance"], "--balanced-batches"),
        (["--tune", "stage"], "--init-from"),
        (["--tune", "everything"], "--tune"),
        (["--tune", "stage", "--init-from", "default", "--tune-blocks", "9"], "--tune-blocks must be 0 to "),
        (["--tune-blocks", "1"], "give --tune stage"),
        (["--balance-power", "1.5"], "--balance-power must lie in [0, 1]"),
        (["--balance-power", "nan"], "--balance-power must lie in [0, 1]"),
        (["--balance-power", "0.5", "--no-balance"], "cannot go with --no-balance"),
        (["--balance-power", "0.5", "--balanced-batches"], "cannot go with --balanced-batches"),
        (["--freeze-d", "5"], "--freeze-d must be 0 to 4"),
        (["--freeze-d", "-1"], "--freeze-d must be 0 to 4"),
        (["--freeze-d", "1"], "--init-from: none"),
        (["--freeze-d", "1", "--init-from", "default"], "its discriminator is new"),
        (["--aux-head", "twin"], "--aux-weight"),
        (["--aux-weight", "1", "--aux-head", "triple"], "--aux-head"),
        (["--reader-weight", "-1"], "--reader-weight must be a finite number >= 0"),
        (["--reader-weight", "nan"], "--reader-weight must be a finite number >= 0"),
        # the tiny set has one subject per stage: no subject left to hold out for the reader
        (["--reader-weight", "1", "--max-steps", "1"], "too few subjects of Non Demented"),
    ],
)
def test_bad_lever_flags_give_one_line_and_write_nothing(dataset, tmp_path, extra, needle):
    assert_refused_in_one_line(dataset, tmp_path / "out", extra, needle)
