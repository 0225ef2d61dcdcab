"""Differentiable augmentation for the discriminator's inputs (``--diffaugment``; DiffAugment, Zhao et al. 2020).

D sees every batch, real and generated alike, through the same random transforms, so it cannot
tell them apart by the transforms, and gradients flow through them into G. With few images that
keeps D from memorising the real set. Transforms are mild and keep the anatomy's orientation:

- ``color``: brightness shift ``U(-0.2, 0.2)`` (10% of the [-1, 1] range) and contrast factor
  ``U(0.75, 1.25)`` around each image's mean;
- ``translation``: a shift of up to 1/8 of the side in each direction, the uncovered border filled
  with the background value -1; ``translation:F`` shifts up to the fraction ``F`` of the side instead
  (``0 < F <= 0.5``, e.g. ``translation:0.0625`` for 1/16);
- ``cutout``: a square of half the side, at a random centre, set to 0.

No flips: they would change a brain's left-right statistics. Each image draws its own parameters
from ``generator`` (the run's checkpointed noise generator, so a resumed run draws the same ones).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

AUGMENTS = ("color", "translation", "cutout")
BRIGHTNESS = 0.2
CONTRAST = (0.75, 1.25)
TRANSLATION = 1 / 8
CUTOUT = 1 / 2
BACKGROUND = -1.0


def parse_policy(policy: str) -> tuple[str, ...]:
    """``"color,translation"`` -> ``("color", "translation")``; ``"translation:0.0625"`` keeps its range.
    Raises ValueError naming an unknown transform or a bad range."""
    items = tuple(p.strip() for p in policy.split(",") if p.strip())
    names = [item.split(":", 1)[0].strip() for item in items]
    unknown = [n for n in names if n not in AUGMENTS]
    if unknown:
        raise ValueError(f"unknown augmentation {unknown[0]!r}; choose from {', '.join(AUGMENTS)} (comma-separated)")
    if len(set(names)) != len(names):
        raise ValueError(f"augmentation policy {policy!r} names one transform twice")
    out = []
    for item, name in zip(items, names):
        if ":" in item:
            if name != "translation":
                raise ValueError(f"augmentation {item!r}: only translation takes a range (translation:F)")
            out.append(f"translation:{_fraction(item)!r}")
        else:
            out.append(name)
    return tuple(out)


def _fraction(item: str) -> float:
    text = item.split(":", 1)[1].strip()
    try:
        frac = float(text)
    except ValueError:
        frac = float("nan")
    if not 0 < frac <= 0.5:  # also false for nan
        raise ValueError(f"augmentation {item!r}: the range must be a fraction of the side, 0 < F <= 0.5 "
                         f"(e.g. translation:0.0625), got {text!r}")
    return frac


def _uniform(n: int, low: float, high: float, like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    u = torch.rand(n, 1, 1, 1, device=like.device, generator=generator)
    return (low + (high - low) * u).to(like.dtype)


def color(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    shift = _uniform(n, -BRIGHTNESS, BRIGHTNESS, x, generator)
    factor = _uniform(n, *CONTRAST, x, generator)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * factor + mean + shift


def translation(x: torch.Tensor, generator: torch.Generator, fraction: float = TRANSLATION) -> torch.Tensor:
    n, _, h, w = x.shape
    ph, pw = max(1, int(h * fraction)), max(1, int(w * fraction))
    dy = torch.randint(-ph, ph + 1, (n, 1, 1), device=x.device, generator=generator)
    dx = torch.randint(-pw, pw + 1, (n, 1, 1), device=x.device, generator=generator)
    padded = F.pad(x, (pw, pw, ph, ph), value=BACKGROUND)
    # output pixel (i, j) of image b reads padded pixel (i + ph - dy, j + pw - dx): a shift by (dy, dx)
    rows = torch.arange(h, device=x.device).view(1, h, 1) + ph - dy
    cols = torch.arange(w, device=x.device).view(1, 1, w) + pw - dx
    batch = torch.arange(n, device=x.device).view(n, 1, 1)
    out = padded.permute(0, 2, 3, 1)[batch, rows, cols]  # [n, h, w, c]
    return out.permute(0, 3, 1, 2).contiguous(memory_format=_format_of(x))


def cutout(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    n, _, h, w = x.shape
    sh, sw = int(h * CUTOUT), int(w * CUTOUT)
    cy = torch.randint(0, h, (n, 1, 1, 1), device=x.device, generator=generator)
    cx = torch.randint(0, w, (n, 1, 1, 1), device=x.device, generator=generator)
    yy = torch.arange(h, device=x.device).view(1, 1, h, 1)
    xx = torch.arange(w, device=x.device).view(1, 1, 1, w)
    inside = ((yy - cy).abs() * 2 < sh) & ((xx - cx).abs() * 2 < sw)
    return x * (~inside).to(x.dtype)


_TRANSFORMS = {"color": color, "translation": translation, "cutout": cutout}


def _format_of(x: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) \
        and not x.is_contiguous() else torch.contiguous_format


def diff_augment(x: torch.Tensor, policy: tuple[str, ...], generator: torch.Generator) -> torch.Tensor:
    """``x`` (``[N, C, H, W]`` in [-1, 1]) through each transform of ``policy`` in the fixed order of
    :data:`AUGMENTS`, each image with its own random parameters; differentiable in ``x``."""
    by_name = {item.split(":", 1)[0]: item for item in policy}
    for name in AUGMENTS:
        item = by_name.get(name)
        if item is None:
            continue
        if ":" in item:  # translation:F
            x = translation(x, generator, float(item.split(":", 1)[1]))
        else:
            x = _TRANSFORMS[name](x, generator)
    return x
