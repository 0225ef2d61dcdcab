"""The fault campaign (tests/fault_cases.py) run against the real console scripts, one child process per case.

Every case checks: the exit code; for a failure, one line on stderr starting ``error:`` (or
``interrupted``), the last one, matching the case's message; for a success, the message in the output;
no traceback, no warning, no exception class name anywhere; planted and kept files byte-identical;
nothing left that matches ``absent``.
"""

from __future__ import annotations

import glob
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import _BLOCK_TORCH, console_script
from fault_cases import CASES, Case

FORBIDDEN = re.compile(r"Traceback|Warning\b|\b[A-Z]\w*(Error|Exception)\b:|CancelledError")


# ---------------------------------------------------------------- fixtures the placeholders name

def _mount(where: Path, options: str) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({(done.stderr or done.stdout).strip()[:120]}); needs root or CAP_SYS_ADMIN")
    return where


def _tiny_data(root: Path) -> Path:
    """stage0..stage3, four 32-px PNGs each (16 images)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for s in range(4):
        (root / f"stage{s}").mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 255, (32, 32), dtype=np.uint8)).save(root / f"stage{s}" / f"{i}.png")
    return root


def _evil(path: Path) -> Path:
    import torch

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {path.parent / 'PWNED'}",))

    torch.save({"model": Evil()}, path)
    return path


def _raw_pickle(path: Path) -> Path:
    import pickle

    path.write_bytes(pickle.dumps({"model": {"weight": [1.0, 2.0]}}, protocol=4))
    return path


_CHECKPOINT: list[Path] = []


def _training_checkpoint(root: Path) -> Path:
    """The newest ckpt_*.pt of a one-step 32-px run without EMA (trained once per test process)."""
    import atexit
    import shutil
    import tempfile

    from _train_setup import torch_threads_kept
    from cgan.train.loop.run import TrainConfig, train

    if _CHECKPOINT:
        return _CHECKPOINT[0]
    root = Path(tempfile.mkdtemp(prefix="cgan-fault-ckpt-"))
    atexit.register(shutil.rmtree, root, True)
    with torch_threads_kept():
        train(TrainConfig(data=_tiny_data(root / "data"), cache_dir=root / "cache", img_size=32, width=32, disc_width=8,
                          batch_size=4, max_steps=1, sample_every=0, threads=1, quiet=True, out=root / "run"), log=lambda _m: None)
    (found,) = sorted((root / "run" / "checkpoints").glob("ckpt_*.pt"))[-1:]
    _CHECKPOINT.append(found)
    return found


class Places(dict):
    """The placeholder values of one case, made on first use."""

    def __init__(self, tmp: Path, case: Case, mounts: list[Path]) -> None:
        super().__init__(tmp=str(tmp))
        self.tmp, self.case, self.mounts = tmp, case, mounts

    def __missing__(self, key: str) -> str:
        from _models import model_file

        tmp = self.tmp
        if key in ("gen32", "nan", "nan3"):
            value = model_file(key)
        elif key == "disk":
            value = _mount(tmp / "disk", f"size={self.case.disk_size}")
            self.mounts.append(value)
        elif key == "ro":
            value = _mount(tmp / "ro", "ro,size=64k")
            self.mounts.append(value)
        elif key == "data":
            value = _tiny_data(tmp / "data")
        elif key == "evil":
            value = _evil(tmp / "evil.pth")
        elif key == "raw_pickle":
            value = _raw_pickle(tmp / "raw.pkl")
        elif key == "ckpt":
            value = _training_checkpoint(tmp / "ckpt")
        elif key == "ckpt_run":  # a copy of that run's folder, to resume
            import shutil

            value = tmp / "run"
            shutil.copytree(_training_checkpoint(tmp / "ckpt").parent.parent, value)
        elif key in ("stages5", "zdim_huge"):
            from _planted import planted_model

            value = planted_model(key, tmp / f"{key}.onnx")
        elif key in ("ckpt_noconfig", "ckpt_badconfig"):  # a training checkpoint with its run settings missing or malformed
            from _planted import planted_checkpoint

            value = planted_checkpoint(key.split("_")[1], _training_checkpoint(tmp / "ckpt"), tmp / f"{key}.pt")
        elif key == "ckpt_run_noconfig":  # a run folder to --resume whose checkpoint lacks its run settings
            import shutil

            from _planted import planted_checkpoint

            value = tmp / "run"
            shutil.copytree(_training_checkpoint(tmp / "ckpt").parent.parent, value)
            (newest,) = sorted((value / "checkpoints").glob("ckpt_*.pt"))[-1:]
            planted_checkpoint("noconfig", newest, newest)
        elif key == "file":
            value = tmp / "a-file"
            value.write_text("not a folder\n")
        elif key == "gen32_sha256":
            from cgan.runtime.fileio import sha256_file

            value = sha256_file(model_file("gen32"))
        elif key == "named":  # the small model with other stage names in its metadata
            import json

            import onnx

            model = onnx.load(model_file("gen32"))
            (prop,) = [m for m in model.metadata_props if m.key == "cgan.stage_names"]
            prop.value = json.dumps(list(self.case.stage_names))
            value = tmp / "named.onnx"
            onnx.save(model, value)
        elif key == "victim":  # what a symlink planted in a command's folder points at; must stay byte-identical
            value = tmp / "victim" / "precious.txt"
            value.parent.mkdir()
            value.write_bytes(self.setdefault("bytes:victim", os.urandom(1000)))
        else:
            raise KeyError(key)
        self[key] = str(value)
        return str(value)


# ---------------------------------------------------------------- running a case

def _start(case: Case, args: list[str], cwd: Path, places: "Places | None" = None) -> subprocess.Popen:
    module, func = console_script(case.command).split(":")
    code = ("import sys\n" if case.torch else _BLOCK_TORCH) + "".join(f"sys.modules[{m!r}] = None\n" for m in case.missing) + (
        f"sys.argv = [{case.command!r}] + {args!r}\nfrom {module} import {func} as _main\n_main()\n"
    )
    # Warnings shown as a user could see them; ResourceWarning is hidden by Python's default filter, and a
    # Ctrl-C that lands inside the interpreter's own import of a .pyc leaves such a warning that is not ours.
    warnings = "default,ignore::ResourceWarning" if case.fault == "interrupt" else "default"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "120", "PYTHONWARNINGS": warnings}
    for name, value in case.env:
        value = value.format_map(places) if places is not None else value
        if value:
            env[name] = value
        else:
            env.pop(name, None)
    stdout: int = subprocess.PIPE
    closed = {"stdout-closed": 1, "stderr-closed": 2}.get(case.fault)
    reader = None
    if case.fault == "stdout-gone":  # a pipe with no reader left: every write to it fails (EPIPE)
        reader, stdout = os.pipe()
        os.close(reader)

    def child() -> None:
        _terminal_sigint()
        if closed is not None:
            os.close(closed)

    try:
        return subprocess.Popen([sys.executable, "-c", code], cwd=cwd, env=env, stdout=stdout,
                                stderr=subprocess.PIPE, text=True, start_new_session=True, preexec_fn=child)
    finally:
        if reader is not None:
            os.close(stdout)


def _terminal_sigint() -> None:
    """Ctrl-C as at a terminal: a shell starts a background job (``cmd &``, as a CI runner may start the
    suite) with SIGINT ignored, every process below inherits that, and the interrupt rows then test
    nothing (measured: the runs went on to the end or the timeout). Python turns a default SIGINT into
    KeyboardInterrupt at start-up."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _children(pid: int) -> list[int]:
    """Descendants of ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parents.items() if pp == p]
        found += kids
        frontier += kids
    return found


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _wait_for(proc: subprocess.Popen, ready, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        if ready():
            return True
        time.sleep(0.005)
    return False


def _head_line(proc: subprocess.Popen, timeout: float) -> str:
    """``| head -1``: read the first line of the command's stdout, then close the pipe."""
    import threading

    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    proc.stdout.close()
    proc.stdout = None  # communicate() reads stderr alone from now on
    return got[0] if got else ""


