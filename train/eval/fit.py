"""Fitting a judge network fast on a CPU: cached uint8 arrays, channels_last, class-balanced draws,
early stopping on a subject-held-out validation part (after ``min_epochs``), progress with rates, and a checkpoint after
every epoch so an interrupted fit resumes where it stopped.

An "epoch" is ``epoch_images`` class-balanced draws (weight 1/stage count, with
replacement), so a fit costs the same whatever pool it draws from (real, real + generated, generated).
The balance study also fits with plain draws (every image equally likely) and a class-weighted loss.

Two things keep the kept network's reading of new images stable:

- Before every validation the BatchNorm statistics are measured afresh on a fixed, class-balanced part
  of the fit images (:func:`recompute_batchnorm`). The running averages that training keeps lag the
  weights while the learning rate is high; validated with them, an epoch near the schedule's peak could
  read every image as one stage (balanced accuracy 0.25) and the next as 0.8, so "the best epoch" was
  chosen among readings that mostly measured the lag.
- With ``average_last`` the kept network is the average of the weights at the end of the last epochs
  (stochastic weight averaging over the low-learning-rate tail of the one-cycle schedule), its
  BatchNorm statistics measured afresh. The best of many noisy validation readings overstates what
  the chosen epoch reads on new subjects; the average needs no choice (on the judge set it read new
  subjects within a point of the best epoch, and 1.4-1.6 points better for the deep judge).
"""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.nn import functional as F

from cgan.runtime.fileio import atomic_path

from .metrics import accuracy_summary, confusion

Log = Callable[[str], object]


def resize_u8(images: np.ndarray, size: int, *, chunk: int = 1024) -> np.ndarray:
    """uint8 ``[N, H, W]`` -> uint8 ``[N, size, size]`` (bilinear, antialiased; always a copy)."""
    if images.ndim == 4 and images.shape[1] == 1:
        images = images[:, 0]
    if images.ndim != 3:
        raise ValueError(f"images must be uint8 [N, H, W], got shape {images.shape}")
    out = np.empty((len(images), size, size), dtype=np.uint8)
    for s in range(0, len(images), chunk):
        part = np.array(images[s : s + chunk], dtype=np.uint8)  # writable (memmaps are read-only)
        if part.shape[1:] == (size, size):
            out[s : s + len(part)] = part
            continue
        x = F.interpolate(torch.from_numpy(part).float().unsqueeze(1), size=(size, size), mode="bilinear",
                          antialias=True, align_corners=False)
        out[s : s + len(part)] = x.round_().clamp_(0, 255).to(torch.uint8).squeeze(1).numpy()
    return out


