"""The adversarial losses (``--loss bce|hinge``), the R1 gradient penalty (``--r1 GAMMA``), the
AC-GAN stage term (``--aux-weight W``) and the matched stage terms (``--aux-head matched``, ``--reader-weight W``).

Every function takes D's raw logits. ``bce`` is the original notebook's (BCE with logits, real=1,
fake=0; G against target 1, the non-saturating loss); ``hinge`` is the one of SAGAN/BigGAN:
D minimises ``mean(relu(1 - D(x))) + mean(relu(1 + D(G(z))))``, G minimises ``-mean(D(G(z)))``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSSES = ("bce", "hinge")


def d_loss(kind: str, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """The discriminator's loss on one real and one generated batch."""
    if kind == "bce":
        # softplus(-x) = BCE(x, 1) and softplus(x) = BCE(x, 0), as BCEWithLogitsLoss computes them
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
    if kind == "hinge":
        return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()
    raise ValueError(f"unknown loss {kind!r}; expected one of {', '.join(LOSSES)}")


def g_loss(kind: str, fake_logits: torch.Tensor) -> torch.Tensor:
    """The generator's loss on D's logits for its batch."""
    if kind == "bce":
        return F.softplus(-fake_logits).mean()
    if kind == "hinge":
        return -fake_logits.mean()
    raise ValueError(f"unknown loss {kind!r}; expected one of {', '.join(LOSSES)}")


def matched_stage_loss(gen_logits: torch.Tensor, stages: torch.Tensor, real_logits: torch.Tensor,
                       real_stages: torch.Tensor) -> torch.Tensor:
    """The generator's stage term of ``--aux-head matched``: mean over its images of ``KL(t_s || p)``.

    ``p`` is D's stage posterior for a generated image asked to be stage ``s``; ``t_s`` the mean posterior D
    gives this batch's real images of stage ``s`` (no gradient through it). It is 0 when generated images
    are read as the real ones of their stage are. The plain term, ``CE(p, s)``, keeps rewarding an image
    read as its stage more surely than real ones are, which draws the stages further apart than the real
    ones (more atrophy for the severe stages, less for the mild); this one does not. A stage with no real
    image in the batch is scored against itself (one-hot), as the plain term would.
    """
    k = gen_logits.shape[1]
    real_post = F.softmax(real_logits.detach().float(), dim=1)
    member = F.one_hot(real_stages, k).to(real_post.dtype)  # [n_real, k]
    counts = member.sum(0)
    means = (member.T @ real_post) / counts.clamp(min=1).unsqueeze(1)
    targets = torch.where(counts.unsqueeze(1) > 0, means, torch.eye(k, device=means.device, dtype=means.dtype))[stages]
    return kl_to_targets(targets, gen_logits)


def kl_to_targets(targets: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Mean over the rows of ``KL(targets || softmax(logits))``; each target row sums to 1, no gradient through it."""
    targets = targets.detach().float()
    log_p = F.log_softmax(logits.float(), dim=1)
    return (targets * (targets.clamp_min(1e-12).log() - log_p)).sum(1).mean()


def r1_penalty(real_logits: torch.Tensor, real_inputs: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``|grad_x D(x)|^2`` at the real images (Mescheder et al. 2018).

    ``real_inputs`` must require grad and ``real_logits`` come from it; the graph is kept so the
    penalty itself can be backpropagated into D's weights. Weight it by ``gamma / 2``.
    """
    (grad,) = torch.autograd.grad(real_logits.sum(), real_inputs, create_graph=True)
    return grad.square().flatten(1).sum(1).mean()


def stage_loss(stage_logits: torch.Tensor, stages: torch.Tensor) -> torch.Tensor:
    """The AC-GAN auxiliary term: mean cross-entropy of D's stage classifier against ``stages``
    (the real images' stages, or the stages the generated images were asked for)."""
    return F.cross_entropy(stage_logits.float(), stages)
