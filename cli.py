"""The `analogy` command: Deep Image Analogy of a structure image A and an appearance image B′.

    analogy A.png Bprime.png -o out/          one pair (the `run` subcommand, named or not)
    analogy batch --content photos/ --style starry.jpg -o out/
    analogy batch pairs.csv                   pairs from a manifest
    analogy serve                             a web page and HTTP API (pip install 'analogy[web]')
    analogy video clip.mp4 Bprime.png -o out.mp4   a video (pip install 'analogy[video]')
"""
from __future__ import annotations

import os
import signal
import sys


def _leave(signum: int, line: str = "") -> None:
    """End the process at once with status 128 + signum, after `line` (if it can be written)."""
    try:
        sys.stderr.write(line)
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os._exit(128 + signum)


def _interrupted_while_starting(signum, frame) -> None:
    # Nothing has been written yet; leave at once rather than with an import's traceback.
    _leave(signum, "Error: interrupted while starting; nothing was written\n")


# Importing torch takes a second or two; a Ctrl-C or SIGTERM then ends the command quietly. (Not
# in a batch's worker processes, which import this module too: the command speaks for them.)
# as spawn starts them
_IN_WORKER = __name__ == "__mp_main__" or "--multiprocessing-fork" in sys.argv
if _IN_WORKER:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the command handles Ctrl-C and stops its workers
_STARTUP_HANDLERS = {} if _IN_WORKER else {
    sig: signal.signal(sig, _interrupted_while_starting) for sig in (signal.SIGINT, signal.SIGTERM)}

import contextlib  # noqa: E402
import difflib  # noqa: E402
import functools  # noqa: E402
import inspect  # noqa: E402
import re  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable, List, Optional  # noqa: E402

import click  # noqa: E402

import analogy  # noqa: E402
from analogy.batch import PairOutcome, pairs_from_lists, pairs_from_manifest  # noqa: E402
from analogy.config import (  # noqa: E402
    BLEND_PRESETS,
    DEVICE_PATTERN,
    MIN_INPUT_SIDE,
    OUTPUT_SIZES,
)
from analogy.errors import (  # noqa: E402
    Terminated,
    interrupt_on_signal,
    interruption_handled,
    quiet_lost_interruptions,
    raise_if_interrupted,
)
from analogy.pipeline import progress_steps  # noqa: E402
from analogy.results import A_PRIME, B, output_names  # noqa: E402


def _fail(message: str) -> "click.ClickException":
    return click.ClickException(message.splitlines()[0] if message else "failed")


def _not_standard_input(*paths: str, what: str = "an image") -> None:
    """A one-line error for '-', which other tools read as standard input."""
    if "-" in paths:
        raise _fail(f"reading {what} from standard input ('-') is not supported; save it to a file "
                    "and give its path")


def _say(line: str) -> None:
    """A line on stderr for the user to read; dropped if it cannot be written (a full disk, a
    closed pipe): what the command does does not depend on it."""
    try:
        click.echo(line, err=True)
    except OSError:
        pass


class _Progress:
    """Progress on stderr: a bar on a terminal; elsewhere (a log file, a pipe) one line per step
    or stage, "NAME DONE/LENGTH: TEXT", so that the log shows how far the work got. A bar or a
    line that cannot be written is dropped: progress never stops the work."""

    def __init__(self, length: int, label: str, name: str, **bar_options) -> None:
        """`label` heads the bar, `name` the lines."""
        self.length, self.name, self.done = length, name, 0
        self.bar = (click.progressbar(length=length, label=label, file=sys.stderr,
                                      item_show_func=lambda s: s, **bar_options)
                    if sys.stderr.isatty() else None)

    def _draw(self, f: Callable, *args) -> None:
        try:
            f(*args)
        except OSError:
            self.bar = None  # the terminal is gone; the work goes on

    def __enter__(self) -> "_Progress":
        if self.bar is not None:
            self._draw(self.bar.__enter__)
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self._draw(self.bar.__exit__, *exc)

    def step(self, text: str) -> None:
        """One more of `length` done (or started), described by `text`."""
        self.done += 1
        if self.bar is not None:
            self._draw(self.bar.update, 1, text)
        else:
            _say(f"{self.name} {self.done}/{self.length}: {text}")

    def show(self, text: str) -> None:
        """What is under way, without a step."""
        if self.bar is not None:
            self.bar.current_item = text
            self._draw(self.bar.render_progress)
        else:
            _say(f"{self.name} {self.done}/{self.length}: {text}")

    def say(self, line: str) -> None:
        """A line of its own (not over the bar)."""
        _say(f"\n{line}" if self.bar is not None else line)


