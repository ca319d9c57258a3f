"""Contact sheets (A, B′, A′, B side by side) and NNF gridness for several pairs, to judge results by eye.

    python benchmarks/sheets.py -o sheets/                       # every named pair, default settings
    python benchmarks/sheets.py -o sheets/ --pairs painting face --set blend_level=3

Pairs are read from ../shared/images (the development images) or examples/. For each pair it writes
OUT/<pair>.png and prints the working sizes, time, gridness and discontinuity rate of both NNFs
(see analogy.nnf.gridness).
"""
from __future__ import annotations

import argparse
import ast
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import analogy  # noqa: E402
from analogy.nnf import gridness  # noqa: E402

from bench import PAIRS as BENCH_PAIRS, load_pair  # noqa: E402  (benchmarks/ is on the path)

PAIRS: Dict[str, tuple] = {
    **BENCH_PAIRS,  # painting, face, sketch
    "painting-reverse": ("starry_night.jpg", "skyline-sf-dusk-back.jpeg"),
    "photo-sketch": ("carcassonne_photo.png", "carcassonne_sketch.png"),
    "cat-painting": ("chelsea.png", "starry_night.jpg"),
    "examples": (str(ROOT / "examples" / "skyline.jpg"), str(ROOT / "examples" / "starry_night.jpg")),
    "examples-face": (str(ROOT / "examples" / "astronaut.jpg"), str(ROOT / "examples" / "grace_hopper.jpg")),
}


def sheet(images: List[np.ndarray], labels: List[str], height: int = 256) -> Image.Image:
    """The images side by side at a common height, each with its label."""
    tiles = []
    for image, label in zip(images, labels):
        tile = Image.fromarray(image)
        tile = tile.resize((max(1, round(tile.width * height / tile.height)), height), Image.Resampling.LANCZOS)
        ImageDraw.Draw(tile).text((4, 4), label, fill=(255, 255, 0))
        tiles.append(tile)
    out = Image.new("RGB", (sum(t.width for t in tiles) + 4 * (len(tiles) - 1), height), (255, 255, 255))
    x = 0
    for tile in tiles:
        out.paste(tile, (x, 0))
        x += tile.width + 4
    return out


def parse_set(items: Optional[List[str]]) -> Dict[str, object]:
    options = {}
    for item in items or []:
        key, _, value = item.partition("=")
        try:
            options[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            options[key] = value
    return options


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-o", "--out", type=Path, required=True, help="folder for the sheets")
    parser.add_argument("--pairs", nargs="+", default=list(PAIRS), help=f"named pairs: {', '.join(PAIRS)}")
    parser.add_argument("--set", nargs="*", metavar="FIELD=VALUE", help="AnalogyConfig fields, e.g. ratio=1")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    runner = analogy.Analogy(analogy.AnalogyConfig(**parse_set(args.set)))
    print(f"{'pair':18s} {'working A':>10s} {'working B′':>10s} {'time':>6s}  gridness a→b  b→a   rate a→b  b→a")
    for name in args.pairs:
        a, b = load_pair(*PAIRS[name])
        t0 = time.perf_counter()
        result = runner(a, b)
        elapsed = time.perf_counter() - t0
        g_ab, r_ab = gridness(result.working_nnf_ab)
        g_ba, r_ba = gridness(result.working_nnf_ba)
        (ha, wa), (hb, wb) = result.working_size_a, result.working_size_b
        print(f"{name:18s} {f'{wa}×{ha}':>10s} {f'{wb}×{hb}':>10s} {elapsed:5.1f}s  "
              f"{g_ab:12.2f} {g_ba:5.2f}   {r_ab:8.3f} {r_ba:5.3f}", flush=True)
        sheet([a, b, result.a_prime, result.b], ["A", "B'", "A'", "B"]).save(args.out / f"{name}.png")


if __name__ == "__main__":
    main()
