"""Progress that works everywhere: plain lines at a steady interval when the output is a pipe or a file,
and a bar whose elapsed time and time left stay whole in an 80-column terminal."""

from __future__ import annotations

import io
import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cgan.runtime.progress import Progress, clock, interval_s, progress

# elapsed and ETA as H:MM:SS (ETA unknown: -:--:--)
TIMES = r"\d+:\d\d:\d\d"
PLAIN_LINE = re.compile(rf"step (\d+)/(\d+) \(\d+%\), \S+ \S+, elapsed {TIMES}, ETA (?:{TIMES}|-:--:--)")


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_plain_lines_come_at_the_first_step_then_at_the_interval_then_at_the_end():
    out, now = io.StringIO(), FakeClock()
    bar = Progress("training", 100, unit="step", mode="plain", stream=out, interval=10, now=now)
    now.t += 2
    bar.advance(stats="D 0.693")  # the first step: a line at once
    for _ in range(4):  # 4 more steps within the interval: silent
        now.t += 2
        bar.advance()
    now.t += 2
    bar.advance()  # 12 s after the start, 10 s after the first line
    for _ in range(94):
        bar.advance()
    bar._close(finished=True)  # the end, 12 s after the start: one last line
    lines = out.getvalue().splitlines()
    assert len(lines) == 3, lines
    assert lines[0] == "training: step 1/100 (1%), 2.0 s/step, elapsed 0:00:02, ETA 0:03:18; D 0.693"
    assert lines[1].startswith("training: step 6/100 (6%), 2.0 s/step, elapsed 0:00:12, ETA 0:03:08")
    assert lines[2].startswith("training: step 100/100 (100%), 8.33 step/s, elapsed 0:00:12, ETA 0:00:00")


def test_a_resumed_loop_counts_its_rate_from_where_it_resumed():
    out, now = io.StringIO(), FakeClock()
    bar = Progress("training", 1000, completed=900, unit="step", mode="plain", stream=out, interval=10, now=now)
    now.t += 5
    bar.advance(10)
    assert out.getvalue().startswith("training: step 910/1,000 (91%), 2.00 step/s, elapsed 0:00:05, ETA 0:00:45")


def test_clock_and_interval_setting(monkeypatch):
    assert (clock(0), clock(59.6), clock(3725), clock(float("nan"))) == ("0:00:00", "0:01:00", "1:02:05", "-:--:--")
    monkeypatch.setenv("CGAN_PROGRESS_INTERVAL", "2.5")
    assert interval_s() == 2.5
    monkeypatch.setenv("CGAN_PROGRESS_INTERVAL", "soon")
    assert interval_s() == 15.0


def test_off_prints_nothing_and_a_pipe_gets_plain_lines():
    out = io.StringIO()
    with progress("x", 3, enabled=False, stream=out) as bar:
        bar.advance(3)
    assert out.getvalue() == "" and bar.mode == "off"
    with progress("x", 3, stream=out) as bar:  # a StringIO is no terminal
        bar.advance(3)
    assert bar.mode == "plain" and out.getvalue().startswith("x: step 3/3 (100%)")


# ---------------------------------------------------------------- the commands


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from _train_setup import tiny_training_set

    return tiny_training_set(tmp_path_factory.mktemp("progress_data"))


def _train_args(dataset, out: Path, steps: int) -> list[str]:
    from _train_setup import BATCH, DISC_WIDTH, IMG, WIDTH

    data, cache, _ = dataset
    return ["--data", str(data), "--cache-dir", str(cache), "--img-size", str(IMG), "--batch-size", str(BATCH),
            "--width", str(WIDTH), "--disc-width", str(DISC_WIDTH), "--out", str(out), "--device", "cpu",
            "--threads", "1", "--epochs", "1000", "--max-steps", str(steps), "--sample-every", "0"]


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("CGAN_PROGRESS_INTERVAL", None)
    env.update(extra)
    return env