class _DefaultGroup(click.Group):
    """A group whose first argument, when it is not a subcommand, starts the `run` subcommand:
    `analogy A B -o out` is `analogy run A B -o out`. A first argument that is neither a command
    nor a path (a bare word such as `bacth`, no such file) is a mistyped command."""

    def parse_args(self, ctx: click.Context, args: List[str]) -> List[str]:
        if (args and args[0] not in self.commands
                and (args[0] == "-" or not args[0].startswith("-"))):
            word = args[0]
            if word != "-" and not Path(word).exists() and not any(c in word for c in "./\\:"):
                close = difflib.get_close_matches(word, list(self.commands), n=1)
                hint = f" Did you mean '{close[0]}'?" if close else ""
                ctx.fail(f"No such command '{word}'.{hint} Commands: {', '.join(self.commands)} "
                         f"(or give two image paths: analogy A.png BPRIME.png -o out/).")
            args = ["run", *args]
        return super().parse_args(ctx, args)


class _Device(click.ParamType):
    """auto, cpu, cuda or cuda:N."""

    name = "[auto|cpu|cuda|cuda:N]"

    def convert(self, value, param, ctx):
        if re.fullmatch(DEVICE_PATTERN, str(value)) is None:
            self.fail(f"{value!r} is not one of auto, cpu, cuda, cuda:N (N = the GPU's index)",
                      param, ctx)
        return str(value)


class _OutputSize(click.ParamType):
    """input, working or a long side in px."""

    name = "[input|working|N]"

    def convert(self, value, param, ctx):
        text = str(value).strip().lower()
        if text in OUTPUT_SIZES:
            return text
        try:
            side = int(text)
        except ValueError:
            side = None
        if side is None or side < MIN_INPUT_SIDE:
            self.fail(f"{value!r} is not input, working or a long side in px of at least "
                      f"{MIN_INPUT_SIDE}", param, ctx)
        return side


