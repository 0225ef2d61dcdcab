"""cgan-run --balance: the plan, the files it writes, the manifest, re-runs and grown plans."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _cli import call_main
from _models import gen, model  # noqa: F401 - fixtures
from cgan.runtime.balance import balance_plan, plan_counts
from cgan.runtime.cli import main
from cgan.runtime.fileio import sha256_file
from cgan.runtime.manifest import read_manifest, regenerate

OASIS = ("Non Demented", "Very mild Dementia", "Mild Dementia", "Moderate Dementia")


def make_dataset(root: Path, counts, names=OASIS) -> Path:
    """Class folders holding ``counts`` tiny real images each (plus a non-image file, which must not count)."""
    for name, n in zip(names, counts):
        d = root / name
        d.mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.full((8, 8), i, np.uint8)).save(d / f"real{i:03d}.png")
        (d / "notes.txt").write_text("not an image\n")
    return root


def balance(model, data, out, *args):
    return call_main(main, ["--balance", str(data), "--out", str(out), "--model", model, "--batch-size", "3", *args])


def tree(out: Path) -> dict[str, bytes]:
    """Every generated PNG under ``out`` (relative path -> bytes)."""
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*.png"))}


# ---------------------------------------------------------------- the plan

def test_plan_counts_for_each_rule():
    real = [10, 6, 3, 0]
    assert plan_counts(real) == (0, 4, 7, 10)  # up to the largest stage
    assert plan_counts(real, target=5) == (0, 0, 2, 5)
    assert plan_counts(real, ratio="0.5") == (5, 3, 1, 0)  # floor(0.5 x 3) = 1
    assert plan_counts([100], ratio=0.29) == (29,)  # exact, not 28.999... floored
    assert plan_counts(real, stages=[2]) == (0, 0, 7, 0)


def test_plan_of_a_folder_with_known_counts(tmp_path):
    data = make_dataset(tmp_path / "data", (7, 4, 2, 1))
    plan = balance_plan(data)
    assert plan.real == (7, 4, 2, 1)
    assert plan.generate == (0, 3, 5, 6)
    assert plan.folders == OASIS


def test_plan_finds_stage_folders_case_insensitively_under_data(tmp_path):
    data = make_dataset(tmp_path / "ds" / "Data", (3, 1, 2, 0), names=("STAGE0", "stage1", "Stage2", "stage3"))
    plan = balance_plan(tmp_path / "ds", target=4)
    assert plan.real == (3, 1, 2, 0)
    assert plan.generate == (1, 3, 2, 4)
    assert plan.folders == ("STAGE0", "stage1", "Stage2", "stage3")
    assert data.name == "Data"


def test_the_plan_line_says_which_stages_change_and_what_the_ratio_means(tmp_path, model):
    data = make_dataset(tmp_path / "data", (20, 8, 4, 1))
    one = balance(model, data, tmp_path / "one", "--stage", "moderate")
    assert one.exit_code == 0, one.stderr
    line = one.stdout.splitlines()[0]
    assert "(stage 3 (Moderate) to the largest stage's 20 images; the other stages unchanged;" in line, line
    assert "every stage" not in line
    ratio = balance(model, data, tmp_path / "ratio", "--ratio", "0.5")
    assert ratio.exit_code == 0, ratio.stderr
    line = ratio.stdout.splitlines()[0]
    assert "--ratio 0.5: every stage gets floor(0.5 x its real images) generated, so a stage gets more the more real images it has" in line, line
    target = balance(model, data, tmp_path / "target", "--target", "10", "--stage", "2,3")
    line = target.stdout.splitlines()[0]
    assert "stage 2 (Mild) and stage 3 (Moderate) to 10 images, real and generated; the other stages unchanged" in line, line


# ---------------------------------------------------------------- writing

def test_written_counts_equal_the_plan_and_the_plan_is_printed_first(tmp_path, model):
    data = make_dataset(tmp_path / "data", (6, 4, 2, 1))
    out = tmp_path / "gen"
    result = balance(model, data, out)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("balance plan for OASIS layout")
    row = {line.split()[0]: line.split()[-5:] for line in lines[2:7]}  # stage index -> real, generated, total, there, to write
    assert row["3"] == ["1", "5", "6", "0", "5"]
    assert row["all"] == ["13", "11", "24", "0", "11"]
    assert lines[-1].startswith("wrote 11 PNG images")
    for name, want in zip(OASIS, (0, 2, 4, 5)):
        assert len(list((out / name).glob("*.png"))) == want if want else not (out / name).exists()
    assert [p.name for p in (out / "Moderate Dementia").iterdir()] and sorted(p.name for p in (out / "Moderate Dementia").iterdir()) == [
        f"stage3_seed0_{k:08d}.png" for k in range(5)
    ]
    rows = read_manifest(out / "generated.csv")
    assert len(rows) == 11 and {r.file for r in rows} == set(tree(out))
    assert not list(data.rglob("stage*_seed*")), "nothing generated may land among the real files"


def test_second_run_is_a_no_op_that_says_so(tmp_path, model):
    data = make_dataset(tmp_path / "data", (3, 1, 1, 2))
    out = tmp_path / "gen"
    assert balance(model, data, out).exit_code == 0
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    again = balance(model, data, out)
    assert again.exit_code == 0, again.stderr
    assert again.stdout.splitlines()[-1].startswith("nothing to do:")
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_grown_plan_writes_only_the_difference_and_equals_one_run_of_it(tmp_path, model):
    data = make_dataset(tmp_path / "data", (4, 2, 1, 0))
    grown, single = tmp_path / "grown", tmp_path / "single"
    assert balance(model, data, grown).exit_code == 0  # to 4 per stage: 0, 2, 3, 4
    first = {p: p.stat().st_mtime_ns for p in grown.rglob("*.png")}
    result = balance(model, data, grown, "--target", "9")  # to 9: 5, 7, 8, 9
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[-1].startswith("wrote 20 PNG images")  # 29 - 9
    assert all(p.stat().st_mtime_ns == t for p, t in first.items()), "images of the first run were rewritten"
    assert balance(model, data, single, "--target", "9").exit_code == 0
    assert tree(grown) == tree(single)  # byte for byte, names included
    assert (grown / "generated.csv").read_bytes() == (single / "generated.csv").read_bytes()
    ks = sorted(r.k for r in read_manifest(grown / "generated.csv") if r.stage == 3)
    assert ks == list(range(9))  # the index sequence continued


def test_manifest_regenerates_every_listed_image(tmp_path, model, gen):
    data = make_dataset(tmp_path / "data", (5, 3, 2, 1))
    out = tmp_path / "gen"
    assert balance(model, data, out, "--seed", "11").exit_code == 0
    with open(out / "generated.csv", newline="") as f:
        header = next(csv.reader(f))
    assert header == ["file", "stage", "model_sha256", "seed", "k", "noise_version"]
    rows = read_manifest(out / "generated.csv")
    assert len(rows) == 9 and {r.model_sha256 for r in rows} == {sha256_file(model)} and {r.seed for r in rows} == {11}
    for r in rows:
        with Image.open(out / r.file) as im:
            np.testing.assert_array_equal(np.asarray(im), regenerate(r, gen))


def test_balancing_into_the_dataset_itself_never_counts_generated_as_real(tmp_path, model):
    data = make_dataset(tmp_path / "data", (3, 1, 2, 3))
    result = balance(model, data, data)
    assert result.exit_code == 0, result.stderr
    assert len(list((data / "Very mild Dementia").glob("*.png"))) == 3
    again = balance(model, data, data)
    assert "nothing to do" in again.stdout and again.stdout.splitlines()[2].split()[-5:] == ["3", "0", "3", "0", "0"]


# ---------------------------------------------------------------- refusals

def test_a_planned_file_that_exists_unlisted_is_refused_and_nothing_is_written(tmp_path, model):
    data = make_dataset(tmp_path / "data", (3, 1, 3, 3))
    out = tmp_path / "gen"
    (out / "Very mild Dementia").mkdir(parents=True)
    (out / "Very mild Dementia" / "stage1_seed0_00000001.png").write_bytes(b"mine")
    result = balance(model, data, out)
    assert result.exit_code == 1
    assert "stage1_seed0_00000001.png" in result.stderr and "--overwrite" in result.stderr
    assert not (out / "generated.csv").exists() and sorted(p.name for p in out.rglob("*")) == ["Very mild Dementia", "stage1_seed0_00000001.png"]


def test_a_manifest_of_another_seed_is_refused(tmp_path, model):
    data = make_dataset(tmp_path / "data", (2, 1, 1, 1))
    out = tmp_path / "gen"
    assert balance(model, data, out).exit_code == 0
    result = balance(model, data, out, "--seed", "5", "--target", "3")
    assert result.exit_code == 1 and "seed 0" in result.stderr and "another --out" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 2  # the model line, then one error line


@pytest.mark.parametrize(
    "args, message",
    [
        (["--ratio", "-1"], "--ratio must be between 0 and 10,000, got -1"),
        (["--ratio", "lots"], "--ratio must be a number"),
        (["--target", "3", "--ratio", "1"], "not both"),
        (["--format", "npy"], "--format npy does not apply"),
        (["--layout", "oasis"], "--layout does not apply"),
    ],
)
def test_bad_balance_options_are_one_line(tmp_path, model, args, message):
    data = make_dataset(tmp_path / "data", (2, 1, 1, 1))
    result = balance(model, data, tmp_path / "gen", *args)
    assert result.exit_code == 1 and message in result.stderr
    assert result.stderr.count("\n") == 1 and not (tmp_path / "gen").exists()


def test_a_folder_without_a_layout_is_named(tmp_path, model):
    (tmp_path / "data" / "cats").mkdir(parents=True)
    result = balance(model, tmp_path / "data", tmp_path / "gen")
    assert result.exit_code == 1 and "no dataset layout recognised" in result.stderr and "'cats'" in result.stderr


def test_a_model_of_other_class_folders_balances_a_dataset_of_those_folders(tmp_path, model):
    """A model trained with cgan-train --classes carries its folders' names as stage names: --balance finds them."""
    import json

    import onnx

    names = ["healthy", "early", "middle", "late"]
    m = onnx.load(model)
    for prop in m.metadata_props:
        if prop.key == "cgan.stage_names":
            prop.value = json.dumps(names)
    onnx.save(m, tmp_path / "classes.onnx")
    data = make_dataset(tmp_path / "data", (4, 1, 2, 3), names=names)
    out = tmp_path / "gen"
    result = balance(str(tmp_path / "classes.onnx"), data, out)
    assert result.exit_code == 0, result.stderr
    assert "class-folder layout" in result.stdout
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == sorted(
        [f"early/stage1_seed0_{k:08d}.png" for k in range(3)] + [f"middle/stage2_seed0_{k:08d}.png" for k in range(2)]
        + ["late/stage3_seed0_00000000.png"])
    # the default model's stage names are no folder names here: the layout error stays the one line it was
    other = balance(model, data, tmp_path / "other")
    assert other.exit_code == 1 and "no dataset layout recognised" in other.stderr


