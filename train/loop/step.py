"""One training run's state and step: :class:`TrainingRun`.

One step is the original notebook's: the discriminator on a real batch and on ``G(z, labels)``
(BCE with logits, real=1, fake=0), then the generator against ``D(G(z, labels))`` with target 1.
D scores the real and generated batches in one pass; the generator step computes no D weight
gradients and runs no second spectral-norm power iteration. The loss (``--loss``), R1 (``--r1``),
DiffAugment (``--diffaugment``), the stage head (``--aux-weight``, ``--aux-head``) and the frozen stage
reader (``--reader-weight``, reader.py) are the options of the step (objectives.py, augment.py); :func:`cgan.train.loop.run.train` drives it.
"""

from __future__ import annotations

import contextlib
import copy
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from cgan.runtime.errors import CganError, first_line

from ..models import (GeneratorConfig, batch_groups, block_parameter_names, build_discriminator, build_generator,
                      freeze_lower_blocks, stage_parameter_names)
from ..models import split_outputs as _split
from ..options import TrainConfig
from ..store.read_exported import ExportedGenerator
from . import ddp, objectives
from .augment import diff_augment, parse_policy
from .fast import compile_or_eager, make_adam
from .reports import RunReports, TrainedSoFar
from .state import RunCheckpoint, Trainables

Log = Callable[[str], object]


# ---------------------------------------------------------------- the run