def augment_batch(x: torch.Tensor, policy: str, gen: torch.Generator) -> torch.Tensor:
    """Label-preserving jitter of a judge's training batch ``x`` (float ``[B, 1, S, S]`` in [-1, 1]).

    ``shift``: a translation of up to 1/16 of the side in each direction (the uncovered border black);
    ``intensity``: contrast x U(0.9, 1.1) and brightness + U(-0.05, 0.05) of the range, clipped. No flips:
    left and right are not interchangeable in anatomy. Draws come from ``gen`` (CPU), so a fit stays
    reproducible per seed on every device.
    """
    if not policy:
        return x
    b, _, s, _ = x.shape
    parts = set(policy.split(","))
    if "shift" in parts:
        m = max(1, s // 16)
        offsets = torch.randint(0, 2 * m + 1, (2, b), generator=gen).to(x.device)
        padded = F.pad(x, (m, m, m, m), value=-1.0)
        ar = torch.arange(s, device=x.device)
        rows = (offsets[0][:, None] + ar)[:, :, None]
        cols = (offsets[1][:, None] + ar)[:, None, :]
        x = padded[torch.arange(b, device=x.device)[:, None, None], 0, rows, cols].unsqueeze(1)
    if "intensity" in parts:
        c = (0.9 + 0.2 * torch.rand(b, generator=gen)).to(x.device).view(b, 1, 1, 1)
        d = (0.1 * torch.rand(b, generator=gen) - 0.05).to(x.device).view(b, 1, 1, 1)
        x = (x * c + d).clamp_(-1.0, 1.0)
    return x.contiguous(memory_format=torch.channels_last)


JUDGE_AUGMENTS = ("shift", "intensity")


def to_input(u8: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 ``[B, S, S]`` -> float32 ``[B, 1, S, S]`` in [-1, 1], channels_last."""
    u8 = np.ascontiguousarray(u8, dtype=np.uint8)
    if not u8.flags.writeable:  # a memmap view: torch wants writable memory
        u8 = u8.copy()
    x = torch.from_numpy(u8).to(device).unsqueeze(1).float()
    return x.mul_(2.0 / 255.0).sub_(1.0).contiguous(memory_format=torch.channels_last)


BN_IMAGES = 512  # fit images (class-balanced, fixed per seed) on which BatchNorm statistics are measured


def balanced_subset(y: np.ndarray, n: int, seed: int, num_classes: int) -> np.ndarray:
    """Up to ``n`` indices of ``y``, as many per class as it has (fixed by ``seed``), sorted."""
    rng = np.random.default_rng([seed, 0xB17])
    per = max(1, n // max(1, num_classes))
    parts = [rng.permutation(np.flatnonzero(y == c))[:per] for c in range(num_classes)]
    return np.sort(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)


def uniform_subset(n_items: int, n: int, seed: int) -> np.ndarray:
    """Up to ``n`` of ``range(n_items)``, every item equally likely (fixed by ``seed``), sorted."""
    rng = np.random.default_rng([seed, 0xB17])
    return np.sort(rng.permutation(n_items)[:n])


@torch.no_grad()
def recompute_batchnorm(model: torch.nn.Module, x_u8: np.ndarray, device: torch.device, batch_size: int = 128) -> None:
    """Replace every BatchNorm layer's running statistics by their exact average over ``x_u8`` (the
    current weights' statistics, not a lagging running average). Weights are not touched."""
    layers = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not layers or len(x_u8) == 0:
        return
    momenta = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches below
    was_training = model.training
    model.train()
    for s in range(0, len(x_u8), batch_size):
        model(to_input(x_u8[s : s + batch_size], device))
    for m, momentum in zip(layers, momenta):
        m.momentum = momentum
    model.train(was_training)


@torch.no_grad()
def predict(model: torch.nn.Module, x_u8: np.ndarray, device: torch.device, batch_size: int = 256) -> np.ndarray:
    model.eval()
    out = [model(to_input(x_u8[s : s + batch_size], device)).argmax(1).cpu().numpy()
           for s in range(0, len(x_u8), batch_size)]
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def epoch_draws(config: Any, n_fit: int) -> int:
    """Draws per epoch for fits on a fit side of ``n_fit`` images: the config's ``epoch_images``, or one
    pass over the fit side where that is smaller (so a small set's epoch costs what its images do), at
    least one batch."""
    return max(int(config.batch_size), min(int(config.epoch_images), int(n_fit)))


SAMPLERS = ("balanced", "plain")


def fit(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, *,
        num_classes: int, config: Any, device: torch.device, name: str, checkpoint: Path | None = None,
        ident: str = "", log: Log = print, sampler: str = "balanced",
        class_weights: Any = None) -> dict[str, Any]:
    """Fit ``model`` in place on uint8 ``x`` (already at the network's size) and labels ``y``.

    Kept: with ``config.average_last`` (and the whole schedule run) the average of the weights at the end
    of the last ``average_last`` epochs; otherwise the epoch with the best validation balanced accuracy
    from ``config.min_epochs`` on (stop after ``config.patience`` epochs without a gain). BatchNorm
    statistics are measured afresh before every validation and for the kept network. With
    ``checkpoint``, the state after every epoch is saved there and a matching one (same ``ident``) is
    resumed. Returns the history.

    ``sampler``: ``"balanced"`` (the judges' own: every image drawn with weight 1/its stage's count, and
    BatchNorm statistics measured on a class-balanced part) or ``"plain"`` (every image equally likely,
    BatchNorm statistics on a uniform part: the stages in the data's own proportions).
    ``class_weights``: per-class weights of the cross-entropy loss (``None``: unweighted)."""
    from cgan.runtime.progress import progress

    torch.manual_seed(config.seed)
    model.to(device).to(memory_format=torch.channels_last)
    counts = np.bincount(y, minlength=num_classes)
    draws = config.epoch_images
    steps_per_epoch = max(1, math.ceil(draws / config.batch_size))
    total = steps_per_epoch * config.max_epochs
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=total, pct_start=0.2)
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
    if sampler == "balanced":
        weights = np.where(counts[y] > 0, 1.0 / np.maximum(counts[y], 1), 0.0)
        weights = weights / weights.sum()
    else:
        weights = np.full(len(y), 1.0 / max(len(y), 1))
    loss_weight = None
    if class_weights is not None:
        loss_weight = torch.as_tensor(np.asarray(class_weights, dtype=np.float32), device=device)
        if loss_weight.shape != (num_classes,):
            raise ValueError(f"class_weights needs one weight per class ({num_classes}), got {tuple(loss_weight.shape)}")
    state = {"epoch": 0, "step": 0, "best": -1.0, "best_epoch": 0, "best_state": None, "history": [],
             "avg_state": None, "avg_count": 0}
    average_last = int(getattr(config, "average_last", 0) or 0)
    first_kept = max(1, min(int(config.min_epochs), int(config.max_epochs)))
    bn_idx = (balanced_subset(y, BN_IMAGES, int(config.seed), num_classes) if sampler == "balanced"
              else uniform_subset(len(y), BN_IMAGES, int(config.seed)))
    bn_x = np.ascontiguousarray(x[bn_idx])
    if checkpoint is not None and checkpoint.is_file():
        try:
            saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
        except Exception:  # a torn or foreign file: start over (it is only a cache)
            saved = None
        if isinstance(saved, dict) and saved.get("ident") == ident:
            model.load_state_dict(saved["model"])
            opt.load_state_dict(saved["opt"])
            sched.load_state_dict(saved["sched"])
            state = saved["state"]
            log(f"{name}: resuming an interrupted fit after epoch {state['epoch']} ({checkpoint})")
    step = state["step"]
    policy = getattr(config, "augment", "") or ""
    with progress(f"{name}", total=total, completed=step, unit="step") as bar:
        while state["epoch"] < config.max_epochs and step < total:
            epoch = state["epoch"]
            rng = np.random.default_rng([config.seed, epoch, 0xC1A5])
            order = rng.choice(len(y), size=draws, replace=True, p=weights)
            model.train()
            jitter = torch.Generator().manual_seed(int(config.seed) * 1_000_003 + epoch)
            t0, loss_sum, seen = time.perf_counter(), 0.0, 0
            for s in range(0, draws, config.batch_size):
                if step >= total:
                    break
                idx = np.sort(order[s : s + config.batch_size])
                batch = augment_batch(to_input(x[idx], device), policy, jitter)
                loss = F.cross_entropy(model(batch), torch.from_numpy(y[idx]).to(device), weight=loss_weight)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                step += 1
                loss_sum += loss.item() * len(idx)
                seen += len(idx)
                bar.advance()
            seconds = time.perf_counter() - t0
            recompute_batchnorm(model, bn_x, device)
            val = _validate(model, x_val, y_val, device, num_classes)
            state["epoch"] = epoch + 1
            state["step"] = step
            state["history"].append({"epoch": epoch + 1, "loss": loss_sum / max(seen, 1), "val_balanced_accuracy": val,
                                     "seconds": round(seconds, 2)})
            if state["epoch"] >= first_kept and val > state["best"]:
                state.update(best=val, best_epoch=epoch + 1,
                             best_state={k: v.detach().cpu().clone() for k, v in model.state_dict().items()})
            if average_last and state["epoch"] > config.max_epochs - average_last:
                state["avg_state"] = _accumulate(state["avg_state"], model, state["avg_count"])
                state["avg_count"] += 1
            if checkpoint is not None:
                checkpoint.parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(checkpoint) as tmp:
                    torch.save({"ident": ident, "model": model.state_dict(), "opt": opt.state_dict(),
                                "sched": sched.state_dict(), "state": state}, tmp)
            log(f"{name} epoch {epoch + 1}/{config.max_epochs}: loss {loss_sum / max(seen, 1):.4f}, validation "
                f"balanced accuracy {val:.3f} ({_best_so_far(state, first_kept)}); "
                f"{seen:,} images in {seconds:.1f} s ({seen / max(seconds, 1e-9):,.0f} img/s)")
            # not before min_epochs: early on, at the schedule's peak learning rate, BatchNorm's running
            # statistics lag the weights and the validation accuracy says little
            if (config.min_epochs <= state["epoch"] < config.max_epochs
                    and state["epoch"] - state["best_epoch"] >= config.patience):
                log(f"{name}: stopping early, no validation gain for {config.patience} epochs")
                break
    kept, val_kept = "best epoch", state["best"]
    if average_last and state["avg_count"] == average_last:
        model.load_state_dict(state["avg_state"])
        recompute_batchnorm(model, bn_x, device)
        val_kept = _validate(model, x_val, y_val, device, num_classes)
        kept = f"average of the last {average_last} epochs"
        log(f"{name}: keeping the {kept} (validation balanced accuracy {val_kept:.3f}; best single epoch "
            f"{state['best']:.3f} at {state['best_epoch']})")
    elif state["best_state"] is not None:
        model.load_state_dict(state["best_state"])
    model.eval()
    return {"epochs": state["epoch"], "best_epoch": state["best_epoch"], "steps": step, "kept": kept,
            "val_balanced_accuracy": val_kept, "best_epoch_val_balanced_accuracy": state["best"],
            "history": copy.deepcopy(state["history"])}


def _best_so_far(state: dict[str, Any], first_kept: int) -> str:
    if state["best_epoch"]:
        return f"best {state['best']:.3f} at {state['best_epoch']}"
    return f"epochs are kept from {first_kept} on"


def _validate(model: torch.nn.Module, x_val: np.ndarray, y_val: np.ndarray, device: torch.device, k: int) -> float:
    return float(accuracy_summary(confusion(y_val, predict(model, x_val, device), k))["balanced_accuracy"])


def _accumulate(avg: dict[str, torch.Tensor] | None, model: torch.nn.Module, count: int) -> dict[str, torch.Tensor]:
    """The running mean of the model's floating-point weights after ``count + 1`` epochs (integer
    buffers, e.g. BatchNorm's batch counter, are the latest; BatchNorm statistics are re-measured for
    the averaged weights anyway)."""
    now = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    if avg is None:
        return now
    for k, v in now.items():
        if v.is_floating_point():
            avg[k] += (v - avg[k]) / (count + 1)
        else:
            avg[k] = v
    return avg
