"""Writing a result's images, NNFs and flow pictures, all or nothing."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Union

import numpy as np
import torch

from .image_io import check_output_folder, npy_bytes, png_bytes, write_files_atomically
from .nnf import flow_to_color
from .pipeline import AnalogyResult

#: Output file names inside the output folder.
A_PRIME, B, NNF_AB, NNF_BA, FLOW_AB, FLOW_BA = (
    "A_prime.png", "B.png", "nnf_ab.npy", "nnf_ba.npy", "flow_ab.png", "flow_ba.png",
)
CONFIDENCE_AB, CONFIDENCE_BA = "confidence_ab.png", "confidence_ba.png"


def output_names(save_nnf: bool = False, save_flow: bool = False,
                 save_confidence: bool = False) -> List[str]:
    """The file names save_result writes with these options."""
    names = [A_PRIME, B]
    names += [NNF_AB, NNF_BA] if save_nnf else []
    names += [FLOW_AB, FLOW_BA] if save_flow else []
    names += [CONFIDENCE_AB, CONFIDENCE_BA] if save_confidence else []
    return names


def result_files(result: AnalogyResult, save_nnf: bool = False, save_flow: bool = False,
                 save_confidence: bool = False) -> Dict[str, bytes]:
    """The output files of a result, encoded, by name: A_prime.png and B.png, optionally the NNFs
    as .npy, flow pictures, and the consistency confidence of A's and B′'s pixels as 8-bit grey
    PNGs (white = 1)."""
    files = {A_PRIME: png_bytes(result.a_prime), B: png_bytes(result.b)}
    if save_nnf:
        files[NNF_AB] = npy_bytes(result.nnf_ab)
        files[NNF_BA] = npy_bytes(result.nnf_ba)
    if save_flow:
        shape_a, shape_b = result.nnf_ab.shape[:2], result.nnf_ba.shape[:2]
        files[FLOW_AB] = png_bytes(flow_to_color(torch.from_numpy(result.nnf_ab), shape_b))
        files[FLOW_BA] = png_bytes(flow_to_color(torch.from_numpy(result.nnf_ba), shape_a))
    if save_confidence:
        for name, side in ((CONFIDENCE_AB, "ab"), (CONFIDENCE_BA, "ba")):
            files[name] = png_bytes(np.rint(result.confidence(side) * 255.0).astype(np.uint8))
    return files


def save_result(result: AnalogyResult, out_dir: Union[str, os.PathLike], save_nnf: bool = False,
                save_flow: bool = False, save_confidence: bool = False) -> Dict[str, Path]:
    """Write the result's files (see result_files) into `out_dir`, created if needed; return
    the paths written. All the files are replaced, or none is."""
    folder = check_output_folder(out_dir, create=True)
    files = {folder / name: data
             for name, data in result_files(result, save_nnf, save_flow, save_confidence).items()}
    write_files_atomically(files)
    return {path.name: path for path in files}
