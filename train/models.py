"""The conditional DCGAN: a Generator identical to the original project's, and two discriminators.

The Generator keeps the original's layer list and parameter names (``label_emb``, ``net.0`` ...
``net.15`` at 128 px), so the published ``cDCGAN_generator.pth`` loads with ``strict=True``.
An alternative with the same contract, the conditional-BatchNorm generator, lives in ``cbn.py``;
:func:`build_generator` makes either from a :class:`GeneratorConfig` (``model_config.py``, which both build on).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn
from torch.nn.utils import spectral_norm

from .cbn import CBNGenerator
from .model_config import GENERATORS, GeneratorConfig, dcgan_init  # noqa: F401 - GENERATORS: the names --generator takes


class Generator(nn.Module):
    """(z, stage) -> image in [-1, 1]. ``z`` is ``[N, z_dim]`` or the original's ``[N, z_dim, 1, 1]``."""

    def __init__(self, config: GeneratorConfig | None = None, **kwargs) -> None:
        super().__init__()
        if "img_channels" in kwargs:  # the original's name for it: Generator(z_dim, num_classes, img_channels=1)
            kwargs["channels"] = kwargs.pop("img_channels")
        config = config or GeneratorConfig(**kwargs)
        if config.arch != "dcgan":
            raise ValueError(f"Generator is the original's architecture; build {config.arch!r} with build_generator")
        self.config = config
        self.label_emb = nn.Embedding(config.num_classes, config.num_classes)
        layers: list[nn.Module] = []
        c_in = config.z_dim + config.num_classes
        for i in range(config.n_blocks):
            c_out = config.width >> i
            stride, pad = (1, 0) if i == 0 else (2, 1)
            layers += [
                nn.ConvTranspose2d(c_in, c_out, 4, stride, pad, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(True),
            ]
            c_in = c_out
        layers += [nn.ConvTranspose2d(c_in, config.channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.apply(dcgan_init)

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if z.dim() == 2:
            z = z[:, :, None, None]
        emb = self.label_emb(labels)[:, :, None, None]
        return self.net(torch.cat([z, emb], dim=1))


def build_generator(config: GeneratorConfig) -> nn.Module:
    """The generator ``config.arch`` names: :class:`Generator` (the original's) or the conditional-BatchNorm one."""
    if config.arch == "cbn":
        return CBNGenerator(config)
    return Generator(config)


class MinibatchStd(nn.Module):
    """Append one channel holding the batch's mean feature standard deviation (Karras et al., ProGAN).

    The discriminator then sees how varied a whole batch is, so a generator that maps every z of a
    stage to one image is caught and pushed apart: the usual remedy for within-class mode collapse.
    The real and the generated batches are judged each on its own spread: the training step runs
    them through D as one batch with ``groups = 2`` (see :func:`batch_groups`), and then each
    half gets the spread of its own images.
    """

    groups = 1  # equal consecutive parts of the batch, each measured on its own

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        g = self.groups
        if h.shape[0] % g:
            raise ValueError(f"a batch of {h.shape[0]} cannot be split into {g} equal groups")
        parts = h.float().view(g, h.shape[0] // g, *h.shape[1:])
        if parts.shape[1] > 1:
            spread = parts.std(dim=1, unbiased=False).flatten(1).mean(1)  # [g]
        else:
            spread = parts.new_zeros(g)
        per_image = spread.repeat_interleave(h.shape[0] // g).to(h.dtype)
        return torch.cat([h, per_image.view(-1, 1, 1, 1).expand(h.shape[0], 1, *h.shape[2:])], dim=1)


@contextlib.contextmanager
def batch_groups(module: nn.Module, groups: int) -> Iterator[None]:
    """Within the block, every :class:`MinibatchStd` of ``module`` measures ``groups`` equal
    consecutive parts of its batch separately (e.g. the real and the generated halves)."""
    layers = [m for m in module.modules() if isinstance(m, MinibatchStd)]
    for m in layers:
        m.groups = groups
    try:
        yield
    finally:
        for m in layers:
            m.groups = 1


class ProjectionDiscriminator(nn.Module):
    """The original notebook's discriminator: spectral-normalised convs and a class projection.

    ``minibatch_std`` adds a :class:`MinibatchStd` channel before the projection (not in the original).
    ``aux_classifier`` adds a linear stage classifier on the same features (AC-GAN, Odena et al. 2017;
    not in the original): ``forward`` then returns ``(logits, stage_logits)`` instead of ``logits``.
    ``aux_classes`` is its number of outputs: ``num_classes`` (AC-GAN), or twice that for the twin head
    (real stage s and generated stage s as separate classes, after ADC-GAN, Hou et al. 2022).
    """

    def __init__(self, num_classes: int = 4, img_size: int = 128, channels: int = 1, width: int = 64,
                 minibatch_std: bool = False, aux_classifier: bool = False, aux_classes: int | None = None) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = channels
        for i in range(4):
            c_out = width << i
            conv = nn.Conv2d(c_in, c_out, 4, 2, 1)
            dcgan_init(conv)
            layers += [spectral_norm(conv), nn.LeakyReLU(0.2, inplace=True)]
            c_in = c_out
        if minibatch_std:
            layers.append(MinibatchStd())
            c_in += 1
        self.features = nn.Sequential(*layers)
        n_features = c_in * (img_size // 16) ** 2
        self.linear = nn.Linear(n_features, 1)
        self.embed = nn.Embedding(num_classes, n_features)
        nn.init.normal_(self.embed.weight, 0.0, 0.02)
        # built last, so the other weights are drawn exactly as without it
        self.classifier = nn.Linear(n_features, aux_classes or num_classes) if aux_classifier else None

    def forward(self, images: torch.Tensor, labels: torch.Tensor):
        h = self.features(images).flatten(1)
        logits = self.linear(h).squeeze(1) + (self.embed(labels) * h).sum(dim=1)
        return logits if self.classifier is None else (logits, self.classifier(h))


class SpatialDiscriminator(nn.Module):
    """The original README's discriminator: the image plus a learned label map as a second channel.

    ``minibatch_std`` adds a :class:`MinibatchStd` channel before the last conv (not in the original).
    """

    def __init__(self, num_classes: int = 4, img_size: int = 128, channels: int = 1, width: int = 64,
                 minibatch_std: bool = False) -> None:
        super().__init__()
        self.img_size = img_size
        self.label_map = nn.Embedding(num_classes, img_size * img_size)
        layers: list[nn.Module] = []
        c_in = channels + 1
        for i in range(4):
            c_out = width << i
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
            c_in = c_out
        if minibatch_std:
            layers.append(MinibatchStd())
            c_in += 1
        layers.append(nn.Conv2d(c_in, 1, img_size // 16, 1, 0))
        self.net = nn.Sequential(*layers)
        self.apply(dcgan_init)

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        label_map = self.label_map(labels).view(-1, 1, self.img_size, self.img_size)
        return self.net(torch.cat([images, label_map], dim=1)).flatten()


DISCRIMINATORS = {"projection": ProjectionDiscriminator, "spatial": SpatialDiscriminator}


def build_discriminator(kind: str, config: GeneratorConfig, width: int = 64, minibatch_std: bool = False,
                        aux_classifier: bool = False, aux_head: str = "ac") -> nn.Module:
    """``width``: channels of D's first conv, doubled per block (the original: 64). Its cost grows ~width².

    ``minibatch_std``: give D a batch-spread channel (:class:`MinibatchStd`) against mode collapse.
    ``aux_classifier``: an AC-GAN stage classifier head (projection discriminator only: the spatial one
    is given the stage as an input channel, so a classifier on its features could read the answer).
    ``aux_head``: ``ac``, ``real`` or ``matched`` (one class per stage; they differ in what D fits it on and
    how G is scored, not in shape) or
    ``twin`` (real and generated stages as separate classes).
    """
    try:
        cls = DISCRIMINATORS[kind]
    except KeyError:
        raise ValueError(f"unknown discriminator {kind!r}; expected one of {', '.join(DISCRIMINATORS)}") from None
    if width < 1:
        raise ValueError(f"discriminator width must be >= 1, got {width}")
    extra = {}
    if aux_classifier:
        if kind != "projection":
            raise ValueError("the auxiliary stage classifier needs the projection discriminator")
        if aux_head not in ("ac", "twin", "real", "matched"):
            raise ValueError(f"unknown stage-classifier head {aux_head!r}; expected ac, twin, real or matched")
        extra["aux_classifier"] = True
        extra["aux_classes"] = config.num_classes * (2 if aux_head == "twin" else 1)
    return cls(num_classes=config.num_classes, img_size=config.img_size, channels=config.channels, width=width,
               minibatch_std=minibatch_std, **extra)


def freeze_lower_blocks(discriminator: nn.Module, blocks: int) -> list[nn.Parameter]:
    """FreezeD (Mo et al. 2020): the first ``blocks`` conv blocks of a discriminator get ``requires_grad=False``
    (their spectral norms' power iterations still run); returns the parameters that still train, in order.
    The blocks are counted along its conv stack (``features`` or ``net``), the input's side first."""
    if isinstance(discriminator, ProjectionDiscriminator):
        convs = [m for m in discriminator.features if isinstance(m, nn.Conv2d)]
    else:  # the spatial discriminator's last conv is its head
        convs = [m for m in discriminator.net if isinstance(m, nn.Conv2d)][:-1]
    if not 0 <= blocks <= len(convs):
        raise ValueError(f"the discriminator has {len(convs)} conv blocks; {blocks} cannot be frozen")
    for conv in convs[:blocks]:
        conv.requires_grad_(False)
    return [p for p in discriminator.parameters() if p.requires_grad]


def split_outputs(out) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A discriminator's output as (adversarial logits, stage logits or None): with a classifier, D returns both."""
    return out if isinstance(out, tuple) else (out, None)


def stage_parameter_names(generator: nn.Module) -> set[str]:
    """The names of a generator's stage code: the embedding table, and the cbn generator's per-stage gains
    and shifts (what ``--tune stage`` trains)."""
    return {name for name, _ in generator.named_parameters()
            if name == "label_emb.weight" or name.endswith((".gain.weight", ".shift.weight"))}


def block_parameter_names(generator: nn.Module, blocks: int) -> set[str]:
    """The names of the parameters of a generator's first ``blocks`` blocks, counted from its input: each
    block's transposed conv and its BatchNorm's gain and shift (what ``--tune stage --tune-blocks N`` also
    trains). The output layer is not a block."""
    n = generator.config.n_blocks
    if not 0 <= blocks <= n:
        raise ValueError(f"the generator has {n} blocks; {blocks} cannot be trained")
    if isinstance(generator, Generator):  # net = [ConvTranspose, BatchNorm, ReLU] * n + [ConvTranspose, Tanh]
        prefixes = tuple(f"net.{3 * i + j}." for i in range(blocks) for j in (0, 1))
    else:
        prefixes = tuple(f"{kind}.{i}." for i in range(blocks) for kind in ("convs", "norms"))
    return {name for name, _ in generator.named_parameters() if name.startswith(prefixes)}


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
