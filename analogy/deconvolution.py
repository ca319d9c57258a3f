"""Deconvolution: recover level L-1 features whose forward pass reproduces a level-L target.

Minimises ‖CNN_{L-1}^{L}(R) − T‖² / ‖T‖² with L-BFGS. The optimised variable sits one level
down (R itself) or two levels down (R = CNN_{L-2}^{L-1}(X), as in the original); it is started
from the caller's guess (see AnalogyConfig.deconv_start).

The L-BFGS is our own, small one rather than torch.optim.LBFGS: its first step is a Polyak step
(the target is nearly reachable, so the loss itself tells the step length) instead of a tiny
gradient step, and a backtracking (Armijo) line search that is almost never needed replaces the
strong-Wolfe search, which costs about two passes of the sub-network per iteration. The relative
errors per level are in `AnalogyResult.levels` (and the benchmark's JSON).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

import torch

from .features import VGG19Features


@dataclass
class DeconvInfo:
    """How one deconvolution went: relative losses at the start and the end, and evaluations
    used."""

    initial_loss: float
    final_loss: float
    evaluations: int
    #: the optimised variable at its end (at level `level − layers_down`): where the next video
    #: frame's deconvolution starts (analogy.temporal)
    variable: Optional[torch.Tensor] = None


def deconvolve(
    vgg: VGG19Features,
    level: int,
    target: torch.Tensor,
    init: torch.Tensor,
    layers_down: int = 1,
    iterations: int = 20,
    history: int = 4,
    tolerance: float = 1e-4,
    gradient_tolerance: float = 0.0,
    bfloat16: bool = False,
    dot: Optional[Callable[[torch.Tensor, torch.Tensor], float]] = None,
) -> tuple[torch.Tensor, DeconvInfo]:
    """Features R at level `level − 1` with CNN(R) ≈ `target` (a 1×C×H×W map at `level`).

    `init` is the starting point at level `level − layers_down` (the image when that is 0).
    L-BFGS stops after `iterations`, when an iteration improves the loss by less than the fraction
    `tolerance`, or at the original's gradient test: ‖g‖ < `gradient_tolerance` · max(1, ‖x‖), g
    the gradient of ½‖CNN(x) − T‖² (the original's loss, whatever scale the optimiser sees).
    With `bfloat16`, the sub-network's convolutions run in bfloat16 (torch's autocast) while the
    variable, the loss and the L-BFGS stay in float32. Returns R (non-negative, as a relu output
    is) and a DeconvInfo. `dot(a, b)`, the device's dot product of two maps in an order that does
    not depend on the number of threads (`Kernels.dot`), serves L-BFGS; by default torch's.
    """
    lower = level - layers_down
    to_fused = vgg.sub_network(lower, level - 1) if layers_down == 2 else None
    upper = vgg.sub_network(level - 1, level)
    # The optimiser sees the mean squared error; DeconvInfo reports it relative to ‖T‖².
    relative = target.numel() / max(_dot(target, target), 1e-12)

    def features(x: torch.Tensor) -> torch.Tensor:
        return to_fused(x) if to_fused is not None else torch.relu(x)

    # In bfloat16, everything runs channels-last, oneDNN's fast layout for its convolutions and
    # pooling: the sub-network from bfloat16 (what its first convolution would cast to anyway),
    # and the variable and the L-BFGS vectors, which stay float32.
    layout = torch.channels_last if bfloat16 else torch.contiguous_format

    goal = target.contiguous(memory_format=layout)

    def loss_of(x: torch.Tensor) -> torch.Tensor:
        out = upper(features(x.to(torch.bfloat16) if bfloat16 else x))
        # bfloat16 − float32 is computed in float32
        return _total((out - goal).pow(2)) / target.numel()

    def evaluate(x: torch.Tensor) -> Tuple[float, torch.Tensor]:
        with torch.enable_grad(), torch.autocast(x.device.type, dtype=torch.bfloat16,
                                                 enabled=bfloat16):
            x = x.detach().requires_grad_(True)
            loss = loss_of(x)
            (grad,) = torch.autograd.grad(loss, x)
        return float(loss.detach()), grad.contiguous(memory_format=layout)

    # The L-BFGS vectors live in a few buffers reused across iterations: a fresh allocation of a
    # large map costs more (page faults) than the arithmetic on it.
    free: List[torch.Tensor] = []

    def take() -> torch.Tensor:
        return free.pop() if free else torch.empty_like(x)

    def give(*tensors: torch.Tensor) -> None:
        free.extend(tensors)

    x = init.detach().clone(memory_format=layout)
    direction = torch.empty_like(x)
    if dot is None:
        scratch = torch.empty_like(x)

        def dot(a: torch.Tensor, b: torch.Tensor) -> float:
            return _dot(a, b, scratch)
    # The optimiser's loss is the mean squared error; the original's is half the sum of squares.
    gradient_scale = target.numel() / 2.0

    def converged() -> bool:
        if gradient_tolerance <= 0:
            return False
        gradient = gradient_scale * math.sqrt(dot(grad, grad))
        return gradient < gradient_tolerance * max(1.0, math.sqrt(dot(x, x)))

    loss, grad = evaluate(x)
    evaluations = 1
    losses = [loss]
    pairs: List[Tuple[torch.Tensor, torch.Tensor, float]] = []  # (s, y, 1 / y·s), oldest first
    scale = 1.0  # s·y / y·y of the newest pair: the initial inverse Hessian
    solved = _SOLVED_BFLOAT16 if bfloat16 else _SOLVED
    with torch.no_grad():
        for _ in range(iterations):
            if loss * relative < solved:
                break  # the start already reproduces the target (e.g. an image with itself)
            if converged():
                break
            _lbfgs_direction(grad, pairs, scale, direction, dot)
            slope = dot(grad, direction)
            if not slope < 0:  # not a descent direction (lost curvature): restart from the gradient
                for old_s, old_y, _ in pairs:
                    give(old_s, old_y)
                pairs.clear()
                _lbfgs_direction(grad, pairs, scale, direction, dot)
                slope = dot(grad, direction)
            if not pairs:
                # No curvature yet: a Polyak step, the step that would reach zero loss if the loss
                # were linear; the backtracking below shortens it as needed.
                direction.mul_(loss / max(-slope, 1e-30))
                slope = -loss
            step = 1.0
            candidate = take()
            for _ in range(_BACKTRACKS + 1):
                torch.mul(direction, step, out=candidate).add_(x)  # x + step · direction
                new_loss, new_grad = evaluate(candidate)
                evaluations += 1
                if new_loss <= loss + _ARMIJO * step * slope:
                    break
                # minimiser of the quadratic through loss, slope and new_loss, kept within
                # [0.1, 0.5]
                curvature = new_loss - loss - step * slope
                step *= (min(0.5, max(0.1, -slope * step / (2.0 * curvature))) if curvature > 0
                         else 0.5)
            else:
                break  # no decrease along this direction: x is as good as it gets here
            s = candidate.sub_(x)
            y = torch.sub(new_grad, grad, out=take())
            ys = dot(y, s)
            yy = dot(y, y)
            x.add_(s)
            if ys > 1e-12 * yy:
                pairs.append((s, y, 1.0 / ys))
                while len(pairs) > history:
                    old_s, old_y, _ = pairs.pop(0)
                    give(old_s, old_y)
                scale = ys / yy
            else:
                give(s, y)
            loss, grad = new_loss, new_grad
            losses.append(loss)
            if losses[-2] - losses[-1] < tolerance * losses[-2]:
                break
        result = features(x).contiguous()
    return result, DeconvInfo(losses[0] * relative, loss * relative, evaluations, x)


def _total(x: torch.Tensor) -> torch.Tensor:
    """Σ x (an N×C×H×W map) in an order that does not depend on the number of threads: torch
    reduces each row of memory in one thread (a channel's map; in channels-last memory, an
    image row's pixels), then the row sums serially. (A plain sum or dot splits the work by
    thread, so its rounding, and with it the whole optimisation path, would change with the
    thread count.)"""
    return memory_rows(x).sum(dim=1).sum()


def memory_rows(x: torch.Tensor) -> torch.Tensor:
    """An N×C×H×W map as the rows of its memory: a channel's map each, or in channels-last memory
    an image row's pixels each (a view)."""
    if x.is_contiguous():
        return x.reshape(x.shape[0] * x.shape[1], -1)
    return x.permute(0, 2, 3, 1).reshape(x.shape[0] * x.shape[2], -1)


