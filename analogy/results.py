"""Writing a result's images, NNFs and flow pictures, all or nothing."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, List, Optional, Union

import numpy as np
import torch

from .image_io import check_output_folder, npy_writer, png_writer, write_files_atomically
from .nnf import flow_to_color
from .pipeline import AnalogyResult

#: Output file names inside the output folder.
A_PRIME, B, NNF_AB, NNF_BA, FLOW_AB, FLOW_BA = (
    "A_prime.png", "B.png", "nnf_ab.npy", "nnf_ba.npy", "flow_ab.png", "flow_ba.png",
)
CONFIDENCE_AB, CONFIDENCE_BA = "confidence_ab.png", "confidence_ba.png"
#: What made a batch pair's outputs (see analogy.pairs), written with them.
RECORD = "analogy.json"


def output_names(save_nnf: bool = False, save_flow: bool = False, save_confidence: bool = False) -> List[str]:
    """The file names save_result writes with these options."""
    names = [A_PRIME, B]
    names += [NNF_AB, NNF_BA] if save_nnf else []
    names += [FLOW_AB, FLOW_BA] if save_flow else []
    names += [CONFIDENCE_AB, CONFIDENCE_BA] if save_confidence else []
    return names


def save_result(result: AnalogyResult, out_dir: Union[str, os.PathLike], save_nnf: bool = False,
                save_flow: bool = False, save_confidence: bool = False,
                record: Optional[dict] = None) -> Dict[str, Path]:
    """Write A_prime.png and B.png (and optionally the NNFs as .npy, flow pictures and the
    consistency confidence of A's and B′'s pixels as 8-bit grey PNGs, white = 1, and a `record` as
    analogy.json) into `out_dir`, created if needed; return the paths written. All the files are
    replaced, or none is."""
    folder = check_output_folder(out_dir, create=True)
    files = {A_PRIME: png_writer(result.a_prime), B: png_writer(result.b)}
    if save_nnf:
        files[NNF_AB] = npy_writer(result.nnf_ab)
        files[NNF_BA] = npy_writer(result.nnf_ba)
    if save_flow:
        shape_a, shape_b = result.nnf_ab.shape[:2], result.nnf_ba.shape[:2]
        files[FLOW_AB] = png_writer(flow_to_color(torch.from_numpy(result.nnf_ab), shape_b))
        files[FLOW_BA] = png_writer(flow_to_color(torch.from_numpy(result.nnf_ba), shape_a))
    if save_confidence:
        for name, side in ((CONFIDENCE_AB, "ab"), (CONFIDENCE_BA, "ba")):
            files[name] = png_writer(np.rint(result.confidence(side) * 255.0).astype(np.uint8))
    if record is not None:  # last: its presence says the others are complete
        files[RECORD] = lambda path: path.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n",
                                                     encoding="utf-8")
    paths = {name: folder / name for name in files}
    write_files_atomically({paths[name]: writer for name, writer in files.items()})
    return paths
