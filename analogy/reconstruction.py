"""Reconstruction of the output images by patch voting at the inputs' resolution."""
from __future__ import annotations

from typing import Tuple

import numpy as np
import torch

from .nnf import resample_nnf, vote


def output_nnf(nnf: torch.Tensor, working_b: Tuple[int, int], out_a: Tuple[int, int], out_b: Tuple[int, int]) -> torch.Tensor:
    """Take the finest working NNF (A→B′ at working sizes) to the output sizes of A and B′."""
    return resample_nnf(nnf, working_b, out_a, out_b)


def reconstruct(source: np.ndarray, nnf: torch.Tensor, patch_size: int = 3) -> np.ndarray:
    """The image whose every patch is voted from `source` (H_B×W_B×3 uint8) through `nnf`."""
    src = torch.from_numpy(np.array(source, dtype=np.float32)).permute(2, 0, 1).to(nnf.device)
    out = vote(src, nnf, patch_size)
    return out.round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
