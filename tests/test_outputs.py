"""The shared output guard: every name planned and refused before writing, one run per folder,
killed runs' temporary files cleaned, full disks, NaN models, sortable names, the Hub's fail-fast."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from _cli import call_main
from _models import model, model_file  # noqa: F401 - fixture
from cgan.runtime.cli import main
from cgan.runtime.writers import planned_files
from conftest import dead_pid, run_script, stderr_lines

RUN = "from cgan.runtime.cli import main; main()"
LOCK_NAME = ".cgan.lock"  # cgan.runtime.outputs.LOCK_NAME (spelled out: the CLI tests also run against older code)


def invoke(*args: str):
    return call_main(main, args)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- plan everything, refuse before writing

def test_planned_names_cover_every_stage(tmp_path):
    files = planned_files(tmp_path, layout="flat", fmt="png", stages=[0, 1, 3], seed=0, start=0, n=2)
    names = [name for folder_names in files.values() for name in folder_names]
    assert names == [f"stage{s}_seed0_{k:08d}.png" for s in (0, 1, 3) for k in range(2)]


def test_a_multi_stage_run_refuses_the_existing_files_of_every_stage(tmp_path, model):
    """`--stage 0` then `--stage 0,1` into the same folder replaced the stage-0 files."""
    out = tmp_path / "t1"
    assert invoke("--stage", "0", "--n", "4", "--model", model, "--out", str(out)).exit_code == 0
    before = snapshot(out)
    refused = invoke("--stage", "0,1", "--n", "4", "--seed", "0", "--model", model, "--out", str(out))
    assert refused.exit_code == 1
    (line,) = [x for x in refused.stderr.splitlines() if x.startswith("error:")]
    assert "4 files this run would write already exist" in line and "stage0_seed0_00000000.png" in line
    assert line.count(".png") == 3 and "--overwrite" in line  # the first few are named
    assert snapshot(out) == before  # nothing written: no stage-1 file either

    oasis = tmp_path / "Data"
    assert invoke("--stage", "0", "--n", "2", "--layout", "oasis", "--model", model, "--out", str(oasis)).exit_code == 0
    before = snapshot(oasis)
    refused = invoke("--stage", "all", "--n", "2", "--layout", "oasis", "--model", model, "--out", str(oasis))
    assert refused.exit_code == 1 and "2 files this run would write already exist" in refused.stderr
    assert snapshot(oasis) == before


def test_progression_after_a_run_refuses_its_files(tmp_path, model):
    """The README's sequence: a run of stage 0, then `--progression` with the same seed, writes the same stage-0 names."""
    out = tmp_path / "gen"
    assert invoke("--stage", "0", "--n", "6", "--model", model, "--out", str(out)).exit_code == 0
    before = snapshot(out)
    refused = invoke("--progression", "--n", "6", "--model", model, "--out", str(out))
    assert refused.exit_code == 1 and "6 files this run would write already exist" in refused.stderr
    assert snapshot(out) == before
    assert invoke("--progression", "--n", "6", "--model", model, "--out", str(out), "--overwrite").exit_code == 0
    assert len(list(out.glob("*.png"))) == 24 + 1  # 6 per stage and the sheet


def test_check_free_counts_and_names_the_first_few(tmp_path):
    from cgan.runtime.outputs import OutputError, check_free

    for k in range(5):
        (tmp_path / f"f{k}").write_text("x")
    with pytest.raises(OutputError, match=r"^5 files this run would write already exist \(.*f0, .*f1, .*f2, \.\.\.\)"):
        check_free({tmp_path: [f"f{k}" for k in range(8)]}, overwrite=False)
    check_free({tmp_path: ["f0"]}, overwrite=True)


def test_names_are_wide_enough_to_sort(tmp_path, model):
    start = 10**8 - 2
    out = tmp_path / "big"
    result = invoke("--stage", "0", "--n", "4", "--start", str(start), "--model", model, "--out", str(out))
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.glob("*.png"))
    assert names == [f"stage0_seed0_{k:09d}.png" for k in range(start, start + 4)]  # sorted == index order


def test_the_run_line_names_the_model_it_used(tmp_path, model):
    (tmp_path / "model_output").mkdir()
    os.link(model, tmp_path / "model_output" / "cDCGAN_generator.onnx")
    result = run_script("cgan-run", "--n", "1", "--stage", "0", "--out", "o", cwd=tmp_path, block_torch=True)
    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stdout.splitlines() if x.startswith("cgan-run "))
    assert "model=default" not in line and "model=last-export:model_output/cDCGAN_generator.onnx" in line