def _run(case: Case, places: Places, tmp: Path) -> tuple[int, str, str]:
    args = [a.format_map(places) for a in case.args]
    proc = _start(case, args, tmp, places)
    head = ""
    try:
        if case.get:  # a server: ask it once, then stop it as a user does
            first = proc.stdout.readline()
            address = re.search(r"http://\S+/", first)
            assert address, f"{case.id}: no address printed:\n{first}{proc.stderr.read() if proc.poll() is not None else ''}"
            path, status = case.get
            assert _http_status(address.group().rstrip("/") + path) == status, f"{case.id}: GET {path} did not answer {status}"
            os.killpg(proc.pid, signal.SIGINT)
            out, err = proc.communicate(timeout=case.timeout)
            return proc.returncode, first + out, err
        if case.fault == "stdout-head":
            head = _head_line(proc, case.timeout)
        if case.fault in ("plant", "interrupt", "second"):
            patterns = [str(tmp / t) for t in case.trigger]
            fired = _wait_for(proc, lambda: any(glob.glob(p) for p in patterns), case.timeout)
            assert fired, f"{case.id}: the run ended before {case.trigger} appeared:\n{proc.communicate()[1]}"
            if case.fault == "second":  # the same command again, into the same place, while the first runs
                second = _start(case, args, tmp)
                out2, err2 = second.communicate(timeout=case.timeout)
                lines = [line for line in err2.splitlines() if line.strip()]
                assert second.returncode == 1 and lines and re.search(case.second, lines[-1]), err2
                assert not FORBIDDEN.search(out2 + err2), err2
            elif case.fault == "plant":
                for rel in case.plant:
                    (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                    (tmp / rel).write_bytes(places.setdefault(f"bytes:{rel}", os.urandom(1000)))
            else:
                os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=case.timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, head + (out or ""), err or ""


def _http_status(url: str) -> int:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _check_output(case: Case, code: int, out: str, err: str, expected_code: int) -> None:
    shown = f"exit {code}\n--- stdout\n{out}\n--- stderr\n{err}"
    assert code == expected_code, shown
    assert not FORBIDDEN.search(out + err), shown
    if case.forbid:
        assert not re.search(case.forbid, out + err), shown
    if expected_code == 0:
        assert re.search(case.message, out + err, re.MULTILINE), shown
        return
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:") or line == "interrupted"]
    assert len(errors) == 1 and lines[-1] == errors[0], shown
    assert re.search(case.message, errors[0]), shown


@pytest.mark.parametrize("case", [pytest.param(c, id=f"{c.defect:02d}-{c.id}", marks=[pytest.mark.slow] if c.slow else [])
                                  for c in CASES])
def test_fault(case: Case, tmp_path: Path) -> None:
    mounts: list[Path] = []
    places = Places(tmp_path, case, mounts)
    try:
        _plant_before(case, places, tmp_path)
        if case.first:  # a run before the faulted one (e.g. building a cache), then the files it made cut short
            code, out, err = _run(Case(case.id, case.defect, case.command, case.first, 0, "", torch=case.torch,
                                       env=case.env, timeout=case.timeout), places, tmp_path)
            assert code == 0, f"the first run failed:\n{out}\n{err}"
            cut = [Path(f) for pattern in case.truncate for f in glob.glob(str(tmp_path / pattern))]
            assert cut, f"the first run made nothing matching {case.truncate}"
            for path in cut:
                os.truncate(path, path.stat().st_size // 2)
        if case.fault == "kill9":
            _kill9_then_rerun(case, places, tmp_path)
        else:
            code, out, err = _run(case, places, tmp_path)
            _check_output(case, code, out, err, case.code)
            if case.rerun_message:
                _check_manifests(case, tmp_path, exact=True, when="after the first run")
                rerun = Case(case.id, case.defect, case.command, case.rerun, 0, case.rerun_message, torch=case.torch, timeout=case.timeout)
                code, out, err = _run(rerun, places, tmp_path)
                _check_output(rerun, code, out, err, 0)
        _check_manifests(case, tmp_path, exact=True)
        for rel in (*case.plant, *case.keep):
            path = tmp_path / rel
            assert path.is_file() and path.read_bytes() == places[f"bytes:{rel}"], f"{rel} was changed or removed"
        if "victim" in places:
            victim = Path(places["victim"])
            assert victim.is_file() and not victim.is_symlink() and victim.read_bytes() == places["bytes:victim"], \
                "the file a planted symlink points at was changed or removed"
        for rel, pattern in case.holds:
            assert re.search(pattern, (tmp_path / rel).read_text()), f"{rel} does not match {pattern!r}"
        for rel, pattern in case.lacks:
            found = re.search(pattern, (tmp_path / rel).read_text())
            assert not found, f"{rel} holds {found.group()!r}"
        for rel, key, value in case.json:
            import json

            assert json.loads((tmp_path / rel).read_text())[key] == value, f"{rel}: {key}"
        for pattern in case.absent:
            left = glob.glob(str(tmp_path / pattern))
            assert not left, f"left behind: {left}"
        for pattern, count in case.made:
            found = glob.glob(str(tmp_path / pattern))
            assert len(found) == count, f"{pattern}: {len(found)} made, {count} expected"
    finally:
        for mount in reversed(mounts):
            subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _plant_before(case: Case, places: Places, tmp: Path) -> None:
    """Make the placeholders the command line names, then the files, symlinks and pipes the case plants."""
    for arg in case.args:
        arg.format_map(places)
    for rel in case.keep:
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).write_bytes(places.setdefault(f"bytes:{rel}", os.urandom(1000)))
    for rel, text in case.texts:
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).write_text(text.format_map(places))
    for rel, target in case.links:  # a target naming the link itself loops; one naming nothing dangles
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target.format_map(places), tmp / rel)
    for rel in case.fifos:
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(tmp / rel)


