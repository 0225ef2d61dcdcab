"""Held-out splits by subject: parsing, stratification, the never-on-both-sides property, the fallback."""

from __future__ import annotations

import numpy as np
import pytest

from cgan.train.data import ImageSet
from cgan.train.eval.splits import SplitError, make_split, split_image_set, subject_ids

FOLDERS = ["Non Demented", "Very mild Dementia", "Mild Dementia", "Moderate Dementia"]


def test_oasis_names_give_the_subject():
    names = ["Non Demented/OAS1_0001_MR1_mpr-1_100.jpg", "Non Demented/OAS1_0001_MR1_mpr-1_101.jpg",
             "Mild Dementia/oas1_0302_MR2_mpr-3_120.jpg", "Mild Dementia/OAS2_0002_MR1_x.png"]
    ids, note = subject_ids(names)
    assert ids.tolist() == ["OAS1_0001", "OAS1_0001", "oas1_0302", "OAS2_0002"]
    assert "OASIS" in note


def test_group_regex_first_group_or_whole_match_and_unmatched_names():
    names = ["a/sub-07_slice3.png", "a/sub-07_slice4.png", "b/sub-12_slice1.png"]
    assert subject_ids(names, r"sub-(\d+)")[0].tolist() == ["07", "07", "12"]
    assert subject_ids(names, r"sub-\d+")[0].tolist() == ["sub-07", "sub-07", "sub-12"]
    ids, note = subject_ids([*names, "b/loose.png"], r"sub-(\d+)")
    assert len(set(ids.tolist())) == 3 and "1 of 4 names do not match" in note
    assert subject_ids(names)[0] is None  # no OASIS name: no subjects
    with pytest.raises(SplitError, match="not a valid regular expression"):
        subject_ids(names, r"sub-(")


def _random_names(rng: np.random.Generator) -> tuple[list[str], np.ndarray]:
    n_subj = int(rng.integers(8, 60))
    stages = rng.integers(0, 4, n_subj)
    stages[:8] = np.arange(8) % 4  # every stage present with two subjects at least
    names, labels = [], []
    for s in range(n_subj):
        for j in range(int(rng.integers(1, 9))):
            names.append(f"{FOLDERS[stages[s]]}/OAS1_{int(1000 + s * 7):04d}_MR{int(rng.integers(1, 3))}_slice_{j}.jpg")
            labels.append(stages[s])
    order = rng.permutation(len(names))  # files in any order
    return [names[i] for i in order], np.asarray(labels)[order]


def test_no_subject_on_both_sides_over_random_sets():
    """Property over random names, slice counts, stage mixes and seeds: held-out, validation and fit
    parts are disjoint in subjects, cover every image, and every stage with 2+ subjects has one held out."""
    rng = np.random.default_rng(2024)
    for trial in range(60):
        names, labels = _random_names(rng)
        ids, _ = subject_ids(names)
        split = make_split(labels, ids, holdout=float(rng.uniform(0.1, 0.4)), seed=trial)
        fit, val, held = split.fit, split.val, split.held
        assert split.kind == "subject"
        assert sorted(np.concatenate([fit, val, held]).tolist()) == list(range(len(names)))
        sides = [set(ids[fit]), set(ids[val]), set(ids[held])]
        assert not (sides[0] & sides[1]) and not (sides[0] & sides[2]) and not (sides[1] & sides[2])
        for s in range(4):
            subjects = {i for i, lab in zip(ids, labels) if lab == s}
            if len(subjects) >= 2:
                assert (labels[held] == s).any(), (trial, s)


def test_stratified_by_stage_at_subject_level_and_seeded():
    # 10, 5, 3, 2 subjects with 4 slices each: 20% of each stage's subjects held out (at least one)
    names, labels = [], []
    sid = 0
    for stage, count in enumerate([10, 5, 3, 2]):
        for _ in range(count):
            sid += 1
            names += [f"{FOLDERS[stage]}/OAS1_{sid:04d}_MR1_{j}.jpg" for j in range(4)]
            labels += [stage] * 4
    ids, _ = subject_ids(names)
    labels = np.asarray(labels)
    split = make_split(labels, ids, holdout=0.2, seed=0)
    info = split.describe(labels, 4)
    assert info["subjects_held_out"] == [2, 1, 1, 1]
    assert info["images_held_out"] == [8, 4, 4, 4]
    assert [a + b + c for a, b, c in zip(info["subjects_fit"], info["subjects_validation"], info["subjects_held_out"])] \
        == [10, 5, 3, 2]
    again = make_split(labels, ids, holdout=0.2, seed=0)
    other = make_split(labels, ids, holdout=0.2, seed=1)
    assert np.array_equal(split.held, again.held) and not np.array_equal(split.held, other.held)


def test_without_subjects_the_split_falls_back_to_images_and_says_so():
    labels = np.repeat(np.arange(4), [100, 40, 10, 3])
    plain = ImageSet(images=np.zeros((len(labels), 8, 8), np.uint8), labels=labels, class_names=FOLDERS,
                     description="synthetic OASIS-like set (test)")
    split = split_image_set(plain, seed=0)
    assert split.kind == "image" and "split by image" in split.note and "no subjects" in split.note
    assert np.bincount(labels[split.held], minlength=4).tolist() == [20, 8, 2, 1]
    assert "subjects_held_out" not in split.describe(labels, 4)
    named = ImageSet(images=plain.images, labels=labels, class_names=FOLDERS, description="x",
                     files=[f"{FOLDERS[s]}/img_{i}.png" for i, s in enumerate(labels)])
    assert split_image_set(named).kind == "image"
    with pytest.raises(SplitError, match="matches none"):
        split_image_set(named, group_regex=r"sub-(\d+)")


def test_loaded_sets_carry_the_relative_paths_of_the_decoded_images(tmp_path):
    """What the subject ids are parsed from: one path per decoded image, in image order, unreadable files left out."""
    from PIL import Image

    from cgan.train.data import load_image_set

    for s, folder in enumerate(FOLDERS):
        (tmp_path / "d" / folder).mkdir(parents=True)
        for j in range(2):
            Image.fromarray(np.full((8, 8), 60 * s + j, np.uint8)).save(tmp_path / "d" / folder / f"OAS1_{s:04d}_MR1_{j}.png")
    (tmp_path / "d" / FOLDERS[1] / "OAS1_0001_MR1_9 (broken).png").write_bytes(b"not a png")
    for _ in range(2):  # decoded, then from the cache
        data = load_image_set(tmp_path / "d", img_size=8, cache_dir=tmp_path / "cache", log=lambda _m: None)
        assert len(data.files) == len(data.labels) == 8
        assert "OAS1_0001_MR1_9 (broken).png" not in " ".join(data.files)
        for path, img in zip(data.files, np.asarray(data.images)):
            s, j = FOLDERS.index(path.split("/")[0]), int(path[-5])
            assert int(img[0, 0]) == 60 * s + j
        assert split_image_set(data).kind == "subject"
