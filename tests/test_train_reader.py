"""``--reader-weight``: the frozen stage reader, fitted on the run's own training images (split by subject),
and the generator's term against its reading of held-out real images."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from _train_setup import BATCH, DISC_WIDTH, IMG, WIDTH, first_batch, keep_torch_threads, make_run, quiet  # noqa: F401
from cgan.train.eval.judges import dataset_key
from cgan.train.loop.objectives import kl_to_targets
from cgan.train.loop.reader import READER_FILE, get_reader
from cgan.train.loop.run import TrainConfig, train

READER_SET = 96  # 24 images (3 subjects) per stage: one subject each to fit, to choose on and to hold out


@pytest.fixture(scope="module")
def reader_set(tmp_path_factory):
    from cgan.train.data import load_image_set
    from cgan.train.synth import make_synthetic_set

    root = tmp_path_factory.mktemp("reader_data")
    data = make_synthetic_set(root / "syn", n=READER_SET, seed=3, img_size=IMG, log=quiet)
    cache = root / "cache"
    return data, cache, load_image_set(data, img_size=IMG, cache_dir=cache, log=quiet)


@pytest.fixture(scope="module")
def reader(reader_set):
    return get_reader(reader_set[2], cache_dir=reader_set[1], device=torch.device("cpu"), log=quiet)


def test_kl_to_targets_is_the_kl_divergence_from_the_targets():
    targets = torch.tensor([[0.5, 0.5], [0.9, 0.1]])
    logits = torch.tensor([[0.0, math.log(3.0)], [math.log(0.9), math.log(0.1)]])
    # row 1: p = (1/4, 3/4); row 2: p equals the target, so it adds nothing
    expected = (0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)) / 2
    assert kl_to_targets(targets, logits).item() == pytest.approx(expected, rel=1e-6)
    assert kl_to_targets(targets[1:], logits[1:]).item() == pytest.approx(0.0, abs=1e-6)


def test_the_reader_is_fitted_on_the_runs_own_images_split_by_subject_and_cached(reader_set, reader):
    data, cache, images = reader_set
    split = reader.split
    assert reader.judge.dataset["key"] == dataset_key(images)
    sides = [split.fit, split.val, split.held]
    assert sorted(np.concatenate(sides).tolist()) == list(range(len(images.labels)))
    subjects = [set(split.groups[idx]) for idx in sides]
    assert not (subjects[0] & subjects[1] or subjects[0] & subjects[2] or subjects[1] & subjects[2])
    assert reader.judge.metrics["n_fit"] == len(split.fit) and reader.judge.metrics["n_held_out"] == len(split.held)
    # the second call reads the cache: the same weights, no fit
    lines: list[str] = []
    again = get_reader(images, cache_dir=cache, device=torch.device("cpu"), log=lines.append)
    assert len(lines) == 1 and lines[0].startswith("using the cached stage reader")
    for a, b in zip(reader.judge.model.state_dict().values(), again.judge.model.state_dict().values()):
        assert torch.equal(a, b)


def test_the_targets_are_the_readers_mean_posteriors_on_held_out_real_images(reader_set, reader):
    images = reader_set[2]
    held = reader.split.held
    logits, _ = reader.judge.embed(np.asarray(images.images)[held])
    post = torch.softmax(torch.from_numpy(logits), dim=1)
    labels = torch.from_numpy(np.asarray(images.labels)[held])
    for s in range(4):
        torch.testing.assert_close(reader.targets[s], post[labels == s].mean(0), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(reader.targets.sum(1), torch.ones(4))


def test_the_reader_scores_g_through_its_images_and_never_moves(reader_set, reader):
    """Same seed, batch and noise: with --reader-weight 2, D's step is the one of the run without it and G's loss
    is larger by exactly 2 x the reader's term; the reader's weights are untouched and get no gradient."""
    w = 2.0
    images = reader_set[2]
    off, on = make_run(images), make_run(images, reader_weight=w)
    on.attach_reader(reader)
    before = {k: v.clone() for k, v in reader.judge.model.state_dict().items()}
    real, labels = first_batch(off)
    base, with_reader = off.train_step(real, labels), on.train_step(real, labels)
    assert on.last_reader.item() > 0
    torch.testing.assert_close(with_reader[[0, 2, 3]], base[[0, 2, 3]])
    torch.testing.assert_close(with_reader[1] - base[1], w * on.last_reader, rtol=1e-5, atol=1e-6)
    for k, v in reader.judge.model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None and not p.requires_grad for p in reader.judge.model.parameters())
    moved = [not torch.equal(a, b) for a, b in zip(off.G.parameters(), on.G.parameters())]
    assert any(moved)  # the term's gradient reached G


def test_a_reader_run_resumes_exactly_with_the_reader_it_started_with(reader_set, reader, tmp_path):
    data, cache, images = reader_set
    base = dict(data=data, cache_dir=cache, img_size=IMG, width=WIDTH, disc_width=DISC_WIDTH, batch_size=BATCH,
                checkpoint_every=2, quiet=True, device="cpu", threads=1, reader_weight=0.5)
    whole = train(TrainConfig(out=tmp_path / "whole", max_steps=5, **base), image_set=images, log=quiet)
    train(TrainConfig(out=tmp_path / "split", max_steps=3, **base), image_set=images, log=quiet)
    assert (tmp_path / "split" / READER_FILE).is_file()
    # the cache is gone: the resumed part must read the run folder's reader, not fit another
    for f in (cache / "readers").iterdir():
        f.unlink()
    rest = train(TrainConfig(out=tmp_path / "split", max_steps=5, resume=True, **base), image_set=images, log=quiet)
    assert not any((cache / "readers").iterdir())
    np.testing.assert_array_equal(rest.step_losses, whole.step_losses[3:])
    provenance = torch.load(tmp_path / "split" / "cDCGAN_generator.pth", weights_only=True)["provenance"]
    assert provenance["objective"].endswith("frozen stage reader (G read as held-out real images of its stage are) weight 0.5")
    assert provenance["stage_reader"].startswith(f"small ({IMG} px) stage reader fitted on this run's training images "
                                                 "(subject-level split")


def test_an_unreadable_cached_reader_is_fitted_again(reader_set, reader, tmp_path):
    images = reader_set[2]
    cache = tmp_path / "cache"
    get_reader(images, cache_dir=cache, device=torch.device("cpu"), log=quiet)
    (cached,) = (cache / "readers").glob("*.pt")
    cached.write_bytes(b"not a torch file")
    lines: list[str] = []
    again = get_reader(images, cache_dir=cache, device=torch.device("cpu"), log=lines.append)
    assert "cannot be read" in lines[0] and "fitting it again" in lines[0]
    for a, b in zip(reader.judge.model.state_dict().values(), again.judge.model.state_dict().values()):
        assert torch.equal(a, b)  # the same fit: seeded, on the same images
    assert get_reader(images, cache_dir=cache, device=torch.device("cpu"), log=lines.append) is not None
    assert lines[-1].startswith("using the cached stage reader")


def test_a_reader_fitted_on_other_images_is_refused_on_resume(reader_set, reader, tmp_path):
    from _train_setup import tiny_training_set

    from cgan.runtime.errors import CganError
    from cgan.train.loop.reader import load_reader

    path = reader.judge.save(tmp_path / READER_FILE)
    other = tiny_training_set(tmp_path / "other")[2]
    with pytest.raises(CganError, match="was fitted on other images than this run trains on"):
        load_reader(path, other, device=torch.device("cpu"))
    assert load_reader(path, reader_set[2], device=torch.device("cpu")).judge.dataset["key"] == dataset_key(reader_set[2])
