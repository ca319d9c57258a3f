"""A sheet of 100 % crops: for each row, A and the same crop of two results' A′ side by side.

    python benchmarks/crops.py -o crops.png --before before/ --after after/ \\
        --row "Skyline → The Starry Night:skyline.jpg:sky:60,100" \\
        --row "Astronaut ↔ Grace Hopper:astronaut.png:astro:150,40"

Each `--row` is LABEL:A:NAME:X,Y: the input A (a path, or a name in ../shared/images), the
folder NAME under --before and --after holding `A_prime.png` (as `analogy A B -o DIR` writes
it) and the crop's top-left corner. Crops are --width × --height pixels at the images' own
resolution: nothing is resized, so the sheet shows what a viewer at 100 % sees.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import List, Optional

from PIL import Image, ImageDraw, ImageFont

SHARED = Path(__file__).resolve().parents[2] / "shared" / "images"
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


def _font(size: int = 12):
    """DejaVu Sans where it is installed (it draws →, ↔ and ′), else Pillow's default."""
    return ImageFont.truetype(str(FONT), size) if FONT.exists() else ImageFont.load_default()


def crop_sheet(rows: List[tuple], before: Path, after: Path, width: int, height: int,
               titles=("A (input)", "before", "after")) -> Image.Image:
    """The sheet: a title line, then per row its label and the crops of A, before and after."""
    pad, label, head = 6, 18, 22
    font = _font()
    sheet = Image.new("RGB", (3 * width + 4 * pad, head + len(rows) * (label + height + pad)),
                      "white")
    draw = ImageDraw.Draw(sheet)
    for column, title in enumerate(titles):
        draw.text((pad + column * (width + pad), 4), title, fill="black", font=font)
    for index, (text, a, name, (x, y)) in enumerate(rows):
        top = head + index * (label + height + pad)
        draw.text((pad, top + 3), text, fill="black", font=font)
        for column, path in enumerate((a, before / name / "A_prime.png",
                                       after / name / "A_prime.png")):
            image = Image.open(path).convert("RGB").crop((x, y, x + width, y + height))
            sheet.paste(image, (pad + column * (width + pad), top + label))
    return sheet


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-o", "--out", type=Path, required=True)
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--after", type=Path, required=True)
    parser.add_argument("--row", action="append", required=True, metavar="LABEL:A:NAME:X,Y")
    parser.add_argument("--width", type=int, default=280)
    parser.add_argument("--height", type=int, default=210)
    parser.add_argument("--titles", nargs=3, default=("A (input)", "before", "after"))
    args = parser.parse_args(argv)
    rows = []
    for spec in args.row:
        text, a, name, corner = spec.rsplit(":", 3)
        path = Path(a) if Path(a).exists() else SHARED / a
        x, y = (int(v) for v in corner.split(","))
        rows.append((text, path, name, (x, y)))
    sheet = crop_sheet(rows, args.before, args.after, args.width, args.height, args.titles)
    sheet.save(args.out, **({"quality": 88} if args.out.suffix.lower() in (".jpg", ".jpeg")
                            else {}))
    print(f"wrote {args.out} ({sheet.width}×{sheet.height})")


if __name__ == "__main__":
    main()
