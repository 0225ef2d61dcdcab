"""The training loop: ``train(TrainConfig) -> TrainResult``; one step of it is
:meth:`cgan.train.loop.step.TrainingRun.train_step`.

What makes it faster than the original: batches are gathered from the uint8 memory-mapped cache and
mapped to [-1, 1] in torch (no per-image decode); D scores the real and generated batches in one
pass; the generator step computes no D weight gradients and runs no second spectral-norm power
iteration; Adam is fused; convolutions run channels-last (and, with ``--compile``, compiled); the
device, precision and thread count are chosen once. The loss (``--loss``), R1 (``--r1``) and
DiffAugment (``--diffaugment``) are the discriminator-side options (objectives.py, augment.py).

Exact resume: the sampler's draws for an epoch are a pure function of (seed, epoch), the noise
comes from a dedicated generator whose state is checkpointed with every other RNG, and the
checkpoint records the position (epoch, batch) — so a resumed run repeats an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from cgan.runtime import __version__
from cgan.runtime.contract import GENERATOR_FILE
from cgan.runtime.errors import CganError, DiskFullError, first_line, raise_if_interrupted
from cgan.runtime.outputs import FolderLock, clean_dead_temps

from ..options import TrainConfig
from ..store import write as ckpt
from ..store.read import load_checkpoint
from ..store.read_exported import ExportedGenerator
from ..store.read_init import absolute, read_init
from . import ddp
from .batches import draw_order, epoch_order, iter_batches, to_model_input  # noqa: F401 - epoch_order: re-exported for tests
from .config import TrainResult, merge_resumed, resolve_device, resolve_precision
from .reports import CONFIG_FILE, SAMPLES_DIR, write_config
from .step import Log, TrainingRun


# ---------------------------------------------------------------- entry point

def train(config: TrainConfig, *, image_set=None, log: Log = print, given: set[str] | None = None) -> TrainResult:
    """Train (or, with ``config.resume``, continue) a run; write its files to ``config.out``.

    ``image_set`` (a :class:`cgan.train.data.ImageSet`) replaces loading ``config.data``. With ``resume``,
    the run continues as saved; ``given`` names the fields set on the command line (see :func:`cgan.train.loop.config.merge_resumed`).
    Raises :class:`CganError` for bad settings before anything is written.
    """
    config.validate()
    config = absolute(config)
    info = ddp.env_info()
    device = resolve_device(config.device, info)
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise CganError(f"--out {out} exists and is not a folder; choose another --out")
    latest = ckpt.latest_checkpoint(out)
    state = None
    if config.resume:
        if latest is None:
            raise CganError(f"--resume: no checkpoint in {ckpt.checkpoint_dir(out)}; start a new run without --resume")
        state = load_checkpoint(latest, map_location=device)
        TrainConfig.from_checkpoint(state, latest, "--resume")  # a missing or malformed one: one line, here
        config = merge_resumed(config, state["train_config"], latest, given, int(state["step"]))
        config.validate()
    elif latest is not None:
        raise CganError(f"{out} already holds checkpoints of a run ({latest.name}); continue it with --resume, "
                        "or choose another --out")
    elif (out / GENERATOR_FILE).exists():
        raise CganError(f"{out} already holds a {GENERATOR_FILE} (and no checkpoints to resume from); "
                        "choose another --out, or move that file away")
    init_state = read_init(config) if config.init_from is not None and state is None else None
    precision = resolve_precision(config.precision, device)
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    say: Log = log if info.is_main and not config.quiet else (lambda _msg: None)

    made = [p for p in (out, *out.parents) if not p.exists()] if info.is_main else []
    with contextlib.ExitStack() as guard:
        guard.callback(_remove_if_empty, made)  # a run that fails before writing leaves no empty --out behind
        if info.is_main:  # one run per --out: a second one is refused; killed runs' temporary files are removed
            lock = guard.enter_context(FolderLock(out, "cgan-train"))
            if lock.took_over:
                say(f"{out}: took over the lock left by pid {lock.took_over}, which no longer runs")
            for folder in (out, ckpt.checkpoint_dir(out), out / SAMPLES_DIR):
                clean_dead_temps(folder)
        ddp.init(info, device)
        try:
            return _train(config, state, latest, init_state, image_set, info, device, precision, log, say)
        except DiskFullError as exc:
            newest = ckpt.latest_checkpoint(out)
            where = f"; the newest whole checkpoint is {newest.name} (continue with: cgan-train --resume --out {out})" if newest else ""
            raise DiskFullError(f"{exc}{where}") from None
        except (MemoryError, RuntimeError) as exc:
            if isinstance(exc, MemoryError) or _out_of_memory(exc):
                raise CganError(f"out of memory at --batch-size {config.batch_size} ({first_line(exc)}); lower --batch-size") from None
            raise
        finally:
            ddp.shutdown(info)


def _remove_if_empty(folders: list[Path]) -> None:
    for folder in folders:  # innermost first; a folder that holds anything stays
        try:
            folder.rmdir()
        except OSError:
            return


def _out_of_memory(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, getattr(torch, "OutOfMemoryError", ())) or "out of memory" in text or "can't allocate memory" in text



def _load_images(config: TrainConfig, info: ddp.DistInfo, say: Log):
    """The training images; rank 0 builds the cache, the others wait, then read it."""
    from ..data import load_image_set

    def load():
        return load_image_set(config.data, img_size=config.img_size, classes=config.classes,
                              strict=config.strict, cache_dir=config.cache_dir, log=say)

    image_set = load() if info.is_main else None
    ddp.barrier(info)
    return image_set if image_set is not None else load()


def _stage_reader(config: TrainConfig, image_set, info: ddp.DistInfo, device: torch.device, *, resuming: bool, say: Log):
    """The run's frozen stage reader: the one its folder holds when resuming, else the cached one for these images
    (fitted by rank 0 if there is none; the others wait, then read it), copied into the folder."""
    from ..data import default_cache_dir
    from .reader import READER_FILE, get_reader, load_reader

    own = Path(config.out) / READER_FILE
    if resuming and own.is_file():
        return load_reader(own, image_set, device=device)
    cache = Path(config.cache_dir).expanduser() if config.cache_dir is not None else default_cache_dir()
    reader = get_reader(image_set, cache_dir=cache, device=device, log=say) if info.is_main else None
    ddp.barrier(info)
    if reader is None:
        reader = get_reader(image_set, cache_dir=cache, device=device, log=lambda _m: None)
    if info.is_main:
        reader.judge.save(own)
    return reader


def _fit_batch_size(config: TrainConfig, image_set, info: ddp.DistInfo, say: Log) -> TrainConfig:
    """A batch is drawn from one epoch: it can hold no more images than an epoch has (per process)."""
    per_rank = len(image_set.labels) // info.world_size
    if 1 <= per_rank < config.batch_size:
        say(f"--batch-size {config.batch_size} is more than the {per_rank} images per epoch"
            f"{' per process' if info.world_size > 1 else ''}; training at batch size {per_rank}")
        config = dataclasses.replace(config, batch_size=per_rank)
    return config


def _start(run: TrainingRun, config: TrainConfig, state, latest, init_state, say: Log) -> None:
    """Put the run where it starts: the newest checkpoint of --resume, the weights of --init-from, or fresh."""
    if state is not None:
        run.load_state(state, latest)
        say(f"resuming from {latest} (step {run.step}, epoch {run.epoch + 1}, batch {run.batch})")
    elif isinstance(init_state, ExportedGenerator):
        run.load_init(init_state, config.init_from)
        say(f"warm start from {run.init_source} (the rebuilt generator matches the file within "
            f"{run.warm_start_diff:.1e} in ONNX Runtime); D alone for the first {config.d_warmup} steps; fresh optimizers")
    elif init_state is not None:
        run.load_init(init_state, config.init_from)
        say(f"starting from the G and D of {run.init_source} in {config.init_from.parent}; fresh optimizers")


def _write_run_config(run: TrainingRun, config: TrainConfig, image_set, out: Path, say: Log) -> None:
    """config.json: the configuration and what it resolved to (device, precision, classes, sizes), also printed."""
    out.mkdir(parents=True, exist_ok=True)
    summary = {**config.to_dict(), "resolved": {
        "device": str(run.device), "precision": run.precision, "world_size": run.info.world_size,
        "threads": torch.get_num_threads(), "class_names": run.class_names, "training_data": run.description,
        "class_counts": image_set.class_counts().tolist(), "steps_per_epoch": run.steps_per_epoch,
        "generator": run.gen_config.to_dict(), "tool_version": __version__}}
    write_config(out / CONFIG_FILE, summary)
    say("config: " + json.dumps(summary, default=str))


def _train(config: TrainConfig, state, latest, init_state, image_set, info, device, precision, log: Log, say: Log) -> TrainResult:
    if image_set is None:
        image_set = _load_images(config, info, say)
    config = _fit_batch_size(config, image_set, info, say)
    run = TrainingRun(config, image_set, info, device, precision, log)
    if config.reader_weight > 0:
        run.attach_reader(_stage_reader(config, image_set, info, device, resuming=state is not None, say=say))
        say(f"scored also by the frozen {run.reports.reader}")
    _start(run, config, state, latest, init_state, say)
    del state, init_state
    out = Path(config.out)
    if info.is_main:
        _write_run_config(run, config, image_set, out, say)

    first_step = run.step + 1
    losses: list[torch.Tensor] = []
    run_start, run_images = time.perf_counter(), 0
    last_saved_step = run.step

    def checkpoint() -> None:
        nonlocal last_saved_step
        body = run.state()  # collective
        if info.is_main:
            run.last_checkpoint = ckpt.save_checkpoint(out, run.step, body, keep=config.keep_checkpoints)
        last_saved_step = run.step

    def end_epoch() -> None:
        row = run.epoch_row()
        run.history.append(row)
        run.epoch, run.batch = run.epoch + 1, 0
        run.epoch_images, run.epoch_time = 0, 0.0
        checkpoint()
        if info.is_main:
            run.write_generator()
            run.reports.write_reports(run.history)
            if config.sample_every and row["epoch"] % config.sample_every == 0:
                run.write_samples(f"epoch_{row['epoch']:03d}")
        say(f"epoch {row['epoch']}/{run.epochs_total}: D loss {row['d_loss']:.4f}, G loss {row['g_loss']:.4f}, "
            f"D(x) {row['d_real']:.3f}, D(G(z)) {row['d_fake']:.3f}, {row['steps']} steps in "
            f"{row['epoch_time_s']:.1f} s ({row['images_per_s']:.1f} img/s)")

    from cgan.runtime.progress import progress

    try:
        # a bar on a terminal; plain lines from the first step on when the output is a pipe or a log file
        with progress(f"epoch {run.epoch + 1}/{run.epochs_total}", total=run.total_steps, completed=run.step,
                      unit="step", enabled=info.is_main and not config.quiet) as bar:
            say = bar.logger(say)  # end_epoch's lines go above the bar, not into it
            while run.step < run.total_steps:
                order = draw_order(run.labels, run.gen_config.num_classes, seed=config.seed, epoch=run.epoch,
                                   balance=config.balance, balanced_batches=config.balanced_batches,
                                   rank=info.rank, world_size=info.world_size, power=config.balance_power)
                bar.update(description=f"epoch {run.epoch + 1}/{run.epochs_total}")
                t0 = time.perf_counter()
                for u8, lab in iter_batches(run.images, run.labels, order, config.batch_size, run.batch,
                                            config.workers):
                    raise_if_interrupted()  # a Ctrl-C that something swallowed still stops the run here
                    metrics = run.train_step(to_model_input(u8, device, config.channels_last),
                                             torch.from_numpy(lab).to(device, non_blocking=True))
                    run.epoch_metrics[run.batch] = metrics.to("cpu", torch.float64)
                    losses.append(run.epoch_metrics[run.batch].clone())
                    run.batch, run.step = run.batch + 1, run.step + 1
                    run.epoch_images += len(lab)
                    run_images += len(lab)
                    now = time.perf_counter()
                    run.epoch_time, t0 = run.epoch_time + now - t0, now
                    if bar.mode != "off":
                        d, g, dr, df = losses[-1].tolist()
                        ips = run.epoch_images * info.world_size / max(run.epoch_time, 1e-9)
                        bar.advance(stats=f"D {d:.3f}  G {g:.3f}  D(x) {dr:.2f}  D(G(z)) {df:.2f}  {ips:.1f} img/s")
                    if run.batch == run.steps_per_epoch or run.step >= run.total_steps:
                        break
                    if config.checkpoint_every and run.step % config.checkpoint_every == 0:
                        checkpoint()
                        t0 = time.perf_counter()  # the epoch's time counts training, not checkpoint writing
                if run.batch < run.steps_per_epoch:
                    break  # stopped by --max-steps mid-epoch
                end_epoch()
    except KeyboardInterrupt:
        if info.is_main:
            log(f"interrupted at step {run.step}; the newest checkpoint is at step {last_saved_step} "
                f"(continue with: cgan-train --resume --out {out})")
        raise

    # end of the run (finished, or stopped by --max-steps)
    if run.step != last_saved_step:
        checkpoint()
    rows = list(run.history) + ([run.epoch_row()] if run.batch else [])
    generator = out / GENERATOR_FILE
    if info.is_main:
        generator = run.write_generator()
        run.reports.write_reports(rows)
        if run.batch or not config.sample_every or (run.epoch % config.sample_every):
            run.write_samples(f"step_{run.step:07d}" if run.batch else f"epoch_{run.epoch:03d}")
    elapsed = time.perf_counter() - run_start
    ips = run_images * info.world_size / elapsed if elapsed > 0 else 0.0
    stopped = f", stopped by --max-steps {config.max_steps}" if run.total_steps < config.epochs * run.steps_per_epoch else ""
    say(f"done: {run.step} steps ({run.epochs_done:.3g} epochs of {run.steps_per_epoch} steps{stopped}), {ips:.1f} img/s; "
        f"generator {generator}")
    step_losses = torch.stack(losses).numpy() if losses else np.zeros((0, 4))
    return TrainResult(out=out, generator=generator, checkpoint=run.last_checkpoint, steps=run.step,
                       epochs=run.epochs_done, history=rows, step_losses=step_losses, first_step=first_step,
                       images_per_s=ips, device=str(device), precision=precision, config=config)
