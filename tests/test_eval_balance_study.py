"""cgan-eval --balance-study: training sets drawn by subject in OASIS-like shares, the top-ups that
cgan-run --balance plans and writes, a generator of noise told apart, and the sentence read off the
intervals."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from _cli import call_main  # noqa: E402
from _models import model_file  # noqa: E402
from _subjects import write_subject_set  # noqa: E402
from _train_setup import torch_threads_kept  # noqa: E402
from conftest import run_script  # noqa: E402
from PIL import Image  # noqa: E402

from cgan.runtime.balance import balance_plan  # noqa: E402
from cgan.runtime.contract import OASIS_FOLDERS  # noqa: E402
from cgan.train.data import load_image_set  # noqa: E402
from cgan.train.eval.balance_stats import size_sentence, summarise  # noqa: E402
from cgan.train.eval.balance_study import (  # noqa: E402
    ARMS, StudyConfig, apportion, arm_training_set, draw_subjects, fit_side, half_target, run_study, subject_counts,
    synthetic_shares, topup_plan)
from cgan.train.eval.judge_set import QUICK_SUBJECTS_PER_STAGE, JudgeSetSpec, plan  # noqa: E402
from cgan.train.eval.judges import JudgeConfig  # noqa: E402
from cgan.train.eval.splits import make_split, split_image_set  # noqa: E402

K = len(OASIS_FOLDERS)


@pytest.fixture(autouse=True)
def _one_thread():
    with torch_threads_kept():
        torch.set_num_threads(1)
        yield


# ---------------------------------------------------------------- proportions and the subject split

@pytest.mark.parametrize("per_stage", [256, QUICK_SUBJECTS_PER_STAGE])
def test_training_sets_keep_oasis_shares_and_never_share_a_subject_with_the_held_out_side(per_stage):
    p = plan(JudgeSetSpec(subjects_per_stage=per_stage))
    groups = np.array([f"OAS1_{n:04d}" for n in p.subject], dtype=object)
    split = make_split(p.stage, groups, holdout=0.25, seed=3)
    side = fit_side(split, p.stage, K)
    shares = np.asarray(synthetic_shares())
    assert abs(shares.sum() - 1) < 1e-9 and 0.75 < shares[0] < 0.78 and 0.019 < shares[3] < 0.021
    held_or_val = set(groups[split.held]) | set(groups[split.val])
    full_n = None
    for fraction in (1.0, 0.25):
        asked, counts = subject_counts(side.available, shares, fraction)
        full_n = asked if fraction == 1.0 else full_n
        assert (counts <= side.available).all() and (counts >= 1).all()
        assert np.all(np.abs(counts - shares * asked) <= 1.0), (counts, shares * asked)  # within one subject
        for r in range(3):
            idx, chosen = draw_subjects(side, counts, np.random.default_rng([r, int(fraction * 4)]))
            drawn = set(groups[idx])
            assert not drawn & held_or_val  # no subject on both sides
            assert set(idx) <= set(split.fit.tolist())
            assert [len(c) for c in chosen] == counts.tolist()
            assert [len(set(groups[idx][p.stage[idx] == s])) for s in range(K)] == counts.tolist()
    # "all the subjects the shares allow": one more would ask a stage for more subjects than it has
    assert (apportion(full_n + 1, shares) > side.available).any()
    assert round(full_n / 4) == subject_counts(side.available, shares, 0.25)[0]


def test_a_folder_keeps_its_own_proportions_at_full_size_and_a_quarter_of_them():
    available = [40, 9, 4, 2]
    own = np.asarray(available) / sum(available)
    assert subject_counts(available, own)[1].tolist() == available
    asked, quarter = subject_counts(available, own, 0.25)
    assert asked == 14 and quarter.tolist() == [10, 2, 1, 1]


# ---------------------------------------------------------------- the top-ups are cgan-run --balance's

def _dataset(root, counts):
    for name, n in zip(OASIS_FOLDERS, counts):
        (root / name).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.full((32, 32), 10 * i, np.uint8)).save(root / name / f"real{i:03d}.png")
    return root


@pytest.mark.parametrize("arm", ["d", "e"])
def test_the_generated_top_up_is_what_cgan_run_balance_plans_and_writes(tmp_path, arm):
    from cgan.runtime.cli import main
    from cgan.train.eval.sources import OnnxSource

    counts = [7, 4, 2, 1]
    data = _dataset(tmp_path / "data", counts)
    extra = [] if arm == "d" else ["--target", str(half_target(counts))]
    plan_of_folder = balance_plan(data, target=None if arm == "d" else half_target(counts))
    assert topup_plan(arm, counts) == plan_of_folder.generate
    assert topup_plan("d", counts) == (0, 3, 5, 6) and topup_plan("e", counts) == (0, 0, 2, 3)
    out = tmp_path / "gen"
    result = call_main(main, ["--balance", str(data), "--out", str(out), "--model", str(model_file("gen32")),
                              "--seed", "3", *extra])
    assert result.exit_code == 0, result.stderr
    written = [np.stack([np.asarray(Image.open(f)) for f in sorted((out / name).glob("*.png"))])
               if (out / name).is_dir() else np.zeros((0, 32, 32), np.uint8) for name in OASIS_FOLDERS]
    source = OnnxSource(model_file("gen32"), provider="cpu")
    pool = [source.generate(s, 8, 3) for s in range(K)]
    x = np.zeros((sum(counts), 32, 32), np.uint8)
    y = np.repeat(np.arange(K), counts)
    xa, ya, sampler, weights, added = arm_training_set(arm, x, y, pool, K)
    assert tuple(added) == plan_of_folder.generate and sampler == "plain" and weights is None
    at = len(y)
    for s in range(K):
        n = added[s]
        np.testing.assert_array_equal(xa[at : at + n], written[s])
        assert (ya[at : at + n] == s).all()
        at += n


def test_free_arms_add_nothing_and_weight_the_loss_by_inverse_counts():
    x = np.zeros((14, 8, 8), np.uint8)
    y = np.repeat(np.arange(K), [7, 4, 2, 1])
    for arm, sampler in (("a", "plain"), ("b", "balanced"), ("c", "plain")):
        xa, ya, got, weights, added = arm_training_set(arm, x, y, [np.zeros((0, 8, 8), np.uint8)] * K, K)
        assert len(xa) == 14 and got == sampler and added == [0] * K
    weights = arm_training_set("c", x, y, [], K)[3]
    np.testing.assert_allclose(weights, 14 / (4 * np.array([7, 4, 2, 1])))


# ---------------------------------------------------------------- the sentence follows the intervals

def _held(subjects=12, slices=2):
    y = np.repeat(np.arange(K), subjects * slices)
    groups = np.array([f"s{s}-{i // slices}" for s in range(K) for i in range(subjects * slices)], dtype=object)
    return y, groups


def _pred(y, right, seed):
    """Predictions right with probability ``right`` per image (wrong ones: the next stage)."""
    ok = np.random.default_rng(seed).random(len(y)) < right
    return np.where(ok, y, (y + 1) % K)


@pytest.mark.parametrize("want", ["met", "inconclusive", "not met"])
def test_the_verdict_and_sentence_follow_the_interval_of_the_difference(want):
    y, groups = _held()
    preds = {"a": [_pred(y, 0.4, r) for r in range(3)], "b": [_pred(y, 0.6, 10 + r) for r in range(3)],
             "c": [_pred(y, 0.4, 20 + r) for r in range(3)]}  # (b): the best free arm
    preds["d"] = {"met": [_pred(y, 0.95, 30 + r) for r in range(3)],
                  "inconclusive": [p.copy() for p in preds["b"]],  # no different from (b)
                  "not met": [_pred(y, 0.25, 30 + r) for r in range(3)]}[want]
    preds["e"] = [_pred(y, 0.25, 40 + r) for r in range(3)]  # worse than (b) in every case
    s = summarise(preds, y, groups, K, replicates=400, seed=0)
    assert s["best_free"] == "b" and s["verdict"] == want, s["versus_best_free"]
    assert s["versus_best_free"]["e"]["verdict"] == "not met" and s["versus_best_free"]["e"]["ci"][1] < 0
    lo, hi = s["versus_best_free"]["d"]["ci"]
    assert {"met": lo > 0, "inconclusive": lo <= 0 <= hi, "not met": hi < 0}[want]
    arms = dict(ARMS)
    text = size_sentence(s, arms, [30, 6, 2, 1])
    assert text.startswith("With 39 training subjects (30/6/2/1 by stage) the best arm is "
                           f"({'d' if want == 'met' else 'b'}) ")
    assert "the best arm without generated images, (b) class-balanced sampler" in text
    assert text.split(": ")[-2] == want
    for arm in "abcde":
        a = s["arms"][arm]
        assert a["balanced_accuracy"]["ci"][0] <= a["balanced_accuracy"]["value"] <= a["balanced_accuracy"]["ci"][1]
        assert len(a["recall"]["value"]) == K and a["macro_f1"]["value"] <= 1


def test_figures_are_exact_on_a_known_confusion():
    y, groups = _held(subjects=2, slices=1)
    pred = np.array([0, 0, 1, 0, 2, 2, 3, 3])  # Very mild: one of two right
    s = summarise({a: [pred] * 3 for a in "abcde"}, y, groups, K, replicates=50)
    a = s["arms"]["a"]
    assert a["recall"]["value"] == [1.0, 0.5, 1.0, 1.0] and a["balanced_accuracy"]["value"] == 0.875
    # F1: Non-demented 2*2/(2+3), Very mild 2*1/(2+1), Mild 1, Moderate 1
    assert a["macro_f1"]["value"] == pytest.approx((0.8 + 2 / 3 + 1 + 1) / 4)
    assert s["verdict"] == "inconclusive"  # equal arms: no difference either way


# ---------------------------------------------------------------- a useless generator is told apart

def _subject_set(tmp_path, per_stage=40, slices=3):
    root = write_subject_set(tmp_path / "data", subjects_per_stage=(per_stage,) * K, slices=slices, img_size=32)
    return load_image_set(root, img_size=32, cache_dir=tmp_path / "cache", log=lambda _m: None)


class _Noise:
    def generate(self, stage, n, seed):
        return np.random.default_rng([seed, stage]).integers(0, 256, size=(n, 32, 32), dtype=np.uint8)


@pytest.mark.slow
def test_a_generator_of_noise_makes_the_top_up_worse_than_a_balanced_sampler(tmp_path):
    image_set = _subject_set(tmp_path)
    split = split_image_set(image_set, holdout=0.25, seed=0)
    judge = JudgeConfig(arch="small", input_size=32, width=8, feature_dim=32, batch_size=32, max_epochs=8,
                        min_epochs=8, average_last=2, epoch_images=512, augment="shift,intensity")
    run = run_study(StudyConfig(repeats=3, epochs=8, sizes=(1.0,)), image_set=image_set, split=split,
                    source=_Noise(), judge_config=judge, device=torch.device("cpu"), seed=0,
                    shares=synthetic_shares(), log=lambda _m: None)
    s = run.result["per_size"][0]
    b, d = s["arms"]["b"]["balanced_accuracy"], s["arms"]["d"]["balanced_accuracy"]
    free = max(s["arms"][a]["balanced_accuracy"]["value"] for a in "abc")
    assert free > 0.45, s["arms"]  # real subjects alone teach something (chance: 0.25)
    assert d["value"] < b["value"] - 0.1, (b, d)
    assert s["versus_best_free"]["d"]["verdict"] == "not met"
    # noise labelled as the rare stages: real images of those stages are read as the common one
    rare = run.result["stage_order"][0]
    assert s["arms"]["d"]["recall"]["value"][rare] < s["arms"]["b"]["recall"]["value"][rare]


# ---------------------------------------------------------------- the command

def test_balance_study_refuses_too_few_repeats_and_the_augment_flag_in_one_line(tmp_path):
    from cgan.train.eval.cli import app
    from typer.testing import CliRunner

    for args, word in ((["--balance-study", "--repeats", "2"], "--repeats"),
                       (["--balance-study", "--augment"], "--augment and --balance-study")):
        result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "out")])
        assert result.exit_code != 0
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and word in lines[0], result.output
        assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_balance_study_on_a_folder_writes_its_report(tmp_path):
    data = write_subject_set(tmp_path / "data", subjects_per_stage=(16, 6, 4, 3), slices=3, img_size=32)
    out = tmp_path / "study"
    result = run_script("cgan-eval", str(model_file("gen32")), "--data", str(data), "--balance-study",
                        "--judge-epochs", "1", "--out", str(out), "--cache-dir", str(tmp_path / "cache"),
                        env={"CGAN_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    study = report["balance_study"]
    assert study["shares_from"] == "the data's fit side"
    assert study["sizes"][0]["subjects"] == study["fit_subjects_available"]  # the folder's own proportions, all of it
    assert len(study["runs"]) == 2 * 3 * len(ARMS) and all(r["epochs"] == 1 for r in study["runs"])
    md = (out / "report.md").read_text()
    assert len(report["sentences"]) == 2 and all(line in md and line in report["sentence"] for line in report["sentences"])
    assert (out / "balance_study.png").is_file()
    printed = " ".join(result.stdout.split())  # the summary's prose is wrapped at 100 columns
    assert "balance study 30/30" in printed and all(line in printed for line in report["sentences"])