def _options(f: Callable, save: bool = True) -> Callable:
    """The method's options, shared by `run`, `batch` and (without the --save-… ones) `video`."""
    options = [
        click.option("--size", type=int,
                     help="Working long side in px (replaces the size rules and --ratio)."),
        click.option("--ratio", type=float,
                     help="Working scale after the original's size rules [default: 0.5; 1 = best "
                          "quality]."),
        click.option("--blend-level", type=click.Choice([str(k) for k in BLEND_PRESETS]),
                     help="How much of A's structure A′ keeps: 1 less, 3 more [default: 2]."),
        click.option("--iterations", type=int,
                     help="PatchMatch iterations per level [default: 10]."),
        click.option("--deconv-iterations", type=int,
                     help="Most L-BFGS iterations per deconvolution, at every level [default: "
                          "10 at the two coarsest, 50 below; the original's 100 at every level "
                          "take four times as long for the same scores]."),
        click.option("--preview", is_flag=True,
                     help="Fast preview: a deconvolution about three times cheaper; where A's "
                          "and B′'s colours differ, more of A's colours stay in A′ "
                          "(and B′'s in B)."),
        click.option("--output-size", type=_OutputSize(),
                     help="Size of A′ and B: input (A's and B′'s own sizes, synthesised scale by "
                          "scale above the working size; default), working (the working sizes, "
                          "fast) or N (long side in px, at most the input's)."),
        click.option("--seed", type=int, help="Seed of the PatchMatch random search [default: 0]."),
        click.option("--weights",
                     help="VGG19 weights: caffe (embedded, default), torchvision (downloads once), "
                          "or a state-dict path."),
        click.option("--device", type=_Device(), default="auto", show_default=True,
                     help="Where to compute: auto uses a CUDA GPU when one is present and usable, "
                          "else the CPU; cuda:N picks GPU N."),
        click.option("--photo", is_flag=True,
                     help="Photo-to-photo mode: refine A′ and B to keep A's and B′'s edges (WLS)."),
        *(_SAVE_OPTIONS if save else []),
        click.option("-q", "--quiet", is_flag=True, help="No progress bar and no summary."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


#: What `run` and `batch` may write besides A′ and B.
_SAVE_OPTIONS = [
        click.option("--save-nnf", is_flag=True,
                     help="Also write nnf_ab.npy and nnf_ba.npy (H×W×2 int32, (y, x) matches)."),
        click.option("--save-flow", is_flag=True,
                     help="Also write flow_ab.png and flow_ba.png (colour-coded displacement)."),
        click.option("--save-confidence", is_flag=True,
                     help="Also write confidence_ab.png and confidence_ba.png (NNF "
                          "forward–backward consistency, white = 1)."),
]


def _config(size, ratio, blend_level, iterations, deconv_iterations, preview, output_size, seed,
            weights, device, photo) -> analogy.AnalogyConfig:
    """The configuration with the options given on the command line (None: not given, keep the
    default); --preview first, so that an explicit --deconv-iterations still counts."""
    given = dict(size=size, ratio=ratio, blend_level=int(blend_level) if blend_level else None,
                 iterations=iterations, deconv_iterations=deconv_iterations,
                 output_size=output_size, seed=seed, weights=weights, device=device,
                 photo=photo or None)
    base = analogy.AnalogyConfig().as_preview() if preview else analogy.AnalogyConfig()
    return base.replace(**{k: v for k, v in given.items() if v is not None})


#: Where the command is, for the signal handler (see entry): "starting" until a command's body
#: runs, "working" while it does, then "done" or "failed".
_phase = "starting"


def _one_line_errors(f: Callable) -> Callable:
    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        global _phase
        _phase, ended = "working", "failed"
        try:
            result = f(*args, **kwargs)
            raise_if_interrupted()  # a signal whose interruption was lost on the way
            ended = "done"
            return result
        except analogy.AnalogyError as exc:
            raise _fail(str(exc)) from None
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (see entry)
            click.echo("Error: interrupted; outputs already written are complete, the rest were "
                       "not written",
                       err=True)
            sys.exit(143 if isinstance(exc, Terminated) else 130)
        finally:
            _phase = ended

    return wrapper


@click.group(cls=_DefaultGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(analogy.__version__, prog_name="analogy")
def main() -> None:
    """Deep Image Analogy: A′ (A's layout in B′'s look) and B (B′'s layout in A's look).

    \b
    analogy A.png BPRIME.png -o out/     one pair (same as `analogy run …`)
    analogy batch …                      many pairs (see `analogy batch --help`)
    analogy video …                      a video's frames (see `analogy video --help`)
    analogy serve                        a web page and HTTP API (see `analogy serve --help`)
    """


@main.command("run")
@click.argument("a", metavar="A")
@click.argument("b_prime", metavar="BPRIME")
@click.option("-o", "--output", "output", required=True, metavar="FOLDER",
              help=f"Folder for {A_PRIME} (A's layout, B′'s look) and {B} (B′'s layout, A's look); "
                   "created if needed.")
@_options
@_one_line_errors
def run(a: str, b_prime: str, output: str, quiet: bool, save_nnf: bool, save_flow: bool,
        save_confidence: bool, **options) -> None:
    """Make A′ (A's layout in BPRIME's look) and B (BPRIME's layout in A's look).

    Example: analogy photo.png painting.png -o out/
    """
    _not_standard_input(a, b_prime)
    config = _config(**options)
    image_io = analogy.image_io
    out_dir = image_io.check_output_folder(output, probe=True)
    names = output_names(save_nnf, save_flow, save_confidence)
    clash = image_io.input_replaced_by([out_dir / name for name in names], [a, b_prime])
    if clash is not None:
        raise _fail(f"{image_io.shown(clash[0])}: is an input and would be replaced by an output; "
                    f"choose another output folder")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", analogy.InputImageWarning)
        image_a = analogy.load_image(a, "A")
        image_b = analogy.load_image(b_prime, "B′")
    for warning in caught:  # one line each, without Python's file and line
        _say(f"Warning: {warning.message}")
    runner = analogy.Analogy(config)
    # Held from here to the end: another run on this folder is refused; on failure, a folder
    # made for this run goes again.
    with image_io.output_folder(out_dir):
        if quiet:
            result = runner(image_a, image_b)
        else:
            with _Progress(progress_steps(config, image_a.shape[:2], image_b.shape[:2]),
                           "analogy", "analogy", show_eta=False) as progress:
                result = runner(image_a, image_b, progress=progress.step)
        paths = analogy.save_result(result, out_dir, save_nnf=save_nnf, save_flow=save_flow,
                                    save_confidence=save_confidence)
    if not quiet:
        t = result.timings
        stages = ", ".join(f"{k} {t[k]:.1f}s" for k in
                           ("features", "patchmatch", "deconvolution", "fusion", "synthesis",
                            "reconstruction", "refinement") if k in t)
        (ha, wa), (hb, wb) = result.working_size_a, result.working_size_b
        _say(f"working sizes A {wa}×{ha}, B′ {wb}×{hb}; {stages}; total {t['total']:.1f}s")
        for path in paths.values():
            _say(f"wrote {Path(path)}")


@main.command("batch")
@click.argument("manifest", required=False, type=click.Path(dir_okay=False))
@click.option("--content", multiple=True, metavar="DIR_OR_FILE",
              help="A structure image, or a folder of them (repeatable). Pairs every one with "
                   "every --style.")
@click.option("--style", multiple=True, metavar="DIR_OR_FILE",
              help="An appearance image B′, or a folder of them (repeatable).")
@click.option("-o", "--output", "output", metavar="FOLDER",
              help="Folder under which each pair gets its own folder (required with "
                   "--content/--style; with a manifest, the base of relative output folders, else "
                   "the manifest's folder).")
@click.option("--resume", is_flag=True,
              help="Skip pairs whose outputs are complete and were made from the same inputs and "
                   "options (their analogy.json says so); redo the others.")
@click.option("--fail-fast", is_flag=True, help="Stop at the first pair that fails.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Pairs run at once, each in its own process (CPU cores are split between them; "
                   "one per GPU on CUDA); with --executor ray, Ray workers.")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Where pairs run: worker processes on this machine, or Ray tasks "
                   "(pip install 'analogy[ray]').")
@click.option("--address", metavar="auto|HOST:PORT",
              help="The Ray cluster to use (auto: the one started on this machine with "
                   "`ray start`); without it, a local Ray is started for the batch.")
@click.option("--retries", type=click.IntRange(min=0), default=1, show_default=True,
              help="Times a pair is tried again when its worker process dies (killed, a lost node) "
                   "before it is reported failed.")
@_options
@_one_line_errors
def batch(manifest: Optional[str], content, style, output: Optional[str], resume: bool,
          fail_fast: bool, jobs: int, executor: str, address: Optional[str], retries: int,
          quiet: bool, save_nnf: bool, save_flow: bool, save_confidence: bool, **options) -> None:
    """Many pairs: every --content × every --style, or the rows of a CSV MANIFEST.

    \b
    analogy batch --content photos/ --style starry_night.jpg -o out/
        writes out/<photo>__starry_night/A_prime.png and B.png for each photo
    analogy batch pairs.csv
        pairs.csv has a header A,B′,output (B' or Bprime also accepted) and one row per pair;
        paths are relative to the manifest

    A pair that fails is reported and the others go on; the exit status is 1 if any failed.
    """
    if manifest and (content or style):
        raise _fail("give either a MANIFEST or --content/--style, not both")
    _not_standard_input(manifest, what="a manifest")
    _not_standard_input(*content, *style)
    if manifest:
        pairs = pairs_from_manifest(manifest, output)
    elif content or style:
        if not output:
            raise _fail("--content/--style need an output folder: -o OUT")
        pairs = pairs_from_lists(content, style, output)
    else:
        raise _fail("nothing to do: give a MANIFEST or --content and --style "
                    "(see analogy batch --help)")
    config = _config(**options)
    t0 = time.perf_counter()
    counts = {"done": 0, "skipped": 0, "failed": 0}
    failures: List[PairOutcome] = []
    run_batch = functools.partial(analogy.batch, pairs, config, jobs=jobs, resume=resume,
                                  fail_fast=fail_fast, save_nnf=save_nnf, save_flow=save_flow,
                                  save_confidence=save_confidence, executor=executor,
                                  address=address, retries=retries)
    if quiet:
        outcomes = run_batch()
    else:
        progress = _Progress(len(pairs), f"{len(pairs)} pairs", "batch", show_pos=True,
                             show_eta=True)
        outcomes = run_batch(
            on_start=lambda pair: progress.show(f"running {pair.name}"),
            on_progress=lambda pair, stage: progress.show(f"{pair.name}: {stage}"),
            on_retry=lambda pair, reason, attempt: progress.say(
                f"{pair.name}: {reason}; trying again (attempt {attempt} of {retries + 1})"))
    with contextlib.nullcontext() if quiet else progress:
        for outcome in outcomes:
            counts[outcome.status] += 1
            if outcome.status == "failed":
                failures.append(outcome)
                if not quiet:
                    progress.say(f"failed: {outcome.pair.name}: {outcome.error}")
            if not quiet:
                progress.step(f"{outcome.status} {outcome.pair.name}")
    if not quiet:
        elapsed = time.perf_counter() - t0
        _say(f"batch: {counts['done']} done, {counts['skipped']} skipped, {counts['failed']} "
             f"failed of {len(pairs)} pairs in {elapsed:.1f}s")
        for outcome in failures:
            _say(f"failed: {outcome.pair.name}: {outcome.error}")
    if failures:
        if quiet:
            raise _fail(f"{len(failures)} of {len(pairs)} pairs failed, first "
                        f"{failures[0].pair.name}: {failures[0].error}")
        sys.exit(1)


@main.command("video")
@click.argument("input_", metavar="INPUT")
@click.argument("b_prime", metavar="BPRIME")
@click.option("-o", "--output", "output", required=True, metavar="VIDEO_OR_FOLDER",
              help="A video file (.mp4, .mkv, .webm, .mov: the input's frame rate, size, number "
                   "of frames and sound) or a folder (one PNG per frame, named after the input's "
                   "frames).")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True),
              help="Frames per second of an output video made from a folder of frames "
                   "[default: 25; a video input keeps its own].")
