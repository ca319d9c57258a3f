"""Deconvolution: recover level L-1 features whose forward pass reproduces a level-L target.

Minimises ‖CNN_{L-1}^{L}(R) − T‖² / ‖T‖² with L-BFGS. The optimised variable sits one level
down (R itself) or two levels down (R = CNN_{L-2}^{L-1}(X), as in the original); it is started
from the caller's guess, the lower-level features voted through the upsampled NNF.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .features import VGG19Features


@dataclass
class DeconvInfo:
    """How one deconvolution went: relative losses at the start and the end, and evaluations used."""

    initial_loss: float
    final_loss: float
    evaluations: int


def deconvolve(
    vgg: VGG19Features,
    level: int,
    target: torch.Tensor,
    init: torch.Tensor,
    layers_down: int = 1,
    iterations: int = 20,
    history: int = 4,
    tolerance: float = 1e-4,
) -> tuple[torch.Tensor, DeconvInfo]:
    """Features R at level `level − 1` with CNN(R) ≈ `target` (a 1×C×H×W map at `level`).

    `init` is the starting point at level `level − layers_down` (the image when that is 0).
    Returns R (non-negative, as a relu output is) and a DeconvInfo.
    """
    lower = level - layers_down
    to_fused = vgg.sub_network(lower, level - 1) if layers_down == 2 else None
    upper = vgg.sub_network(level - 1, level)
    # The optimiser sees the mean squared error; DeconvInfo reports it relative to ‖T‖².
    relative = target.numel() / float(target.pow(2).sum().clamp_min(1e-12))

    def features(x: torch.Tensor) -> torch.Tensor:
        return to_fused(x) if to_fused is not None else torch.relu(x)

    def loss_of(x: torch.Tensor) -> torch.Tensor:
        return (upper(features(x)) - target).pow(2).mean()

    x = init.detach().clone().requires_grad_(True)
    evaluations = 0
    # No line search: one evaluation per iteration instead of about two, and from the voted start
    # the plain L-BFGS steps reach the same loss (measured on the photo→painting pair at 224 px).
    # L-BFGS's own stopping tests are in absolute units; the stop here is on relative improvement.
    optimizer = torch.optim.LBFGS(
        [x], lr=1.0, max_iter=1, history_size=history,
        tolerance_grad=0.0, tolerance_change=0.0, line_search_fn=None,
    )
    losses = []

    def closure() -> torch.Tensor:
        nonlocal evaluations
        evaluations += 1
        optimizer.zero_grad(set_to_none=True)
        loss = loss_of(x)
        if losses and not float(loss.detach()) <= losses[-1]:
            raise _LossRose  # before L-BFGS moves on from this worse point
        loss.backward()
        return loss

    with torch.enable_grad():
        for _ in range(iterations):
            try:
                losses.append(float(optimizer.step(closure).detach()))  # the loss before this step
            except _LossRose:
                state = optimizer.state[optimizer._params[0]]
                with torch.no_grad():  # undo the step that raised the loss
                    x.sub_(state["d"].view_as(x), alpha=state["t"])
                break
            # the first L-BFGS step is a short gradient step, so judge progress from the third on
            if len(losses) > 2 and losses[-2] - losses[-1] < tolerance * losses[-2]:
                break
    with torch.no_grad():
        result = features(x).detach()
        final = float((upper(result) - target).pow(2).mean())
    initial = losses[0] if losses else final
    return result, DeconvInfo(initial * relative, final * relative, evaluations)


class _LossRose(Exception):
    """Raised inside the L-BFGS closure when a step made the loss worse."""
