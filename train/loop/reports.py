"""What a training run writes about itself (rank 0): the generator file with its provenance, the
fixed-noise sample grids and the history/loss reports. A mixin of :class:`cgan.train.loop.run.TrainingRun`,
which holds the state these read (config, models, position, data description)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cgan.runtime import __version__
from cgan.runtime.contract import GENERATOR_FILE, noise, to_uint8
from cgan.runtime.noise import NOISE_VERSION

from ..store import write as ckpt
from . import report_files as outputs

SAMPLE_COLUMNS = 8  # fixed-noise samples per stage in each grid


class RunOutputs:
    """The writers of :class:`~cgan.train.loop.run.TrainingRun` (see the module docstring)."""

    def provenance(self) -> dict[str, str]:
        done = self.epochs_done
        return {
            "training_data": self.description,
            "epochs": f"{done:g}" if done == int(done) else f"{done:.3f}",
            "steps": str(self.step),
            "created": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
            "run_started": self.created,
            "tool_version": __version__,
            "seed": str(self.config.seed),
            "discriminator": f"{self.config.disc} (width {self.config.disc_width}"
                             f"{', minibatch std' if self.config.minibatch_std else ''})",
            "precision": self.precision,
            "train_device": self.device_name(),
            "lr": f"G {self.config.lr_g:g}, D {self.config.lr_d:g}",
            "batch_size": str(self.config.batch_size),
            "world_size": str(self.info.world_size),
            "ema": f"true (decay {self.config.ema_decay}; 'model' holds the EMA weights)" if self.G_ema is not None
            else "false",
            **({"init_from": self.init_source} if self.init_source else {}),
            **({"d_warmup": f"{self.config.d_warmup} steps of D alone"} if self.config.d_warmup else {}),
            **({"batches": "stage-balanced (every batch holds the stages in equal shares)"}
               if self.config.balanced_batches else {}),
            "generator": self.gen_config.arch + (" (conditional BatchNorm: stage-dependent scale and shift in every block)"
                                                 if self.gen_config.arch == "cbn" else " (the original's layers)"),
            "objective": self.objective(),
        }

    def device_name(self) -> str:
        """``cpu`` or ``cuda (NVIDIA H200)``: where the weights were trained (GPU runs are not bit-exact)."""
        if self.device.type == "cuda":
            return f"cuda ({torch.cuda.get_device_name(self.device)})"
        return self.device.type

    def objective(self) -> str:
        """The discriminator-side recipe in one line, e.g. ``bce; R1 gamma 1 every 16 steps; DiffAugment color``
        (an AC-GAN stage classifier, ``--aux-weight``, is named last)."""
        c = self.config
        parts = [c.loss]
        if c.r1 > 0:
            parts.append(f"R1 gamma {c.r1:g} every {c.r1_every} step{'s' if c.r1_every > 1 else ''}")
        if self.augment_policy:
            parts.append("DiffAugment " + ",".join(self.augment_policy))
        if c.aux_weight > 0:
            parts.append(f"AC-GAN stage classifier weight {c.aux_weight:g}")
        return "; ".join(parts)

    def export_generator(self) -> nn.Module:
        return self.G_ema if self.G_ema is not None else self.G

    def write_generator(self) -> Path:
        path = Path(self.config.out) / GENERATOR_FILE
        payload = ckpt.generator_payload(self.export_generator().state_dict(), self.gen_config.to_dict(),
                                         self.provenance(), ema=self.G_ema is not None, class_names=self.class_names)
        return ckpt.save_generator(path, payload)

    @torch.no_grad()
    def write_samples(self, name: str) -> Path:
        """A grid of fixed-noise samples: one row per stage, the same noise in every column."""
        model = self.export_generator()
        was_training = model.training
        model.eval()
        z = torch.from_numpy(noise(self.config.seed, 0, SAMPLE_COLUMNS, self.gen_config.z_dim)).to(self.device)
        rows = []
        for stage in range(self.gen_config.num_classes):
            labels = torch.full((SAMPLE_COLUMNS,), stage, dtype=torch.long, device=self.device)
            rows.append(to_uint8(model(z, labels).float().cpu().numpy())[:, 0])
        model.train(was_training)
        folder = Path(self.config.out) / outputs.SAMPLES_DIR
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.png"
        text = {"cgan.seed": str(self.config.seed), "cgan.noise_version": str(NOISE_VERSION),
                "cgan.noise": f"columns: images 0..{SAMPLE_COLUMNS - 1} of contract.noise(seed)"}
        outputs.save_png(path, outputs.sample_grid(np.stack(rows), self.class_names), text)
        return path

    def write_reports(self, rows: list[dict[str, Any]]) -> None:
        out = Path(self.config.out)
        outputs.write_history(out / outputs.HISTORY_FILE, rows)
        if rows:
            outputs.plot_losses(out / outputs.LOSS_PLOT_FILE, rows)
