"""The output images: patch votes made into 8-bit images."""
from __future__ import annotations

import numpy as np
import torch

from .kernels import Kernels


def reconstruct(kernels: Kernels, source: np.ndarray, nnf: torch.Tensor,
                patch_size: int = 3) -> np.ndarray:
    """The image whose every patch is voted from `source` (H_B×W_B×3 uint8) through `nnf`, an NNF
    at the output size: how outputs were made before the synthesis (`--output-size input` then
    magnified the working result), kept as the baseline the tests compare with."""
    src = torch.from_numpy(np.array(source, dtype=np.float32)).permute(2, 0, 1).to(nnf.device)
    return to_image(kernels.vote(src, nnf, patch_size))


def to_image(voted: torch.Tensor) -> np.ndarray:
    """A voted 3×H×W float image (0–255) as H×W×3 uint8, rounded half to even and clipped."""
    return voted.round().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
