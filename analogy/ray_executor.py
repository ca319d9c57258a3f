"""A batch's pairs on a Ray cluster (`pip install 'analogy[ray]'`), or on a Ray started here.

Each worker is a Ray actor that loads VGG19 once and keeps its feature cache (a PairRunner); it
takes one GPU where the cluster has GPUs, else a share of the cluster's cores. The driver reads
each input file once, puts its bytes in Ray's object store and sends them with the pair; the
worker sends back the encoded output files, and the driver writes them into the pair's folder,
all or nothing, with the pair's record, exactly as a local batch does. So the nodes need no
storage shared with the driver, the outputs are the same bytes as a local batch's, and a worker
or node that is lost mid-pair leaves nothing on disk: its pair is tried again on a new worker.
"""
from __future__ import annotations

import collections
import contextlib
import logging
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, Iterator, Optional, Sequence, Tuple

from .config import AnalogyConfig
from .errors import ConfigError
from .executor_base import Attempts, OnProgress, OnRetry, OnStart, set_threads, usable_cpus
from .image_io import EncodedImage, output_folder
from .pairs import Pair, PairOutcome, PairRunner, outcome_of, write_pair_files


def require_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs Ray, an optional extra: "
                          "pip install 'analogy[ray]'") from None
    return ray


@contextlib.contextmanager
def _stderr_held_back() -> Iterator[None]:
    """Send what is written to this process's stderr (file descriptor 2, where Ray's C++ core
    logs) to a temporary file meanwhile; the caller reports errors in its own words."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


class PairWorker:
    """The body of a Ray worker: a PairRunner with its own thread count."""

    def __init__(self, config: AnalogyConfig, save: Dict[str, bool], threads: int) -> None:
        set_threads(threads)
        self.runner = PairRunner(config, save)

    def run(self, pair: Pair, a: EncodedImage,
            b_prime: EncodedImage) -> Tuple[PairOutcome, Dict[str, bytes]]:
        """The pair's outcome and, when it is done, its encoded output files."""
        files: Dict[str, bytes] = {}

        def work() -> Dict[str, float]:
            encoded, timings = self.runner.compute(a, b_prime, **dict(pair.options))
            files.update(encoded)
            return timings

        return outcome_of(pair, work), files