@pytest.mark.slow
def test_piped_training_prints_a_progress_line_within_30_s_of_its_start(dataset, tmp_path):
    """`cgan-train ... | cat`: the first line comes at the first step, not at the end of an epoch."""
    steps = 40  # 10 epochs of the tiny set; an epoch line would come at step 4
    proc = subprocess.Popen([sys.executable, "-m", "cgan.train.cli", *_train_args(dataset, tmp_path / "out", steps)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(PYTHONUNBUFFERED="1"))
    started = first = None
    try:
        for line in proc.stdout:
            if line.startswith("config:"):
                started = time.monotonic()  # training starts after the config line
            match = PLAIN_LINE.search(line)
            if match and started is not None:
                first = (time.monotonic() - started, int(match.group(1)), int(match.group(2)), line)
                break
        proc.stdout.read()
        proc.wait(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, proc.stderr.read()
    assert first is not None, "no progress line in the piped output"
    seconds, step, total, line = first
    assert seconds < 30 and total == steps and step == 1, line


def _pty_run(argv: list[str], columns: int, timeout: float = 300) -> str:
    """Run ``argv`` on a pseudo-terminal of ``columns`` columns; everything it drew, escapes included."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, close_fds=True,
                            env=_env(COLUMNS=str(columns), LINES="24", TERM="xterm-256color"))
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        proc.wait(timeout=30)
    finally:
        proc.kill()
        os.close(master)
    assert proc.returncode == 0, b"".join(chunks).decode(errors="replace")[-2000:]
    return b"".join(chunks).decode("utf-8", errors="replace")


def _frames(raw: str) -> list[str]:
    """The lines the terminal showed: escape sequences dropped, split at carriage returns and newlines."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", raw)  # colours
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07", "\n", text)  # cursor moves, erasing
    return [f for f in re.split(r"[\r\n]+", text) if f.strip()]


@pytest.mark.slow
def test_the_bar_keeps_elapsed_and_eta_whole_at_80_columns(dataset, tmp_path):
    raw = _pty_run([sys.executable, "-m", "cgan.train.cli", *_train_args(dataset, tmp_path / "out", 40)], 80)
    bars = [f for f in _frames(raw) if re.search(r"\d+/40\b", f)]
    assert bars, f"no progress bar drawn: {raw[-1500:]!r}"
    for frame in bars:
        assert len(frame.rstrip()) <= 80, frame
        assert re.search(rf"\d+/40\s+{TIMES}\s+(?:{TIMES}|-:--:--)", frame), frame
    assert not PLAIN_LINE.search(raw), "plain lines on a terminal"


@pytest.mark.slow
def test_piped_synth_prints_plain_progress(tmp_path):
    """`cgan-data synth ... | cat` says how far it is, in plain lines."""
    proc = subprocess.run([sys.executable, "-c", "from cgan.train.data_cli import main; main()", "synth", "--out", str(tmp_path / "s"), "--n", "24",
                           "--img-size", "64", "--workers", "1"],
                          capture_output=True, text=True, env=_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert re.search(rf"writing \S+: image \d+/24 \(\d+%\), \S+ \S+, elapsed {TIMES}, ETA", proc.stdout), proc.stdout


def test_judge_training_prints_plain_progress_when_piped(capsys):
    """cgan-eval's judges train through the same helper: in a pipe, a plain line from the first step."""
    from types import SimpleNamespace

    import numpy as np
    import torch

    from cgan.train.eval.fit import fit

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (32, 8, 8), dtype=np.uint8)
    y = np.arange(32) % 4
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 4))
    config = SimpleNamespace(seed=0, epoch_images=32, batch_size=8, max_epochs=2, max_steps=None, lr=1e-3,
                             weight_decay=0.0, augment="", min_epochs=1, patience=5)
    fit(model, x, y, x[:8], y[:8], num_classes=4, config=config, device=torch.device("cpu"), name="judge tiny",
        log=lambda _msg: None)
    out = capsys.readouterr().out
    assert re.search(rf"^judge tiny: step 1/8 \(12%\), \S+ \S+, elapsed {TIMES}, ETA", out, re.M), out


@pytest.mark.parametrize("balance", [False, True])
def test_piped_cgan_run_prints_plain_progress_from_the_start(tmp_path, balance):
    """`cgan-run --n 2000 | cat` (and `--balance`) says how far it is in plain lines on stderr, the first one
    at the first batch, not one bar line at the end."""
    from _models import model_file
    from PIL import Image

    args = ["--model", str(model_file("gen32")), "--out", str(tmp_path / "out"), "--batch-size", "16", "--writers", "1"]
    if balance:
        for s in range(4):
            (tmp_path / "data" / f"stage{s}").mkdir(parents=True)
            Image.new("L", (8, 8)).save(tmp_path / "data" / f"stage{s}" / "real.png")
        args += ["--balance", str(tmp_path / "data"), "--target", "101"]
    else:
        args += ["--n", "100"]
    proc = subprocess.run([sys.executable, "-c", "from cgan.runtime.cli import main; main()", *args], capture_output=True, text=True, timeout=300,
                          env=_env(CGAN_PROGRESS_INTERVAL="3600"))
    assert proc.returncode == 0, proc.stderr
    lines = re.findall(rf"generating: image ([\d,]+)/400 \(\d+%\), \S+ \S+, elapsed {TIMES}, ETA", proc.stderr)
    # with an interval of an hour: the line at the first batch, and the one saying where it ended
    counts = [int(n.replace(",", "")) for n in lines]
    assert len(counts) == 2 and counts[0] <= 16 * 2 and counts[1] == 400, proc.stderr
