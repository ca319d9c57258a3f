"""Deconvolution: recover level L-1 features whose forward pass reproduces a level-L target.

Minimises ‖CNN_{L-1}^{L}(R) − T‖² / ‖T‖² with L-BFGS. The optimised variable sits one level
down (R itself) or two levels down (R = CNN_{L-2}^{L-1}(X), as in the original); it is started
from the caller's guess (the pipeline passes the structure image's own map, as the original does).

The L-BFGS is our own, small one rather than torch.optim.LBFGS: its first step is a Polyak step
(the target is nearly reachable, so the loss itself tells the step length) instead of a tiny
gradient step, and a backtracking (Armijo) line search that is almost never needed replaces the
strong-Wolfe search, which costs about two passes of the sub-network per iteration. The relative
errors per level are in `AnalogyResult.levels` (and the benchmark's JSON).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

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
    relative = target.numel() / max(_dot(target, target), 1e-12)

    def features(x: torch.Tensor) -> torch.Tensor:
        return to_fused(x) if to_fused is not None else torch.relu(x)

    def loss_of(x: torch.Tensor) -> torch.Tensor:
        return _total((upper(features(x)) - target).pow(2)) / target.numel()

    def evaluate(x: torch.Tensor) -> Tuple[float, torch.Tensor]:
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            loss = loss_of(x)
            (grad,) = torch.autograd.grad(loss, x)
        return float(loss.detach()), grad

    x = init.detach().clone()
    loss, grad = evaluate(x)
    evaluations = 1
    losses = [loss]
    pairs: List[Tuple[torch.Tensor, torch.Tensor, float]] = []  # (s, y, 1 / y·s), oldest first
    scale = 1.0  # s·y / y·y of the newest pair: the initial inverse Hessian
    with torch.no_grad():
        for _ in range(iterations):
            if loss * relative < _SOLVED:
                break  # the start already reproduces the target (e.g. an image with itself)
            direction = _lbfgs_direction(grad, pairs, scale)
            slope = _dot(grad, direction)
            if not slope < 0:  # not a descent direction (lost curvature): restart from the gradient
                pairs.clear()
                direction = _lbfgs_direction(grad, pairs, scale)
                slope = _dot(grad, direction)
            if not pairs:
                # No curvature yet: a Polyak step, the step that would reach zero loss if the loss
                # were linear; the backtracking below shortens it as needed.
                direction.mul_(loss / max(-slope, 1e-30))
                slope = -loss
            step = 1.0
            for _ in range(_BACKTRACKS + 1):
                candidate = x + step * direction
                new_loss, new_grad = evaluate(candidate)
                evaluations += 1
                if new_loss <= loss + _ARMIJO * step * slope:
                    break
                # minimiser of the quadratic through loss, slope and new_loss, kept within [0.1, 0.5]
                curvature = new_loss - loss - step * slope
                step *= min(0.5, max(0.1, -slope * step / (2.0 * curvature))) if curvature > 0 else 0.5
            else:
                break  # no decrease along this direction: x is as good as it gets here
            s = candidate.sub_(x)
            y = new_grad - grad
            ys = _dot(y, s)
            yy = _dot(y, y)
            if ys > 1e-12 * yy:
                pairs.append((s, y, 1.0 / ys))
                del pairs[:-history]
                scale = ys / yy
            x.add_(s)
            loss, grad = new_loss, new_grad
            losses.append(loss)
            if losses[-2] - losses[-1] < tolerance * losses[-2]:
                break
        result = features(x)
    return result, DeconvInfo(losses[0] * relative, loss * relative, evaluations)


def _total(x: torch.Tensor) -> torch.Tensor:
    """Σ x (a 1×C×H×W map) in an order that does not depend on the number of threads: torch
    reduces each channel's row in one thread, then the C row sums serially. (A plain sum or
    dot splits the work by thread, so its rounding, and with it the whole optimisation path,
    would change with the thread count.)"""
    return x.reshape(x.shape[0] * x.shape[1], -1).sum(dim=1).sum()


def _dot(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(_total(a * b))


#: Relative squared error below which the target counts as reproduced.
_SOLVED = 1e-6
#: Sufficient-decrease constant of the backtracking line search, and how often it may shorten a step.
_ARMIJO = 1e-4
_BACKTRACKS = 3


def _lbfgs_direction(grad: torch.Tensor, pairs: List[Tuple[torch.Tensor, torch.Tensor, float]],
                     scale: float) -> torch.Tensor:
    """−H·grad by L-BFGS's two-loop recursion over the stored (s, y, 1/y·s) pairs (Nocedal & Wright,
    Algorithm 7.4), the initial inverse Hessian being `scale` (s·y / y·y of the newest pair)."""
    q = grad.neg()
    alphas = []
    for s, y, rho in reversed(pairs):
        alpha = rho * _dot(s, q)
        q.sub_(y, alpha=alpha)
        alphas.append(alpha)
    if pairs:
        q.mul_(scale)
    for (s, y, rho), alpha in zip(pairs, reversed(alphas)):
        beta = rho * _dot(y, q)
        q.add_(s, alpha=alpha - beta)
    return q