@click.option("--quality", type=click.IntRange(min=0),
              help="The encoder's CRF, lower is better and larger [default: 18 for H.264, 24 for "
                   "VP9].")
@functools.partial(_options, save=False)
@_one_line_errors
def video(input_: str, b_prime: str, output: str, rate: Optional[float], quality: Optional[int],
          quiet: bool, **options) -> None:
    """A′ of every frame of INPUT (a video file or a folder of numbered images) in BPRIME's look,
    coherent from frame to frame.

    \b
    analogy video clip.mp4 starry_night.jpg -o clip_starry.mp4
    analogy video frames/ starry_night.jpg -o stylised/

    Each frame after the first starts from the one before, carried along the optical flow: less
    flicker, in a fraction of the time. Finished frames are kept (in the output folder, or for a
    video file in OUTPUT.frames beside it until the encode): running the same command again
    resumes at the first missing frame. Needs the video extra: pip install 'analogy[video]'.
    """
    from analogy.video import video as run_video
    from analogy.video_io import require_video

    _not_standard_input(input_, b_prime, what="a video or an image")
    require_video()
    config = _config(**options)
    started = time.perf_counter()
    if quiet:
        result = run_video(input_, b_prime, output, config, rate=rate, quality=quality)
    else:
        from analogy.video_io import open_clip

        count = open_clip(input_).count
        with _Progress(count, "video", "video", show_eta=True, show_pos=True) as progress:
            def report(line: str) -> None:
                if line.startswith("frame "):
                    progress.step(line.split(" ", 2)[2])
                elif line.startswith("resuming at frame "):  # the frames before are done
                    progress.done = int(line.split()[3]) - 1
                    if progress.bar is not None:
                        progress.bar.update(progress.done)
                    progress.say(line)
                else:
                    progress.say(line)

            result = run_video(input_, b_prime, output, config, progress=report, rate=rate,
                               quality=quality)
    if not quiet:
        made = len(result.seconds)
        pace = (f"; first {result.seconds[0]:.1f}s, then "
                f"{sum(result.seconds[1:]) / (made - 1):.1f}s a frame" if made > 1 else "")
        _say(f"video: {result.frames} frames, {made} made in this run{pace}; total "
             f"{time.perf_counter() - started:.1f}s")
        _say(f"wrote {Path(output)}")