class RayExecutor:
    """Pairs as tasks of `jobs` Ray actors: on the cluster at `address` ("auto" or HOST:PORT), or
    on a Ray instance started for the batch (and shut down after it) when there is none."""

    def __init__(self, config: AnalogyConfig, save: Dict[str, bool], jobs: int, retries: int = 1,
                 address: Optional[str] = None) -> None:
        ray = self.ray = require_ray()
        self.config, self.save, self.retries = config, save, retries
        self.owned = not ray.is_initialized()  # a Ray the caller started is theirs to shut down
        t0 = time.perf_counter()
        if self.owned:
            handler = signal.getsignal(signal.SIGTERM)  # ray.init installs its own
            options = dict(logging_level=logging.ERROR, log_to_driver=False)
            try:
                with _stderr_held_back():  # Ray's core logs each retry of an unreachable address
                    if address is None:
                        ray.init(num_cpus=usable_cpus(), include_dashboard=False, **options)
                    else:
                        ray.init(address=address, **options)
            except Exception as exc:  # noqa: BLE001 - Ray raises many kinds (connection, version)
                raise ConfigError("cannot start or reach Ray"
                                  f"{f' at {address}' if address else ''}: "
                                  f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                                  ) from None
            finally:
                if handler is not None:
                    signal.signal(signal.SIGTERM, handler)
        self.startup_seconds = time.perf_counter() - t0
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        if config.device.startswith("cuda") and not gpus:
            self.close()
            raise ConfigError(f"--device {config.device}: the Ray cluster has no GPU; "
                              "use --device auto or cpu")
        if gpus and config.device != "cpu":
            self.workers, self.threads = min(jobs, gpus), 1
            self.options = dict(num_gpus=1, num_cpus=1)
            # Ray gives each worker its own GPU as cuda:0
            self.worker_config = config.replace(device="cuda")
        else:
            largest = max((n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")),
                          default=1)
            self.workers = jobs
            self.threads = int(max(1, min(largest, resources.get("CPU", 1) // jobs)))
            self.options = dict(num_cpus=self.threads)
            self.worker_config = config.replace(device="cpu")
        self.actor_class = ray.remote(PairWorker)

    def close(self) -> None:
        """Shut down the Ray instance this executor started (or disconnect from the cluster)."""
        if self.owned and self.ray.is_initialized():
            self.ray.shutdown()

    def _new_worker(self):
        return self.actor_class.options(max_restarts=0, max_task_retries=0, **self.options).remote(
            self.worker_config, self.save, self.threads)

    def run(self, pairs: Sequence[Pair], on_start: OnStart = None, on_retry: OnRetry = None,
            on_progress: OnProgress = None) -> Iterator[PairOutcome]:
        """As the Executor protocol says; a Ray worker reports no stages (`on_progress` is not
        called)."""
        ray = self.ray
        inputs: Dict[Path, object] = {}  # input path → its bytes in the object store, sent once
        uses = collections.Counter(path for pair in pairs for path in (pair.a, pair.b_prime))

        def encoded(path: Path):
            if path not in inputs:
                inputs[path] = ray.put(EncodedImage(str(path), Path(path).read_bytes()))
            return inputs[path]

        def finished(pair: Pair) -> None:  # an input no pair needs any more leaves the object store
            for path in (pair.a, pair.b_prime):
                uses[path] -= 1
                if not uses[path]:
                    inputs.pop(path, None)

        queue = Attempts(pairs, self.retries, on_start, on_retry)
        workers = [self._new_worker() for _ in range(self.workers)]
        running: Dict[object, Tuple[int, Pair, int]] = {}  # task → (worker, pair, attempt)
        try:
            while queue or running:
                busy = {slot for slot, _, _ in running.values()}
                for slot in range(len(workers)):
                    if slot in busy or not queue:
                        continue
                    pair, attempt = queue.next()
                    try:
                        a, b = encoded(pair.a), encoded(pair.b_prime)
                    except OSError as exc:
                        finished(pair)
                        yield PairOutcome(pair, "failed",
                                          f"{exc.filename}: cannot read it ({exc.strerror or exc})")
                        continue
                    running[workers[slot].run.remote(pair, a, b)] = (slot, pair, attempt)
                if not running:
                    continue
                (task,), _ = ray.wait(list(running), num_returns=1)
                slot, pair, attempt = running.pop(task)
                try:
                    outcome, files = ray.get(task)
                except ray.exceptions.RayTaskError as exc:
                    # the worker's code raised: a bug, not a death
                    outcome = PairOutcome(pair, "failed",
                                          str(exc.cause if exc.cause else exc).splitlines()[0])
                except ray.exceptions.RayError as exc:  # the worker process or its node died
                    ray.kill(workers[slot], no_restart=True)
                    workers[slot] = self._new_worker()
                    outcome = queue.died(pair, attempt, f"Ray worker died ({type(exc).__name__})")
                    if outcome is None:
                        continue
                finished(pair)
                if outcome.status == "done":
                    outcome = self._write(outcome, files)
                yield outcome
        finally:
            # killing the workers cancels their tasks; they write nothing, so there is
            # nothing to clean
            for worker in workers:
                ray.kill(worker, no_restart=True)
            self.close()

    def _write(self, outcome: PairOutcome, files: Dict[str, bytes]) -> PairOutcome:
        """Write a finished pair's files here, as a local worker would have."""
        pair = outcome.pair

        def work() -> Dict[str, float]:
            with output_folder(pair.out):
                write_pair_files(pair, files, self.config)
            return outcome.timings

        written = outcome_of(pair, work)
        written.seconds += outcome.seconds
        return written