# ---------------------------------------------------------------- one run per folder

def _popen_run(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", RUN, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait_for(predicate, proc: subprocess.Popen, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, f"the run ended before {what}: {proc.stderr.read()}"
        assert time.monotonic() < deadline, f"no {what}"
        time.sleep(0.01)


@pytest.mark.slow
def test_two_concurrent_runs_into_one_folder(tmp_path, model):
    """two runs with the same --out both reported success; one's images replaced the other's."""
    out = tmp_path / "shared"
    first = _popen_run("--stage", "all", "--n", "4000", "--model", model, "--out", str(out), "--writers", "1", "--batch-size", "16")
    try:
        _wait_for(lambda: (out / LOCK_NAME).exists(), first, "lock file")
        second = run_script("cgan-run", "--stage", "all", "--n", "4000", "--seed", "1", "--model", model, "--out", str(out))
        running = first.poll() is None
    finally:
        first.wait(timeout=300)
    assert running, "the first run ended before the second started; the test proves nothing"
    assert second.returncode == 1
    (line,) = stderr_lines(second)[-1:]
    assert line.startswith("error: ") and "is in use by cgan-run (pid" in line and str(first.pid) in line, second.stderr
    assert first.returncode == 0, first.stderr.read()
    assert len(list(out.glob("stage*_seed0_*.png"))) == 16000 and not list(out.glob("*seed1*"))
    assert not (out / LOCK_NAME).exists()  # removed at exit


def test_a_live_lock_refuses_and_a_dead_ones_is_taken_over(tmp_path, model):
    out = tmp_path / "o"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import time; from cgan.runtime.outputs import FolderLock; l = FolderLock({str(out)!r}, 'holder').acquire(); print('ok', flush=True); time.sleep(600)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ok"
        refused = invoke("--n", "1", "--model", model, "--out", str(out))
        assert refused.exit_code == 1 and f"in use by holder (pid {holder.pid})" in refused.stderr
        assert not list(out.glob("*.png"))
    finally:
        holder.send_signal(signal.SIGKILL)  # as kill -9: the lock file stays, naming a dead process
        holder.wait()
    assert (out / LOCK_NAME).exists()
    taken = invoke("--n", "1", "--model", model, "--out", str(out))
    assert taken.exit_code == 0, taken.output
    assert f"took over the lock left by pid {holder.pid}" in taken.stderr
    assert len(list(out.glob("*.png"))) == 4 and not (out / LOCK_NAME).exists()


def test_folder_lock_in_process(tmp_path):
    from cgan.runtime.outputs import FolderLock

    with FolderLock(tmp_path, "a"):
        assert (tmp_path / LOCK_NAME).read_text().split("\n")[0] == str(os.getpid())
    assert not (tmp_path / LOCK_NAME).exists()
    (tmp_path / LOCK_NAME).write_text(f"{dead_pid()}\nsomehost\nold\n")  # a stale file with no live holder
    with FolderLock(tmp_path, "b") as lock:
        assert lock.took_over is not None


# ---------------------------------------------------------------- temporary files of killed runs

def test_dead_processes_temp_files_are_cleaned_live_ones_kept(tmp_path):
    from cgan.runtime.outputs import clean_dead_temps

    from cgan.runtime.fileio import temp_name

    dead, live = dead_pid(), os.getpid()
    stale = [tmp_path / temp_name("stage0_seed0_00000000.png", pid=dead), tmp_path / temp_name("stage0_seed0_0-9.npy", ".npy", pid=dead)]
    keep = [tmp_path / temp_name("stage0_seed0_00000001.png", pid=live), tmp_path / "notes.tmp", tmp_path / "stage0_seed0_00000000.png",
            tmp_path / f".stage0_seed0_00000002.png.{dead}.1402.tmp",  # the right shape, but no token of ours
            tmp_path / f".holiday.{dead}.photos.tmp", tmp_path / _flip_check_digit(stale[0].name)]
    for p in stale + keep:
        p.write_bytes(b"x")
    assert sorted(clean_dead_temps(tmp_path)) == sorted(stale)
    assert all(p.exists() for p in keep) and not any(p.exists() for p in stale)


def _flip_check_digit(name: str) -> str:
    """The temporary name with its token's last check digit changed: the shape of ours, but no proof."""
    head, tail = name.rsplit(".tmp", 1)
    return head[:-1] + ("1" if head[-1] == "0" else "0") + ".tmp" + tail


@pytest.mark.slow
def test_kill_9_leftovers_are_cleaned_by_the_next_run(tmp_path, model):
    """kill -9 left hidden temp files (a 327 MB .tmp.npy, .png.<pid>.<tid>.tmp) that nothing cleaned."""
    out = tmp_path / "o"
    proc = _popen_run("--stage", "0", "--n", "200000", "--format", "npy", "--model", model, "--out", str(out))
    try:
        _wait_for(lambda: any(out.glob(".stage0_*.tmp.npy")), proc, "temporary npy stack")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    left = sorted(p.name for p in out.iterdir())
    assert any(name.endswith(".tmp.npy") for name in left) and LOCK_NAME in left
    from cgan.runtime.fileio import temp_name

    (out / temp_name("stage1_seed0_00000000.png", pid=proc.pid)).write_bytes(b"half a png")  # as a killed PNG writer leaves
    again = invoke("--stage", "2", "--n", "1", "--model", model, "--out", str(out), "--format", "npy")
    assert again.exit_code == 0, again.output
    assert sorted(p.name for p in out.iterdir()) == ["stage2_seed0_00000000-00000000.json", "stage2_seed0_00000000-00000000.npy"]


# ---------------------------------------------------------------- full disks

def test_npy_on_a_full_disk_is_one_line_and_leaves_nothing(small_disk, model):
    """`--format npy` on a full disk died with SIGBUS (exit 135), leaving a hidden temp file."""
    out = small_disk / "o"
    result = run_script("cgan-run", "--stage", "0,1", "--n", "400", "--format", "npy", "--model", model, "--out", str(out), block_torch=True)
    assert result.returncode == 1, result.stderr
    (line,) = stderr_lines(result)[-1:]
    assert line.startswith("error: not enough space for 2 npy stack(s) of 400 images") and str(out) in line, result.stderr
    assert not out.exists()
    huge = run_script("cgan-run", "--n", "1000000000", "--format", "npy", "--model", model, "--out", str(out), block_torch=True)
    assert huge.returncode == 1 and "not enough space" in stderr_lines(huge)[-1] and "TiB" in stderr_lines(huge)[-1]


def test_preallocation_refuses_what_does_not_fit_and_cleans_up(small_disk):
    from cgan.runtime.errors import DiskFullError
    from cgan.runtime.fileio import preallocated_npy

    big = small_disk / "big.npy"
    with pytest.raises(DiskFullError, match="big.npy"):
        preallocated_npy(small_disk / ".big.npy.1.x.tmp.npy", np.float32, (600, 32, 32), target=big)
    arr = preallocated_npy(small_disk / "ok.npy", np.float32, (100, 32, 32), target=small_disk / "ok.npy")
    arr[:] = 1.0
    arr.flush()
    del arr
    loaded = np.load(small_disk / "ok.npy")
    assert loaded.shape == (100, 32, 32) and (loaded == 1.0).all()
    # the allocation is real: the blocks are taken now, not when the pages are first written
    assert os.stat(small_disk / "ok.npy").st_blocks * 512 >= 100 * 32 * 32 * 4


def test_pngs_on_a_disk_that_fills_are_one_line(small_disk, model):
    out = small_disk / "o"
    result = run_script("cgan-run", "--stage", "all", "--n", "3000", "--model", model, "--out", str(out), "--quiet", block_torch=True)
    assert result.returncode == 1
    (line,) = stderr_lines(result)[-1:]
    assert line.startswith("error: cannot write ") and "no space left" in line and str(out) in line, result.stderr
    assert "Traceback" not in result.stderr
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp file, no lock left


# ---------------------------------------------------------------- broken models, the Hub

def test_a_nan_model_writes_nothing(tmp_path):
    """a model whose output is NaN wrote all-black PNGs and exited 0 after a numpy warning."""
    out = tmp_path / "o"
    result = run_script("cgan-run", "--n", "3", "--model", str(model_file("nan")), "--out", str(out), block_torch=True)
    assert result.returncode == 1
    (line,) = stderr_lines(result)[-1:]
    assert line.startswith("error: the model") and "non-finite values (NaN or inf)" in line, result.stderr
    assert "RuntimeWarning" not in result.stderr
    assert not out.exists()


def test_hub_lookups_say_so_and_fail_fast_when_unreachable(tmp_path):
    env = {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "0",
           **{v: "" for v in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")}}
    result = run_script("cgan-run", "--model", "hf:nobody/nonexistent", "--n", "1", "--out", str(tmp_path / "o"), env=env, block_torch=True)
    assert result.returncode == 1
    lines = stderr_lines(result)
    assert lines[0] == "contacting the Hugging Face Hub for hf:nobody/nonexistent/cDCGAN_generator.onnx ..."
    assert lines[-1].startswith("error: cannot get hf:nobody/nonexistent") and "cannot be reached" in lines[-1]
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_a_batch_too_large_for_memory_says_to_lower_it(tmp_path, model):
    """a --batch-size too large for memory printed a traceback. The child's address space is capped
    at 1.5 GiB, so the 100,000-image batch cannot be allocated whatever the machine has."""
    import resource

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (3 << 29, 3 << 29))

    out = tmp_path / "o"
    result = subprocess.run([sys.executable, "-c", RUN, "--n", "100000", "--batch-size", "100000", "--stage", "0", "--model", model,
                             "--out", str(out), "--quiet"], preexec_fn=cap, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    lines = [x for x in result.stderr.splitlines() if x.strip()]
    assert len(lines) == 2 and lines[0].startswith("model: "), result.stderr  # the model line, then the error alone
    assert lines[1].startswith("error: a batch of 100000 images does not fit in memory") and lines[1].endswith("lower --batch-size")
    assert not out.exists()


# ---------------------------------------------------------------- a Ctrl-C is never lost

def _swallowed_ctrl_c() -> None:
    """A Ctrl-C that lands in code which swallows it. CPython does this to one that arrives while an
    extension module is imported: 2 of 12 interrupted ``cgan-data synth`` runs whose Ctrl-C met nilearn's
    import of ``xml.etree`` wrote their whole set and exited 0. That moment cannot be hit on purpose, so
    the swallowing is spelled out here."""
    try:
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):
            time.sleep(0.001)  # the handler runs in this loop
    except KeyboardInterrupt:
        pass


@pytest.fixture
def ctrl_c_as_at_a_terminal():
    """Python's own Ctrl-C handler, as a command started at a terminal has (a suite started as a background
    job inherits Ctrl-C ignored, and the command rightly leaves that alone)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_a_swallowed_ctrl_c_still_stops_a_staged_run_before_it_publishes(tmp_path, capsys, ctrl_c_as_at_a_terminal):
    from cgan.runtime.errors import user_errors_exit
    from cgan.runtime.staging import staged_folder

    out = tmp_path / "set"

    @user_errors_exit
    def command():
        with staged_folder(out, "cgan-data synth", overwrite=False) as staged:
            (staged.tmp / "a.png").write_bytes(b"png")
            _swallowed_ctrl_c()
            staged.publish(["a.png"])

    with pytest.raises(SystemExit) as stop:
        command()
    assert stop.value.code == 130
    assert capsys.readouterr().err.splitlines() == ["interrupted"]
    assert not out.exists()  # the folder it made, its lock and its temporary folder are gone
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the command's handler is taken away again


def test_a_swallowed_ctrl_c_stops_image_writing_at_the_next_batch(tmp_path, capsys, ctrl_c_as_at_a_terminal):
    from cgan.runtime.errors import user_errors_exit
    from cgan.runtime.writers import PngWriter

    pixels = np.zeros((2, 8, 8), dtype=np.uint8)

    @user_errors_exit
    def command():
        with PngWriter(workers=1) as png:
            png.submit(pixels, [tmp_path / "a.png", tmp_path / "b.png"])
            _swallowed_ctrl_c()
            png.submit(pixels, [tmp_path / "c.png", tmp_path / "d.png"])

    with pytest.raises(SystemExit) as stop:
        command()
    assert stop.value.code == 130
    assert not (tmp_path / "c.png").exists() and not (tmp_path / "d.png").exists()


def test_a_ctrl_c_that_is_not_swallowed_is_not_remembered_by_the_next_command(tmp_path, capsys, ctrl_c_as_at_a_terminal):
    from cgan.runtime.errors import raise_if_interrupted, user_errors_exit

    @user_errors_exit
    def interrupted():
        _swallowed_ctrl_c()
        raise_if_interrupted()

    @user_errors_exit
    def next_command():
        raise_if_interrupted()
        return "done"

    with pytest.raises(SystemExit):
        interrupted()
    assert next_command() == "done"