#: Options of `run` that belong to the server rather than to a web job: where it computes, what it
#: writes (everything), what it prints.
_SERVER_OPTIONS = ("weights", "device", "save_nnf", "save_flow", "save_confidence", "quiet")


def web_job_options(weights: str = "caffe", device: str = "auto"):
    """The options a web job takes: `run`'s own (those `_config` takes, but the server's), made into
    a configuration by `_config`, so that the same values give the same bytes and messages as here.
    An option added to `run` and `_config` (a preview, say) appears on the page and in the API."""
    from analogy.web.jobs import JobOptions

    taken = set(inspect.signature(_config).parameters) - set(_SERVER_OPTIONS)
    fields = [p for p in run.params if isinstance(p, click.Option) and p.name in taken]

    def make_config(**values) -> analogy.AnalogyConfig:
        given = {**dict.fromkeys(p.name for p in fields), **values}
        return _config(**given, weights=weights, device=device)

    return JobOptions(fields, make_config)


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; 0.0.0.0 for every network interface (there is no login: "
                   "anyone who can reach the port can use it).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="Port to listen on (0: any free one).")
@click.option("--data", metavar="FOLDER",
              help="Folder for the jobs' uploads and results; nothing is written elsewhere "
                   "[default: a temporary folder, removed at exit].")
@click.option("--workers", type=click.IntRange(min=1),
              help="Jobs run at once [default: 1 on the CPU, one per GPU].")
@click.option("--queue", "capacity", type=click.IntRange(min=1), default=16, show_default=True,
              help="Jobs that may wait; more are refused (HTTP 503 with Retry-After).")
@click.option("--keep", type=click.FloatRange(min=0), default=60, show_default=True,
              help="Minutes a finished job's files are kept.")
@click.option("--max-upload", type=click.FloatRange(min=0, min_open=True), default=25,
              show_default=True, help="Largest image or video upload, in MB.")
@click.option("--max-pixels", type=click.IntRange(min=1), default=25_000_000, show_default=True,
              help="Largest image or video frame, in pixels.")
@click.option("--max-frames", type=click.IntRange(min=1), default=300, show_default=True,
              help="Most frames in an uploaded video (a clip instead of A: every frame in B′'s "
                   "look, as `analogy video` makes it).")
@click.option("--weights", default="caffe", show_default=True,
              help="VGG19 weights: caffe (embedded), torchvision (downloads once), or a state-dict "
                   "path.")
@click.option("--device", type=_Device(), default="auto", show_default=True,
              help="Where to compute: auto uses the CUDA GPUs when present and usable (one worker "
                   "each), else the CPU.")
@_one_line_errors
def serve(host: str, port: int, data: Optional[str], workers: Optional[int], capacity: int,
          keep: float, max_upload: float, max_pixels: int, max_frames: int, weights: str,
          device: str) -> None:
    """A local web app and HTTP API: drop A and B′ on a page, follow the job, download the results.

    \b
    analogy serve                         then open http://127.0.0.1:8000/
    curl -F a=@A.png -F bprime=@B.png -F size=256 http://127.0.0.1:8000/api/jobs

    Needs the web extra: pip install 'analogy[web]'. The API is described at /docs.
    """
    from analogy.web import require_web

    require_web()
    import logging

    from analogy.web.app import Limits, serve as run_server
    from analogy.web.jobs import JobQueue

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    logger = logging.getLogger("analogy.web")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    options = web_job_options(weights, device)
    limits = Limits(upload_bytes=int(max_upload * 1e6), pixels=max_pixels, frames=max_frames)
    queue = JobQueue(Path(data) if data else None, weights, device, workers, capacity, keep * 60)

    def announce(url: str) -> None:
        where = f"jobs in {queue.data}" if data else "jobs in a temporary folder"
        click.echo(f"analogy serve: open {url} in a browser (API: {url}docs); {len(queue.devices)} "
                   f"worker{'s' * (len(queue.devices) > 1)}, {where}; Ctrl-C stops it", err=True)
        if host not in ("127.0.0.1", "localhost", "::1"):
            click.echo("Warning: listening beyond this machine, with no login: anyone who can "
                       "reach the port can use it", err=True)

    try:
        run_server(queue, options, limits, host, port, announce)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM, which uvicorn passes on once it has shut down
        interruption_handled()  # stopping is how the server ends, not an interrupted command
    click.echo("analogy serve: stopped; every job's files were removed", err=True)


def _on_signal(signum, frame) -> None:
    if _phase == "working":  # clean up, one line, 130 or 143 (see _one_line_errors)
        interrupt_on_signal(signum, frame)
    elif _phase == "starting":
        _interrupted_while_starting(signum, frame)
    else:  # the command has ended and said how; only the interpreter's exit is left
        _leave(signum, "Error: interrupted while exiting; every output was written\n"
               if _phase == "done" else "")


def entry() -> None:
    """The installed `analogy` command: `main`, with Ctrl-C and SIGTERM handled at any moment:
    one line and exit status 130 or 143; in the middle of the work, after its clean-up."""
    quiet_lost_interruptions()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _on_signal)
    main(prog_name="analogy")


# Back to whatever the host process had, at the very end: a command's entry() takes over from here.
for _sig, _handler in _STARTUP_HANDLERS.items():
    signal.signal(_sig, _handler)

if __name__ == "__main__":
    entry()