def _check_manifests(case: Case, tmp: Path, *, exact: bool, when: str = "at the end") -> None:
    """Each ``case.manifest`` folder's generated.csv lists every generated image there (``exact``: and nothing else)."""
    import csv

    for rel in case.manifest:
        folder = tmp / rel
        there = {p.relative_to(folder).as_posix() for p in folder.glob("*/stage*_seed*_*.png")}
        path = folder / "generated.csv"
        text = path.read_text() if path.exists() else ""
        lines = text.splitlines(keepends=True)
        if lines and not lines[-1].endswith("\n"):
            lines = lines[:-1]  # an append cut short by kill -9: the next run drops it
        listed = {row["file"] for row in csv.DictReader(lines)}
        assert there <= listed, f"{rel} ({when}): generated images missing from its manifest: {sorted(there - listed)[:5]}"
        if exact:
            assert listed == there, f"{rel} ({when}): its manifest lists files that do not exist: {sorted(listed - there)[:5]}"


def _kill9_then_rerun(case: Case, places: Places, tmp: Path) -> None:
    args = [a.format_map(places) for a in case.args]
    proc = _start(case, args, tmp)
    try:
        if case.trigger:  # killed once its first files appear
            patterns = [str(tmp / t) for t in case.trigger]
            ready = _wait_for(proc, lambda: any(glob.glob(p) for p in patterns), case.timeout)
            assert ready, f"{case.id}: the run ended before {case.trigger} appeared:\n{proc.communicate()[1]}"
            time.sleep(0.3)
        else:
            ready = _wait_for(proc, lambda: len(_children(proc.pid)) >= case.children, case.timeout)
            assert ready, f"{case.id}: no {case.children} child processes appeared:\n{proc.communicate()[1]}"
            time.sleep(1.0)  # the workers are at work now
        children = _children(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(_running(c) for c in children):
        time.sleep(0.1)
    orphans = [c for c in children if _running(c)]
    for c in orphans:  # don't leave them to the rest of the suite
        os.kill(c, signal.SIGKILL)
    assert not orphans, f"{len(orphans)} of {len(children)} child processes outlived the killed run"
    _check_manifests(case, tmp, exact=False, when="after kill -9")  # a killed run may have listed a batch it never wrote, never the reverse
    rerun = Case(case.id, case.defect, case.command, case.rerun, case.code, case.rerun_message or case.message, torch=case.torch,
                 timeout=case.timeout)
    code, out, err = _run(rerun, places, tmp)
    _check_output(rerun, code, out, err, case.code)


# ---------------------------------------------------------------- cases that need a hook inside the process

def test_web_build_keeps_a_file_saved_in_out_during_the_build(tmp_path, monkeypatch):
    """The build copies the model into the site; a file the user saves in --out at that moment must stay."""
    import shutil

    from _models import model_file
    from cgan.runtime.web import site as site_module

    out = tmp_path / "site"
    planted = os.urandom(1000)
    copy = shutil.copyfile

    def copy_then_plant(src, dst, *args, **kwargs):  # the user saves a file while the model is being copied
        result = copy(src, dst, *args, **kwargs)
        out.mkdir(exist_ok=True)
        (out / "notes.txt").write_bytes(planted)
        return result

    monkeypatch.setattr(site_module.shutil, "copyfile", copy_then_plant)
    site_module.build_site(model_file("gen32"), out)
    assert (out / "notes.txt").read_bytes() == planted
    assert (out / "index.html").is_file() and (out / "site.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]  # no temporary folder beside it


def test_png_writer_cancelled_on_interrupt_reports_nothing(tmp_path, caplog):
    """Ctrl-C cancels the queued batches; their callbacks must not raise CancelledError (it was logged as
    'exception calling callback' with two tracebacks before the one line)."""
    import logging

    import numpy as np

    from cgan.runtime.writers import PngWriter

    pixels = np.zeros((64, 32, 32), dtype=np.uint8)
    caplog.set_level(logging.DEBUG, logger="concurrent.futures")
    writer = PngWriter(workers=1, max_pending=8)
    for b in range(8):
        writer.submit(pixels, [tmp_path / f"{b}_{i}.png" for i in range(64)])
    writer.close(cancel=True)  # what an interrupt does, with batches still queued
    assert not [r for r in caplog.records if "callback" in r.getMessage()], [r.getMessage() for r in caplog.records]
    assert len(list(tmp_path.glob("*.png"))) < 8 * 64  # some batches were indeed cancelled


def test_png_writer_cancelled_waits_for_a_batch_on_a_thread_the_pool_lost(tmp_path):
    """A Ctrl-C that lands while the pool starts a worker thread (in Thread.start) leaves that thread outside
    the pool's shutdown: its batch was written after close(cancel=True) returned, so after --balance had made
    its manifest exact (generated images unlisted). close must wait for a batch being written on any thread,
    and a batch that starts after a cancelling close must write nothing."""
    import threading

    import numpy as np

    from cgan.runtime.writers import PngWriter

    pixels = np.zeros((4, 32, 32), dtype=np.uint8)
    started, finished = threading.Event(), threading.Event()

    def slow(count: int) -> None:  # the batch's files are written; it is still running
        started.set()
        time.sleep(0.5)
        finished.set()

    writer = PngWriter(workers=1, on_written=slow)
    writer._slots.acquire()  # what submit does before handing a batch to a thread
    lost = threading.Thread(target=writer._write, args=(pixels, [tmp_path / f"a{i}.png" for i in range(4)], None))
    lost.start()
    assert started.wait(30)
    writer.close(cancel=True)
    assert finished.is_set(), "close(cancel=True) returned while a batch was still being written"
    lost.join()
    writer._slots.acquire()
    writer._write(pixels, [tmp_path / f"b{i}.png" for i in range(4)], None)  # picked up after the cancelling close
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"a{i}.png" for i in range(4)]


def test_png_writer_cancelled_close_returns_after_a_slot_released_twice(tmp_path):
    """A Ctrl-C inside the pool's submit, once the batch was queued, makes submit release the batch's slot and
    the batch release it again: close(cancel=True) waited forever (5 of 15 interrupted --balance runs hung)."""
    import threading

    import numpy as np

    from cgan.runtime.writers import PngWriter

    writer = PngWriter(workers=1)
    batch = threading.Thread(target=writer._write, args=(np.zeros((2, 32, 32), np.uint8), [tmp_path / "a.png", tmp_path / "b.png"], None))
    batch.start()  # its slot was already given back by the interrupted submit
    batch.join(30)
    closing = threading.Thread(target=writer.close, kwargs={"cancel": True}, daemon=True)
    closing.start()
    closing.join(30)
    assert not closing.is_alive(), "close(cancel=True) hangs"
