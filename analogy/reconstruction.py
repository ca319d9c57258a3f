"""Reconstruction of the output images by patch voting at the inputs' resolution."""
from __future__ import annotations

import numpy as np
import torch

from .kernels import Kernels


def reconstruct(kernels: Kernels, source: np.ndarray, nnf: torch.Tensor,
                patch_size: int = 3) -> np.ndarray:
    """The image whose every patch is voted from `source` (H_B×W_B×3 uint8) through `nnf`, an NNF
    at the output sizes (the finest working NNF resampled)."""
    src = torch.from_numpy(np.array(source, dtype=np.float32)).permute(2, 0, 1).to(nnf.device)
    out = kernels.vote(src, nnf, patch_size)
    return out.round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