class TrainingRun:
    """Models, optimizers, RNG and position of one run; :meth:`train_step` is the whole algorithm,
    the rest is bookkeeping. Built by :func:`cgan.train.loop.run.train` (and by the training benchmark).

    It holds the two objects that write about it: :attr:`checkpoint` (a :class:`~.state.RunCheckpoint`:
    the checkpoint body, ``--resume``, ``--init-from``) and :attr:`reports` (a :class:`~.reports.RunReports`:
    the generator file, sample grids, history and loss curves), and hands them what they save."""

    def __init__(self, config: TrainConfig, image_set, info: ddp.DistInfo, device: torch.device,
                 precision: str, log: Log) -> None:
        self.config, self.info, self.device, self.precision, self.log = config, info, device, precision, log
        self.images, self.labels = image_set.images, np.asarray(image_set.labels, dtype=np.int64)
        self.class_names = list(image_set.class_names)
        self.description = image_set.description
        c = config
        if self.images.ndim != 3 or self.images.shape[1:] != (c.img_size, c.img_size):
            raise CganError(f"the training images are {tuple(self.images.shape[1:])} but --img-size is {c.img_size}")
        self.gen_config = GeneratorConfig(z_dim=c.z_dim, num_classes=len(self.class_names), img_size=c.img_size,
                                          width=c.width, arch=c.generator)

        # same seed on every rank: identical initial weights (DDP also broadcasts rank 0's)
        torch.manual_seed(c.seed)
        np.random.seed(c.seed)
        import random
        random.seed(c.seed)
        self.G = build_generator(self.gen_config).to(device)
        self.D = build_discriminator(c.disc, self.gen_config, width=c.disc_width, minibatch_std=c.minibatch_std,
                                     aux_classifier=c.aux_weight > 0, aux_head=c.aux_head).to(device)
        if c.channels_last:
            self.G.to(memory_format=torch.channels_last)
            self.D.to(memory_format=torch.channels_last)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False) if c.ema else None
        betas = (c.beta1, c.beta2)
        self.opt_g = make_adam(self._trained_generator_parameters(), lr=c.lr_g, betas=betas, device=device)
        # FreezeD: the lower blocks keep the --init-from checkpoint's weights (loaded into these same tensors)
        self.d_trained = freeze_lower_blocks(self.D, c.freeze_d)
        self.opt_d = make_adam(self.d_trained, lr=c.lr_d, betas=betas, device=device)
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
        self.amp_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
        self.augment_policy = parse_policy(c.diffaugment)
        self.last_r1 = None  # the latest R1 penalty (before its weight), a 0-d tensor; None before the first
        self.last_aux = None  # the latest AC-GAN terms (before the weight): [real, generated (D step), G step]
        self.reader = None  # the frozen stage reader of --reader-weight (attach_reader)
        self.last_reader = None  # its latest term on G's batch (before the weight)
        # the training noise: its own generator, seeded per rank, checkpointed
        self.noise_gen = torch.Generator(device=device)
        self.noise_gen.manual_seed(int(np.random.SeedSequence([c.seed, info.rank]).generate_state(1, np.uint64)[0] >> 1))

        if info.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [device.index] if device.type == "cuda" else None
            self.G_train: nn.Module = DDP(self.G, device_ids=ids)
            self.D_train: nn.Module = DDP(self.D, device_ids=ids)
        else:
            self.G_train, self.D_train = self.G, self.D
        # the modules the step calls: compiled with --compile, else the same as G_train / D_train
        self.G_step = compile_or_eager(self.G_train, c.compile, log if info.is_main else (lambda _m: None))
        self.D_step = compile_or_eager(self.D_train, c.compile, lambda _m: None)
        self.compiled = self.G_step is not self.G_train

        n_rank = len(self.labels) // info.world_size
        if n_rank < 1:
            raise CganError(f"{len(self.labels)} images cannot be shared by {info.world_size} processes")
        self.steps_per_epoch = math.ceil(n_rank / c.batch_size)
        self.total_steps = c.epochs * self.steps_per_epoch
        if c.max_steps is not None:
            self.total_steps = min(self.total_steps, c.max_steps)
        # the epochs this run reaches (the last one partly where --max-steps stops it mid-epoch): what the
        # progress shows as "epoch e/N", so that it never says 4/10 for a run that ends in epoch 4
        self.epochs_total = math.ceil(self.total_steps / self.steps_per_epoch)
        # position and history
        self.step = 0
        self.epoch = 0
        self.batch = 0  # next batch index within self.epoch
        self.history: list[dict[str, Any]] = []
        self.epoch_metrics = torch.zeros(self.steps_per_epoch, 4, dtype=torch.float64)
        self.epoch_images = 0
        self.epoch_time = 0.0
        self.last_checkpoint: Path | None = None
        self.init_source = ""  # set by load_init; recorded in the provenance
        self.warm_start_diff: float | None = None  # a warm start's rebuilt G against the file, in ONNX Runtime
        self.created = datetime.now(timezone.utc).replace(microsecond=0).isoformat()

        self.checkpoint = RunCheckpoint(config=c, gen_config=self.gen_config, class_names=self.class_names,
                                        description=self.description, info=info, device=device, log=log)
        self.reports = RunReports(config=c, gen_config=self.gen_config, class_names=self.class_names,
                                  description=self.description, device=device, precision=precision,
                                  world_size=info.world_size, augment_policy=self.augment_policy,
                                  ema=self.G_ema is not None)

    def attach_reader(self, reader) -> None:
        """Score G also by ``reader`` (a :class:`~.reader.StageReader`, ``--reader-weight``), and say so in the provenance."""
        self.reader = reader
        self.reports.reader = reader.describe()

    def _trained_generator_parameters(self) -> list[nn.Parameter]:
        """G's parameters that the optimizer moves: all of them, or with ``--tune stage`` the stage code and the
        first ``--tune-blocks`` blocks (the others get ``requires_grad=False``, so the backward computes no
        weight gradient for them)."""
        if self.config.tune == "all":
            return list(self.G.parameters())
        names = stage_parameter_names(self.G) | block_parameter_names(self.G, self.config.tune_blocks)
        for name, p in self.G.named_parameters():
            p.requires_grad_(name in names)
        return [p for name, p in self.G.named_parameters() if name in names]

    # ------------------------------------------------------------ one step

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def train_step(self, real: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """One D update then one G update; returns [d_loss, g_loss, D(real), D(fake)] (on device).

        With --compile, a step that fails to compile is redone eagerly (same noise), and the run
        stays eager from then on, after a one-line note.
        """
        if not self.compiled:
            return self._step(real, labels)
        noise_state = self.noise_gen.get_state()
        try:
            return self._step(real, labels)
        except Exception as exc:  # inductor/dynamo errors have many types
            if self.info.is_main:
                self.log(f"note: --compile: the compiled step failed ({type(exc).__name__}: {first_line(exc)}); training in eager mode")
            self.G_step, self.D_step, self.compiled = self.G_train, self.D_train, False
            self.noise_gen.set_state(noise_state)
            return self._step(real, labels)

    def _step(self, real: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The original's alternating step, with the redundant work taken out: D sees the real and the
        generated batch as one batch (one pass, one spectral-norm power iteration), and D's second
        pass in the G step neither computes D's weight gradients nor re-runs the power iteration
        (D's weights are frozen and it runs in eval mode, using the estimate this step just made)."""
        G, D, scaler, c = self.G_step, self.D_step, self.scaler, self.config
        b = real.shape[0]
        z = torch.randn(b, self.gen_config.z_dim, device=self.device, generator=self.noise_gen)
        both_labels = torch.cat([labels, labels])
        warmup = self.step < c.d_warmup  # D alone: G generates (in training mode) but takes no step
        if c.tune == "stage" or c.freeze_bn:  # G's BatchNorm on its running statistics, as exported
            self.G.eval()

        with self._autocast(), (torch.no_grad() if warmup else contextlib.nullcontext()):
            fake = G(z, labels)
        # D step: real and fake alike through the augmentation, then one pass of D over both
        d_in = torch.cat([real.to(fake.dtype), fake.detach()])
        if self.augment_policy:
            d_in = diff_augment(d_in, self.augment_policy, self.noise_gen)
        if c.channels_last:
            d_in = d_in.contiguous(memory_format=torch.channels_last)
        with self._autocast(), batch_groups(self.D, 2):
            logits, stage_logits = _split(D(d_in, both_labels))
            real_logits, fake_logits = logits.float().chunk(2)
            loss_d = objectives.d_loss(c.loss, real_logits, fake_logits)
        if stage_logits is not None:  # AC-GAN: D classifies real images and generated ones by their asked-for stage
            # the twin head reads a generated image of stage s as class K + s; the plain head as s; the real-only
            # head is fitted on the real images alone (its term on generated ones is reported, not trained on), and
            # so is the matched head
            fake_classes = labels + self.gen_config.num_classes if c.aux_head == "twin" else labels
            aux_real, aux_fake = (objectives.stage_loss(x, y) for x, y in zip(stage_logits.chunk(2), (labels, fake_classes)))
            if c.aux_head in ("real", "matched"):
                aux_fake = aux_fake.detach()
                loss_d = loss_d + c.aux_weight * aux_real
            else:
                loss_d = loss_d + c.aux_weight * (aux_real + aux_fake)
        if c.r1 > 0 and self.step % c.r1_every == 0:
            loss_d = loss_d + self._r1_term(d_in[:b].detach(), labels)
        self.opt_d.zero_grad(set_to_none=True)
        scaler.scale(loss_d).backward()
        scaler.step(self.opt_d)
        if warmup:
            return self._warmup_metrics(loss_d, real_logits, fake_logits,
                                        None if stage_logits is None else (aux_real, aux_fake))

        # G step: D frozen (its weight gradients would be thrown away; DDP told not to sync them)
        # and in eval mode (spectral norm reuses this step's power iteration instead of another)
        for p in self.d_trained:
            p.requires_grad_(False)
        self.D_train.eval()
        no_sync = self.D_train.no_sync() if self.info.enabled else contextlib.nullcontext()
        g_in = diff_augment(fake, self.augment_policy, self.noise_gen) if self.augment_policy else fake
        with no_sync:
            with self._autocast():
                g_logits, g_stage_logits = _split(D(g_in, labels))
                loss_g = objectives.g_loss(c.loss, g_logits.float())
                if g_stage_logits is not None:
                    if c.aux_head == "matched":  # read as this batch's real images of the stage are, not more surely
                        aux_g = objectives.matched_stage_loss(g_stage_logits, labels, stage_logits[:b], labels)
                    else:
                        aux_g = objectives.stage_loss(g_stage_logits, labels)
                    loss_g = loss_g + c.aux_weight * aux_g
                    self.last_aux = torch.stack([aux_real, aux_fake, aux_g]).detach()
                if self.reader is not None:  # frozen: gradients reach G through the images only
                    aux_r = self.reader.loss(g_in, labels)
                    loss_g = loss_g + c.reader_weight * aux_r
                    self.last_reader = aux_r.detach()
            self.opt_g.zero_grad(set_to_none=True)
            scaler.scale(loss_g).backward()
        self.D_train.train()
        for p in self.d_trained:
            p.requires_grad_(True)
        scaler.step(self.opt_g)
        scaler.update()
        if self.G_ema is not None:
            self._update_ema()
        with torch.no_grad():
            return torch.stack([loss_d.detach(), loss_g.detach(),
                                torch.sigmoid(real_logits.detach()).mean(), torch.sigmoid(fake_logits.detach()).mean()])

    def _warmup_metrics(self, loss_d, real_logits, fake_logits, aux) -> torch.Tensor:
        """A D-only step's report: the G loss is the one G would have had against D before D's update."""
        self.scaler.update()
        if self.G_ema is not None:
            self._update_ema()  # G's weights are unchanged; its BatchNorm statistics moved
        with torch.no_grad():
            loss_g = objectives.g_loss(self.config.loss, fake_logits.detach())
            if aux is not None:
                loss_g = loss_g + self.config.aux_weight * aux[1].detach()
                self.last_aux = torch.stack([aux[0], aux[1], aux[1]]).detach()
            return torch.stack([loss_d.detach(), loss_g, torch.sigmoid(real_logits.detach()).mean(),
                                torch.sigmoid(fake_logits.detach()).mean()])

    def _r1_term(self, real: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``gamma / 2 * r1_every * mean |grad D(x)|^2`` on (augmented) real images: lazy R1 as in StyleGAN2.

        The bare eager D in fp32 always: compiled graphs and DDP's wrapper do not support the double
        backward this needs (the penalty's weight gradients still join the D loss's one backward, synced
        by DDP), and an fp16 input gradient, unscaled, could underflow."""
        real = real.float().requires_grad_(True)
        logits = _split(self.D(real, labels))[0].float()
        penalty = objectives.r1_penalty(logits, real)
        self.last_r1 = penalty.detach()
        return penalty * (self.config.r1 / 2 * self.config.r1_every)

    @torch.no_grad()
    def _update_ema(self) -> None:
        decay = self.config.ema_decay
        torch._foreach_lerp_(list(self.G_ema.parameters()), list(self.G.parameters()), 1.0 - decay)
        for e, b in zip(self.G_ema.buffers(), self.G.buffers()):
            e.copy_(b)

    # ------------------------------------------------------------ checkpoint and reports

    def trainables(self) -> Trainables:
        """The models, optimizers, scaler and noise generator as they are now (what a checkpoint saves)."""
        return Trainables(G=self.G, D=self.D, G_ema=self.G_ema, opt_g=self.opt_g, opt_d=self.opt_d,
                          scaler=self.scaler, noise_gen=self.noise_gen)

    def state(self) -> dict[str, Any]:
        """The full checkpoint body (collective under DDP: every rank must call it)."""
        position = {"step": self.step, "epoch": self.epoch, "batch": self.batch,
                    "epoch_metrics": self.epoch_metrics[: self.batch].clone(), "epoch_images": self.epoch_images,
                    "epoch_time": self.epoch_time, "history": list(self.history), "created": self.created,
                    "init_source": self.init_source}
        return self.checkpoint.body(self.trainables(), position, self.provenance())

    def load_state(self, state: dict[str, Any], source: Path) -> None:
        """Continue from a checkpoint body (``--resume``): its weights and random states, then its position."""
        self.checkpoint.restore(self.trainables(), state, source)
        self.step, self.epoch, self.batch = state["step"], state["epoch"], state["batch"]
        self.epoch_metrics[: self.batch] = state["epoch_metrics"]
        self.epoch_images, self.epoch_time = state["epoch_images"], state["epoch_time"]
        self.history = list(state["history"])
        self.created = state["created"]
        self.init_source = state.get("init_source", "")

    def load_init(self, init: dict[str, Any] | ExportedGenerator, source: Path) -> None:
        """Start from what ``--init-from`` names (see :meth:`RunCheckpoint.start_from`)."""
        self.init_source, self.warm_start_diff = self.checkpoint.start_from(self.trainables(), init, source)

    def export_generator(self) -> nn.Module:
        """The generator the run publishes: the EMA copy when kept, else G."""
        return self.G_ema if self.G_ema is not None else self.G

    def so_far(self) -> TrainedSoFar:
        return TrainedSoFar(steps=self.step, epochs_done=self.epochs_done, run_started=self.created,
                            init_source=self.init_source)

    def provenance(self) -> dict[str, str]:
        return self.reports.provenance(self.so_far())

    def write_generator(self) -> Path:
        return self.reports.write_generator(self.export_generator(), self.so_far())

    def write_samples(self, name: str) -> Path:
        return self.reports.write_samples(self.export_generator(), name)

    @property
    def epochs_done(self) -> float:
        return self.epoch + self.batch / self.steps_per_epoch

    def epoch_row(self) -> dict[str, Any]:
        """This epoch's history row so far (averaged over ranks)."""
        local = torch.cat([self.epoch_metrics[: self.batch].sum(0),
                           torch.tensor([self.batch, self.epoch_images], dtype=torch.float64)])
        total = ddp.sum_across(self.info, local)
        steps = max(float(total[4]), 1.0)
        d_loss, g_loss, d_real, d_fake = (total[:4] / steps).tolist()
        t = self.epoch_time
        return {"epoch": self.epoch + 1, "g_loss": g_loss, "d_loss": d_loss, "d_real": d_real, "d_fake": d_fake,
                "epoch_time_s": t, "steps": self.batch, "images_per_s": float(total[5]) / t if t > 0 else 0.0}
