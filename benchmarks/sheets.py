"""Contact sheets (A, B′, A′, B side by side), quality scores and NNF gridness for many pairs.

    python benchmarks/sheets.py -o sheets/  # the 13 pairs of ../shared/images/pairs.csv
    python benchmarks/sheets.py -o sheets/ --json after.json --compare before.json
    python benchmarks/sheets.py -o sheets/ --pairs painting face --set deconv_iterations=25

Pairs come from a manifest (`--manifest`, by default ../shared/images/pairs.csv: the columns A, B′,
output, and optionally kind and blend_level, the level the original recommends for the pair, which
is used unless --set gives one) or by name (`--pairs`). For each pair it writes OUT/<pair>.png and
prints the time, the quality scores (analogy.metrics: style = CX(A′, B′) and CX(B, A), higher is
better; structure of A′ against A and of B against B′, lower keeps more layout), the gridness of
both NNFs and the process's peak RSS while the pair ran. `--json` keeps the figures; `--compare`
prints them against an earlier run's JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import analogy  # noqa: E402
from analogy.metrics import quality_scores  # noqa: E402
from analogy.nnf import gridness  # noqa: E402
from bench import (  # noqa: E402
    MANIFEST,
    PAIRS as BENCH_PAIRS,
    ManifestPair,
    PeakRSS,
    load_pair,
    parse_set,
    read_manifest,
    settle,
)

PAIRS: Dict[str, tuple] = {
    **BENCH_PAIRS,  # painting, face, sketch
    "painting-reverse": ("starry_night.jpg", "skyline-sf-dusk-back.jpeg"),
    "photo-sketch": ("carcassonne_photo.png", "carcassonne_sketch.png"),
    "cat-painting": ("chelsea.png", "starry_night.jpg"),
    "examples": (str(ROOT / "examples" / "skyline.jpg"),
                 str(ROOT / "examples" / "starry_night.jpg")),
    "examples-face": (str(ROOT / "examples" / "astronaut.jpg"),
                      str(ROOT / "examples" / "grace_hopper.jpg")),
}


def sheet(images: List[np.ndarray], labels: List[str], height: int = 256) -> Image.Image:
    """The images side by side at a common height, each with its label."""
    tiles = []
    for image, label in zip(images, labels):
        tile = Image.fromarray(image)
        tile = tile.resize((max(1, round(tile.width * height / tile.height)), height),
                           Image.Resampling.LANCZOS)
        ImageDraw.Draw(tile).text((4, 4), label, fill=(255, 255, 0))
        tiles.append(tile)
    out = Image.new("RGB", (sum(t.width for t in tiles) + 4 * (len(tiles) - 1), height),
                    (255, 255, 255))
    x = 0
    for tile in tiles:
        out.paste(tile, (x, 0))
        x += tile.width + 4
    return out


SCORES = ("style_a_prime", "style_b", "structure_a_prime", "structure_b")


def compare(before: Dict[str, dict], after: Dict[str, dict]) -> None:
    """The per-pair scores and times, before → after, with their means, as a Markdown table."""
    names = [n for n in after if n in before]
    print("\n| pair | kind | style A′ | style B | structure A′ | structure B | time (s) |")
    print("|---|---|---|---|---|---|---|")
    for name in names:
        b, a = before[name], after[name]
        cells = ([f"{b[k]:.3f} → {a[k]:.3f}" for k in SCORES]
                 + [f"{b['seconds']:.0f} → {a['seconds']:.0f}"])
        print(f"| {name} | {a.get('kind', '')} | " + " | ".join(cells) + " |")
    means = [f"{np.mean([before[n][k] for n in names]):.3f} → "
             f"{np.mean([after[n][k] for n in names]):.3f}"
             for k in SCORES] + [f"{np.mean([before[n]['seconds'] for n in names]):.0f} → "
                                 f"{np.mean([after[n]['seconds'] for n in names]):.0f}"]
    print(f"| mean of {len(names)} | | " + " | ".join(means) + " |")


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-o", "--out", type=Path, required=True, help="folder for the sheets")
    parser.add_argument("--manifest", type=Path, default=MANIFEST,
                        help="pairs from this manifest [default: %(default)s]")
    parser.add_argument("--pairs", nargs="+",
                        help=f"named pairs instead of the manifest's: {', '.join(PAIRS)}; "
                             "or names of the manifest's rows (its output column)")
    parser.add_argument("--set", nargs="*", metavar="FIELD=VALUE",
                        help="AnalogyConfig fields, e.g. ratio=1")
    parser.add_argument("--preview", action="store_true",
                        help="the --preview setting (before --set)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--compare", type=Path,
                        help="an earlier --json to print the scores against")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    options = parse_set(args.set)
    if args.pairs and all(name in PAIRS for name in args.pairs):
        pairs = [ManifestPair(name, *PAIRS[name]) for name in args.pairs]
    else:
        pairs = [p for p in read_manifest(args.manifest) if not args.pairs or p.name in args.pairs]
    config = analogy.AnalogyConfig()
    runner = analogy.Analogy(settle(config, args.preview, options))
    print(f"{'pair':24s} {'working A':>9s} {'working B′':>9s} {'time':>6s}  style A′  style B"
          "  struct A′ struct B  gridness a→b b→a  peak RSS")
    figures: Dict[str, dict] = {}
    for pair in pairs:
        a, b = load_pair(pair.a, pair.b_prime)
        level = ({} if pair.blend_level is None or "blend_level" in options
                 else {"blend_level": pair.blend_level})
        t0 = time.perf_counter()
        with PeakRSS() as rss:
            result = runner(a, b, **level)
        elapsed = time.perf_counter() - t0
        scores = quality_scores(result.a_prime, result.b, a, b)
        g_ab, _ = gridness(result.working_nnf_ab)
        g_ba, _ = gridness(result.working_nnf_ba)
        (ha, wa), (hb, wb) = result.working_size_a, result.working_size_b
        print(f"{pair.name:24s} {f'{wa}×{ha}':>9s} {f'{wb}×{hb}':>9s} {elapsed:5.1f}s  "
              f"{scores.style_a_prime:8.3f} {scores.style_b:8.3f} {scores.structure_a_prime:9.3f} "
              f"{scores.structure_b:8.3f}  {g_ab:12.2f} {g_ba:4.2f}  {rss.peak / 2**30:5.2f} GB",
              flush=True)
        figures[pair.name] = {"kind": pair.kind, "seconds": elapsed, "gridness_ab": g_ab,
                              "gridness_ba": g_ba, "peak_rss_mb": rss.peak / 2**20,
                              "timings": result.timings, **scores.as_dict()}
        sheet([a, b, result.a_prime, result.b],
              ["A", "B'", "A'", "B"]).save(args.out / f"{pair.name}.png")
    means = {k: float(np.mean([f[k] for f in figures.values()])) for k in SCORES + ("seconds",)}
    print(f"{'mean':24s} {'':9s} {'':9s} {means['seconds']:5.1f}s  {means['style_a_prime']:8.3f} "
          f"{means['style_b']:8.3f} {means['structure_a_prime']:9.3f} {means['structure_b']:8.3f}")
    if args.json:
        args.json.write_text(json.dumps({"preview": args.preview,
                                         "options": {k: str(v) for k, v in options.items()},
                                         "pairs": figures},
                                        indent=2))
    if args.compare:
        compare(json.loads(args.compare.read_text())["pairs"], figures)


if __name__ == "__main__":
    main()
