"""The `analogy` command: Deep Image Analogy of a structure image A and an appearance image B′."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import click

import analogy
from analogy.config import BLEND_PRESETS
from analogy.pipeline import progress_steps
from analogy.results import A_PRIME, B


def _fail(message: str) -> "click.ClickException":
    return click.ClickException(message.splitlines()[0] if message else "failed")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("a", metavar="A")
@click.argument("b_prime", metavar="BPRIME")
@click.option("-o", "--output", "output", required=True, type=click.Path(file_okay=False),
              help=f"Folder for {A_PRIME} (A's layout, B′'s look) and {B} (B′'s layout, A's look); created if needed.")
@click.option("--size", type=int, help="Working long side in px (replaces the size rules and --ratio).")
@click.option("--ratio", type=float, help="Working scale after the original's size rules [default: 0.5; 1 = best quality].")
@click.option("--blend-level", type=click.Choice([str(k) for k in BLEND_PRESETS]),
              help="How much of A's structure A′ keeps: 1 less, 3 more [default: 2].")
@click.option("--iterations", type=int, help="PatchMatch iterations per level [default: 10].")
@click.option("--deconv-iterations", type=int, help="L-BFGS iterations per deconvolution [default: 10].")
@click.option("--seed", type=int, help="Seed of the PatchMatch random search [default: 0].")
@click.option("--weights", help="VGG19 weights: caffe (embedded, default), torchvision (downloads once), or a state-dict path.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where to compute: auto uses a CUDA GPU when one is present and usable, else the CPU.")
@click.option("--save-nnf", is_flag=True, help="Also write nnf_ab.npy and nnf_ba.npy (H×W×2 int32, (y, x) matches).")
@click.option("--save-flow", is_flag=True, help="Also write flow_ab.png and flow_ba.png (colour-coded displacement).")
@click.option("--photo", is_flag=True, help="Photo-to-photo mode: refine A′ and B to keep A's and B′'s edges (WLS).")
@click.option("--save-confidence", is_flag=True,
              help="Also write confidence_ab.png and confidence_ba.png (NNF forward–backward consistency, white = 1).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no summary.")
@click.version_option(analogy.__version__, prog_name="analogy")
def main(a: str, b_prime: str, output: str, size: Optional[int], ratio: Optional[float],
         blend_level: Optional[str], iterations: Optional[int], deconv_iterations: Optional[int],
         seed: Optional[int], weights: Optional[str], device: str, save_nnf: bool, save_flow: bool,
         photo: bool, save_confidence: bool, quiet: bool) -> None:
    """Make A′ (A's layout in BPRIME's look) and B (BPRIME's layout in A's look).

    Example: analogy photo.png painting.png -o out/
    """
    try:
        config = analogy.AnalogyConfig().replace(
            size=size, ratio=ratio, blend_level=int(blend_level) if blend_level else None,
            iterations=iterations, deconv_iterations=deconv_iterations, seed=seed,
            weights=weights, device=device, photo=photo or None,
        )
        out_dir = analogy.image_io.check_writable_dir(output)
        image_a = analogy.load_image(a, "A")
        image_b = analogy.load_image(b_prime, "B′")
        runner = analogy.Analogy(config)
        if quiet:
            result = runner(image_a, image_b)
        else:
            with click.progressbar(length=progress_steps(config), label="analogy", file=sys.stderr,
                                   show_eta=False, item_show_func=lambda s: s) as bar:
                result = runner(image_a, image_b, progress=lambda stage: bar.update(1, stage))
        paths = analogy.save_result(result, out_dir, save_nnf=save_nnf, save_flow=save_flow,
                                    save_confidence=save_confidence)
    except analogy.AnalogyError as exc:
        raise _fail(str(exc)) from None
    except KeyboardInterrupt:
        raise _fail("interrupted; no output was written") from None
    if not quiet:
        t = result.timings
        stages = ", ".join(f"{k} {t[k]:.1f}s" for k in ("features", "patchmatch", "deconvolution", "fusion", "reconstruction", "refinement") if k in t)
        (ha, wa), (hb, wb) = result.working_size_a, result.working_size_b
        click.echo(f"working sizes A {wa}×{ha}, B′ {wb}×{hb}; {stages}; total {t['total']:.1f}s", err=True)
        for path in paths.values():
            click.echo(f"wrote {Path(path)}", err=True)


if __name__ == "__main__":
    main()
