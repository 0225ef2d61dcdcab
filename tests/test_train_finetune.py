"""Fine-tuning a trained generator: FreezeD (--freeze-d), frozen BatchNorm statistics (--freeze-bn) and
the stage code with the generator's first blocks (--tune stage --tune-blocks): each trains what it says
and keeps the rest bit for bit."""

from __future__ import annotations

import pytest
import torch

from cgan.train.models import GeneratorConfig

from _models import model_file
from _train_setup import (DISC_WIDTH, IMG, WIDTH, dataset, first_batch, keep_torch_threads,  # noqa: F401 - fixtures
                          make_run, trained_checkpoint)


def test_freeze_d_keeps_the_checkpoints_lower_blocks_through_every_step(dataset, trained_checkpoint):
    """--freeze-d 2: the discriminator's first two conv blocks hold the checkpoint's weights bit for bit
    after several full steps (no gradient computed for them, still frozen after each G step), while its
    upper blocks and heads move; the optimizer holds only what trains."""
    from cgan.train.store.read_init import read_init

    run = make_run(dataset[2], init_from=trained_checkpoint, freeze_d=2, aux_weight=0.5, lr_d=0.05)
    run.load_init(read_init(run.config), run.config.init_from)
    saved = torch.load(trained_checkpoint, weights_only=True)["discriminator"]
    convs = [m for m in run.D.features if isinstance(m, torch.nn.Conv2d)]
    before = [[p.detach().clone() for p in conv.parameters()] for conv in convs]
    heads = [p.detach().clone() for p in (run.D.linear.weight, run.D.embed.weight, run.D.classifier.weight)]
    for _ in range(3):
        run.train_step(*first_batch(run))
    for i, conv in enumerate(convs):
        same = all(torch.equal(a, b) for a, b in zip(before[i], conv.parameters()))
        assert same == (i < 2), i
        assert all(p.requires_grad == (i >= 2) for p in conv.parameters()), i
    assert all(p.grad is None for conv in convs[:2] for p in conv.parameters())
    assert all(not torch.equal(a, b) for a, b in zip(heads, (run.D.linear.weight, run.D.embed.weight,
                                                              run.D.classifier.weight)))
    frozen_names = {n for n, p in run.D.named_parameters() if not p.requires_grad}
    assert frozen_names and all(torch.equal(run.D.state_dict()[n], saved[n]) for n in frozen_names)
    optimised = {id(p) for group in run.opt_d.param_groups for p in group["params"]}
    assert optimised == {id(p) for p in run.D.parameters() if p.requires_grad}
    assert run.provenance()["freeze_d"].startswith("the discriminator's first 2 of 4 conv blocks")


def test_freeze_bn_keeps_the_generators_statistics_while_its_weights_train(dataset):
    """--freeze-bn with --tune all: after full steps every BatchNorm running statistic is the starting
    model's while the weights (BatchNorm's gains included) moved; without it the statistics move."""
    from cgan.train.store.read_init import read_init

    for freeze in (True, False):
        run = make_run(dataset[2], init_from=model_file("gen32"), freeze_bn=freeze, lr_g=0.01)
        run.load_init(read_init(run.config), run.config.init_from)
        stats = {k: v.clone() for k, v in run.G.state_dict().items() if "running_" in k}
        weights = {n: p.detach().clone() for n, p in run.G.named_parameters()}
        for _ in range(2):
            run.train_step(*first_batch(run))
        after = run.G.state_dict()
        assert stats and all(torch.equal(v, after[k]) for k, v in stats.items()) == freeze
        assert all(not torch.equal(v, after[n]) for n, v in weights.items() if n != "label_emb.weight")
        assert ("freeze_bn" in run.provenance()) == freeze


def test_freeze_lower_blocks_counts_each_discriminators_own_blocks():
    from cgan.train.models import build_discriminator, freeze_lower_blocks

    config = GeneratorConfig(img_size=IMG, width=WIDTH)
    spatial = build_discriminator("spatial", config, width=DISC_WIDTH)
    trained = freeze_lower_blocks(spatial, 4)
    head = [m for m in spatial.net if isinstance(m, torch.nn.Conv2d)][-1]
    assert {id(p) for p in trained} == {id(p) for p in (*head.parameters(), spatial.label_map.weight)}
    with pytest.raises(ValueError, match="4 conv blocks; 5 cannot"):
        freeze_lower_blocks(build_discriminator("projection", config, width=DISC_WIDTH), 5)


def test_tune_blocks_trains_the_stage_code_and_the_first_blocks_only(dataset):
    """--tune stage --tune-blocks 2: the stage code and the first two blocks' transposed convs and BatchNorm
    gains and shifts move; the later blocks, the output layer and every BatchNorm statistic stay bit for bit."""
    from cgan.train.store.read_init import read_init

    for arch, block_keys in (("dcgan", ("net.0.", "net.1.", "net.3.", "net.4.")),
                             ("cbn", ("convs.0.", "convs.1.", "norms.0.", "norms.1."))):
        run = make_run(dataset[2], init_from=model_file("gen32"), tune="stage", tune_blocks=2, generator=arch,
                       aux_weight=0.5, lr_g=0.05)
        run.load_init(read_init(run.config), run.config.init_from)
        before = {k: v.detach().clone() for k, v in run.G.state_dict().items()}
        trained = {n for n, _ in run.G.named_parameters()
                   if n == "label_emb.weight" or n.endswith((".gain.weight", ".shift.weight"))
                   or n.startswith(block_keys)}
        for _ in range(2):
            run.train_step(*first_batch(run))
        after = run.G.state_dict()
        moved = {k for k in before if not torch.equal(before[k], after[k])}
        assert moved == trained, arch
        assert any(k.startswith(block_keys[2:]) for k in moved) and not any("running_" in k for k in moved)
        assert run.provenance()["tune"].startswith("stage code and the generator's first 2 of")


def test_a_real_only_head_starts_from_a_checkpoints_ac_head_and_a_twin_head_is_refused(dataset, trained_checkpoint):
    """--aux-head real has the plain head's shape (one class per stage): it takes an AC checkpoint's stage
    classifier as it is; the twin head (two classes per stage) is refused in one line naming both heads."""
    from cgan.runtime.errors import CganError
    from cgan.train.store.read_init import read_init

    run = make_run(dataset[2], init_from=trained_checkpoint, aux_weight=0.5, aux_head="real")
    run.load_init(read_init(run.config), run.config.init_from)
    saved = torch.load(trained_checkpoint, weights_only=True)["discriminator"]
    assert torch.equal(run.D.classifier.weight, saved["classifier.weight"])
    twin = make_run(dataset[2], init_from=trained_checkpoint, aux_weight=0.5, aux_head="twin")
    with pytest.raises(CganError, match=r"stage classifier is --aux-head ac; this run has --aux-head twin") as err:
        read_init(twin.config)
    assert "\n" not in str(err.value)