def _dot(a: torch.Tensor, b: torch.Tensor, scratch: Optional[torch.Tensor] = None) -> float:
    """a · b, through `scratch` (a tensor of their shape) when given rather than a new product."""
    return float(_total(torch.mul(a, b, out=scratch) if scratch is not None else a * b))


#: Relative squared error below which the target counts as reproduced: in float32, and with the
#: sub-network in bfloat16, whose rounding alone leaves about 1e-5.
_SOLVED = 1e-6
_SOLVED_BFLOAT16 = 1e-4
#: Sufficient-decrease constant of the backtracking line search, and how often it may
#: shorten a step.
_ARMIJO = 1e-4
_BACKTRACKS = 3


def _lbfgs_direction(grad: torch.Tensor, pairs: List[Tuple[torch.Tensor, torch.Tensor, float]],
                     scale: float, q: torch.Tensor,
                     dot: Callable[[torch.Tensor, torch.Tensor], float]) -> torch.Tensor:
    """q = −H·grad by L-BFGS's two-loop recursion over the stored (s, y, 1/y·s) pairs (Nocedal &
    Wright, Algorithm 7.4), the initial inverse Hessian being `scale` (s·y / y·y of the newest
    pair). `q` is a buffer of grad's shape; `dot` the dot product."""
    torch.neg(grad, out=q)
    alphas = []
    for s, y, rho in reversed(pairs):
        alpha = rho * dot(s, q)
        q.sub_(y, alpha=alpha)
        alphas.append(alpha)
    if pairs:
        q.mul_(scale)
    for (s, y, rho), alpha in zip(pairs, reversed(alphas)):
        beta = rho * dot(y, q)
        q.add_(s, alpha=alpha - beta)
    return q
