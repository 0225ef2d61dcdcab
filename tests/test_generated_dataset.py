"""GeneratedDataset: items by index through the noise contract, the same in any order and in DataLoader workers."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from PIL import Image

from _cli import call_main
from _models import gen, model  # noqa: F401 - fixtures
from cgan.runtime import GeneratedDataset
from cgan.runtime.cli import main
from test_balance import make_dataset


def test_items_are_the_images_of_the_plan_stage_by_stage(model, gen):
    ds = GeneratedDataset({3: 4, "mild": 2}, model=model, seed=7, batch_size=3)
    assert len(ds) == 6 and ds.counts == (0, 0, 2, 4)
    assert ds.labels.tolist() == [2, 2, 3, 3, 3, 3]
    mild, moderate = gen.generate(2, 2, seed=7), gen.generate(3, 4, seed=7)
    want = [(m, 2) for m in mild] + [(m, 3) for m in moderate]
    for i, (image, stage) in enumerate(want):
        got, s = ds[i]
        assert s == stage and got.dtype == np.uint8 and got.shape == (32, 32)
        np.testing.assert_array_equal(got, image)
    np.testing.assert_array_equal(ds[-1][0], moderate[3])
    with pytest.raises(IndexError):
        ds[6]


def test_any_order_of_access_gives_the_same_items(model):
    forward = GeneratedDataset([3, 0, 2, 5], model=model, batch_size=4)
    shuffled = GeneratedDataset([3, 0, 2, 5], model=model, batch_size=4)
    first = [forward[i][0] for i in range(len(forward))]
    order = np.random.default_rng(3).permutation(len(shuffled))
    for i in order:
        np.testing.assert_array_equal(shuffled[int(i)][0], first[i])


def _double(x):
    return x * 2


def _negate(s):
    return -s


def test_float_output_transforms_and_pickling_without_the_session(model, gen):
    ds = GeneratedDataset([1, 1, 0, 0], model=model, output="float32", transform=_double, target_transform=_negate)
    image, stage = ds[1]
    assert stage == -1 and image.dtype == np.float32 and image.shape == (1, 32, 32)
    np.testing.assert_array_equal(image, 2 * gen.generate_float(1, 1)[0])
    assert ds._gen is not None
    clone = pickle.loads(pickle.dumps(ds))  # the open session stays behind; the clone opens its own
    assert clone._gen is None
    np.testing.assert_array_equal(clone[1][0], image)


def test_the_top_up_plan_of_a_folder_gives_the_images_balance_writes(tmp_path, model):
    data = make_dataset(tmp_path / "data", (4, 3, 1, 0))
    ds = GeneratedDataset.from_folder(data, model=model, seed=2, batch_size=2)
    assert ds.counts == (0, 1, 3, 4)
    out = tmp_path / "gen"
    assert call_main(main, ["--balance", str(data), "--out", str(out), "--model", model, "--seed", "2"]).exit_code == 0
    for i in range(len(ds)):
        s, k = ds.locate(i)
        with Image.open(next(out.glob(f"*/stage{s}_seed2_{k:08d}.png"))) as im:
            np.testing.assert_array_equal(ds[i][0], np.asarray(im))


def test_bad_plans_are_refused(model):
    with pytest.raises(ValueError, match="4 stages"):
        GeneratedDataset([1, 2], model=model)
    with pytest.raises(ValueError, match=">= 0"):
        GeneratedDataset({0: -1}, model=model)
    with pytest.raises(ValueError, match="batch_size"):
        GeneratedDataset([1, 1, 1, 1], model=model, batch_size=0)


def test_dataloader_gives_identical_items_with_0_1_and_2_workers(model):
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader

    ds = GeneratedDataset([5, 2, 3, 6], model=model, seed=4, batch_size=4, threads=1)
    seen = {}
    for workers in (0, 1, 2):
        loader = DataLoader(ds, batch_size=3, shuffle=False, num_workers=workers)
        images, stages = zip(*[(x, y) for x, y in loader])
        seen[workers] = (torch.cat(images).numpy(), torch.cat(stages).numpy())
    for workers in (1, 2):
        np.testing.assert_array_equal(seen[workers][0], seen[0][0])
        np.testing.assert_array_equal(seen[workers][1], seen[0][1])
    assert seen[0][0].shape == (16, 32, 32) and seen[0][1].tolist() == ds.labels.tolist()
    direct = np.stack([ds[i][0] for i in range(len(ds))])
    np.testing.assert_array_equal(seen[0][0], direct)
    # shuffled, in two workers: every item is still the image of its index
    order = [int(i) for i in torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))]
    loader = DataLoader(ds, batch_size=1, sampler=order, num_workers=2)
    for i, (x, y) in zip(order, loader):
        np.testing.assert_array_equal(x[0].numpy(), direct[i])


@pytest.mark.slow
def test_spawned_workers_get_the_dataset_pickled_and_the_same_items(model):
    """Spawn (the default on macOS and Windows) pickles the dataset into each worker: no session travels."""
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader

    ds = GeneratedDataset([5, 2, 3, 6], model=model, seed=4, batch_size=4, threads=1)
    direct = np.stack([ds[i][0] for i in range(len(ds))])
    order = [int(i) for i in torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))]
    loader = DataLoader(ds, batch_size=1, sampler=order, num_workers=2, multiprocessing_context="spawn")
    for i, (x, y) in zip(order, loader):
        np.testing.assert_array_equal(x[0].numpy(), direct[i])


def test_forked_workers_after_use_in_the_main_process_do_not_hang(model):
    """Used in the main process first (its session's threads started), then in forked DataLoader workers: the
    workers inherit that session without its threads and must not wait on them. In a child process with a
    time limit, so that a hang fails the test instead of stopping the suite."""
    pytest.importorskip("torch")
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from torch.utils.data import DataLoader\n"
        "from cgan.runtime import GeneratedDataset\n"
        f"ds = GeneratedDataset({{0: 6, 1: 6, 2: 6, 3: 6}}, model={model!r})\n"
        "first = [int(y) for _, y in DataLoader(ds, batch_size=None, num_workers=0)]\n"
        "again = [int(y) for _, y in DataLoader(ds, batch_size=None, num_workers=2, multiprocessing_context='fork')]\n"
        "print(first == again == ds.labels.tolist(), len(again))\n"
    )
    import os
    import signal

    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the workers too
        proc.communicate()
        pytest.fail("the forked DataLoader workers hung")
    assert proc.returncode == 0, err
    assert out.split() == ["True", "24"], out + err


def test_a_bogus_engine_provider_or_threads_is_refused_when_the_dataset_is_made(model):
    """Not at the first item (inside a DataLoader worker, far from the line that made the dataset)."""
    from cgan.runtime import CganError

    with pytest.raises(CganError, match="unknown engine 'turbo'"):
        GeneratedDataset([1, 1, 1, 1], model=model, engine="turbo")
    with pytest.raises(CganError, match="provider 'tpu' is not available"):
        GeneratedDataset([1, 1, 1, 1], model=model, provider="tpu")
    with pytest.raises(ValueError, match="threads must be a whole number >= 1"):
        GeneratedDataset([1, 1, 1, 1], model=model, threads=0)


def test_a_negative_index_out_of_range_is_named_as_given(model):
    ds = GeneratedDataset([1, 2, 3, 0], model=model)
    assert ds.locate(-6) == (0, 0)
    with pytest.raises(IndexError, match=r"^index -7 out of range for a dataset of 6 images$"):
        ds[-7]


def test_metadata_declaring_more_stages_than_the_graph_is_refused_when_the_dataset_is_made(tmp_path):
    from _planted import planted_model
    from cgan.runtime import ModelError

    broken = planted_model("stages5", tmp_path / "stages5.onnx")
    with pytest.raises(ModelError, match=r"cannot run stage 4 .*declares 5 stages"):
        GeneratedDataset([1, 1, 1, 1, 1], model=broken)
