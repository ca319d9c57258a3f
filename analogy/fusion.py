"""Fusion of structure and appearance features with the response mask of Liao et al."""
from __future__ import annotations

import torch


def response_mask(features: torch.Tensor, kappa: float = 300.0, tau: float = 0.05) -> torch.Tensor:
    """M(x) = sigmoid(κ(‖F(x)‖² − τ)), ‖F(x)‖² normalised to [0, 1] over the map (1×1×H×W).

    Large where the structure image has strong responses (edges, detail), so those keep A's
    features; flat regions take the appearance image's.
    """
    energy = features.pow(2).sum(dim=1, keepdim=True)
    lo, hi = energy.amin(), energy.amax()
    normalised = (energy - lo) / (hi - lo).clamp_min(1e-12)
    return torch.sigmoid(kappa * (normalised - tau))


def fuse(structure: torch.Tensor, appearance: torch.Tensor, alpha: float,
         mask: torch.Tensor) -> torch.Tensor:
    """F = structure ∘ W + appearance ∘ (1 − W), with W = α·M."""
    weight = alpha * mask
    return structure * weight + appearance * (1.0 - weight)
