"""The learning curve's cost follows the run: its fits never train longer than the judges (--judge-epochs,
--quick), and an epoch on a small set is one pass over its fit side, not the judges' 2,560 draws."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from _subjects import stage_images  # noqa: E402
from _train_setup import torch_threads_kept  # noqa: E402

from cgan.runtime.contract import OASIS_FOLDERS  # noqa: E402
from cgan.train.data import ImageSet  # noqa: E402
from cgan.train.eval.augment import CurveConfig, run_curve  # noqa: E402
from cgan.train.eval.judges import Judge, JudgeConfig, default_judges  # noqa: E402
from cgan.train.eval.networks import build  # noqa: E402
from cgan.train.eval.splits import split_image_set  # noqa: E402

K = len(OASIS_FOLDERS)


class _Real:
    """Real images of the asked stage as the 'generated' pool."""

    def __init__(self, image_set):
        self.set = image_set

    def generate(self, stage, n, seed):
        idx = np.flatnonzero(self.set.labels == stage)
        return np.asarray(self.set.images[np.resize(idx, n)])


@pytest.fixture(autouse=True)
def _one_thread():
    with torch_threads_kept():
        torch.set_num_threads(1)
        yield


def test_epoch_draws_follow_the_fit_side_and_the_default_set_keeps_its_schedule():
    from cgan.train.eval.augment import curve_fit_config
    from cgan.train.eval.fit import epoch_draws

    cfg = JudgeConfig(epoch_images=2560, batch_size=64)
    assert epoch_draws(cfg, 400) == 400  # the --quick judge set's fit side: one pass
    assert epoch_draws(cfg, 10) == 64  # at least one batch
    assert epoch_draws(cfg, 2608) == 2560  # the default judge set: the judges' own epoch, as before
    small = default_judges(max_epochs=30)[0]
    c = curve_fit_config(small, 8, 2608)
    assert (c.max_epochs, c.min_epochs, c.epoch_images, c.average_last) == (8, 8, 2560, 2)
    c = curve_fit_config(default_judges(max_epochs=3)[0], 8, 400)  # --quick: judges at 3 epochs
    assert (c.max_epochs, c.epoch_images, c.average_last) == (3, 400, 1)


def test_curve_fits_train_no_longer_than_the_judges_on_a_small_set():
    labels = np.repeat(np.arange(K), 20)
    image_set = ImageSet(images=stage_images(5, labels, 32), labels=labels, class_names=list(OASIS_FOLDERS),
                         description="tiny (test)")
    split = split_image_set(image_set, seed=0)
    cfg = JudgeConfig(arch="small", input_size=16, width=4, feature_dim=8, batch_size=16, max_epochs=2, min_epochs=2)
    judge = Judge(build("small", K, input_size=16, width=4, feature_dim=8), cfg, list(OASIS_FOLDERS), img_size=32,
                  dataset={}, metrics={})
    out = run_curve(CurveConfig(repeats=1, fractions=(1.0,), epochs=8, max_per_stage=8), image_set=image_set,
                    split=split, judges=[judge], source=_Real(image_set), device=torch.device("cpu"),
                    log=lambda _m: None)
    j = out["per_judge"][0]
    runs = j["curve"]["a"][0]["runs"] + j["curve"]["b"][0]["runs"] + j["c"]["runs"]
    assert [r["epochs"] for r in runs] == [2, 2, 2]  # --augment-epochs 8 asked, the judges train 2
    n_fit = len(split.fit)
    assert j["epoch_images"] == n_fit < 2560
    assert all(r["steps"] == 2 * math.ceil(n_fit / 16) for r in runs)