def test_images_generated_into_the_dataset_earlier_are_not_counted_as_real_elsewhere(tmp_path, model):
    data = make_dataset(tmp_path / "data", (4, 2, 3, 1))
    assert balance(model, data, data).exit_code == 0  # into the dataset: 0, 2, 1, 3 generated there
    result = balance(model, data, tmp_path / "apart")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[-2].split()[-5:] == ["10", "6", "16", "0", "6"]  # counted from the 10 real images


def test_an_interrupted_run_lists_what_it_finished_and_the_next_run_writes_the_rest(tmp_path, model, gen):
    from cgan.runtime.balance import plan_job, write_job

    data = make_dataset(tmp_path / "data", (9, 0, 0, 0))
    out, single = tmp_path / "gen", tmp_path / "single"
    sha = sha256_file(model)
    job = plan_job(data, out, model_sha256=sha, seed=0, noise_version=2)
    assert job.to_write == 27

    def stop_after_first_batch(count: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_job(gen, job, seed=0, noise_version=2, model_sha256=sha, batch_size=4, writers=1, on_written=stop_after_first_batch)
    rows = read_manifest(out / "generated.csv")
    on_disk = set(tree(out))
    assert 0 < len(rows) < 27 and {r.file for r in rows} == on_disk  # what exists is listed, nothing more
    result = balance(model, data, out)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[-1].startswith(f"wrote {27 - len(rows)} PNG images")
    assert balance(model, data, single).exit_code == 0
    assert tree(out) == tree(single)


# ---------------------------------------------------------------- the manifest while a run writes

SHA = "ab" * 32
HEAD = "file,stage,model_sha256,seed,k,noise_version\n"


def test_an_append_cut_short_is_dropped_and_a_whole_last_row_without_newline_is_kept(tmp_path):
    path = tmp_path / "generated.csv"
    whole = f"stage0/stage0_seed0_00000000.png,0,{SHA},0,0,2"
    path.write_text(HEAD + whole + "\n" + f"stage0/stage0_seed0_0000000")  # kill -9 in the middle of an append
    assert [r.k for r in read_manifest(path)] == [0]
    path.write_text(HEAD + whole)  # saved by an editor without the final newline
    assert [r.k for r in read_manifest(path)] == [0]


@pytest.mark.parametrize("name, problem", [
    ("/etc/passwd", "is not a relative path"),
    ("../data/stage2/0.png", "is not a plain relative path"),
    ("stage0//x.png", "is not a plain relative path"),
    ("stage0/x\0.png", "holds control characters"),
    ("", "is empty"),
])
def test_a_manifest_row_that_is_not_a_plain_relative_path_is_refused(tmp_path, name, problem):
    from cgan.runtime.errors import OutputError

    path = tmp_path / "generated.csv"
    with path.open("w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows([HEAD.strip().split(","), [name, 0, SHA, 0, 0, 2]])
    with pytest.raises(OutputError, match=f"line 2: file .* {problem}"):
        read_manifest(path)


def test_manifest_log_lists_rows_before_finish_and_shrinks_in_place_on_a_full_disk(small_disk):
    from cgan.runtime.manifest import ManifestLog, ManifestRow

    def row(k: int) -> ManifestRow:
        return ManifestRow(stage=0, k=k, file=f"stage0/stage0_seed0_{k:08d}.png", model_sha256=SHA, seed=0, noise_version=2)

    path = small_disk / "generated.csv"
    log = ManifestLog(path, [row(0)])
    log.add([row(1), row(2)])
    assert [r.k for r in read_manifest(path)] == [0, 1, 2]  # listed (and synced) before any file of theirs is written
    inode = path.stat().st_ino
    fd = os.open(small_disk / "filler", os.O_WRONLY | os.O_CREAT)  # the disk fills up
    with pytest.raises(OSError):
        while True:
            os.write(fd, b"\0" * 65536)
    os.close(fd)
    log.finish([row(0), row(2)])  # no room for a new copy: the same file, shorter
    assert [r.k for r in read_manifest(path)] == [0, 2] and path.stat().st_ino == inode
