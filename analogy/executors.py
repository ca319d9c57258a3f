"""Where a batch's pairs run: in this process, in worker processes on this machine, or on a Ray
cluster. One interface, chosen once by `executor_for`; the same pair gives the same bytes on each.

An executor's `run(pairs, on_start, on_retry)` (see executor_base) yields a PairOutcome per pair as
it finishes. A worker that dies in the middle of a pair (killed, out of memory, a lost node) costs
that pair one attempt: it is retried up to `retries` times on a fresh worker, then reported failed
with the reason; the other pairs go on. Closing the iterator (fail-fast, Ctrl-C) stops the workers,
which remove what they were writing.
"""
from __future__ import annotations

import functools
import multiprocessing
import os
import signal
import threading
import time
from multiprocessing import connection
from typing import Dict, Iterator, List, Optional, Sequence

import torch

from .config import AnalogyConfig
from .errors import AnalogyError, ConfigError, interrupt_on_signal, quiet_lost_interruptions
from .executor_base import (
    Attempts,
    Executor,
    OnProgress,
    OnRetry,
    OnStart,
    set_threads,
    usable_cpus,
)
from .image_io import clear_stale_temporaries
from .pairs import Pair, PairOutcome, PairRunner

EXECUTORS = ("local", "ray")


def _worker_devices(config: AnalogyConfig, jobs: int) -> List[Optional[str]]:
    """The device of each local worker: None for CPU workers, else one GPU each."""
    from .kernels import resolve_device

    if resolve_device(config.device).type != "cuda":
        return [None] * jobs
    if config.device.startswith("cuda:"):
        return [config.device]
    return [f"cuda:{i}" for i in range(min(jobs, torch.cuda.device_count()))]


def executor_for(name: str, config: AnalogyConfig, save: Dict[str, bool], jobs: int,
                 retries: int = 1, address: Optional[str] = None) -> Executor:
    """The executor `name` ("local" or "ray") for `jobs` pairs at once, its options checked here,
    once, before any worker starts (a bad --weights or --device is one error, not one per
    worker)."""
    from .features import load_vgg

    if name not in EXECUTORS:
        raise ConfigError(f"executor must be one of {', '.join(EXECUTORS)}, got {name!r}")
    if address is not None and name != "ray":
        raise ConfigError("--address is for --executor ray")
    if name == "ray":
        from .ray_executor import RayExecutor, require_ray

        require_ray()
    else:
        devices = _worker_devices(config, jobs)
        if len(devices) == 1:  # loads the weights here
            return InlineExecutor(config.replace(device=devices[0] or config.device), save)
    load_vgg(config.weights, "cpu")  # the workers load them too; an error here is said once
    if name == "ray":
        return RayExecutor(config, save, jobs, retries, address)
    return ProcessExecutor(config, save, devices, retries)


class InlineExecutor:
    """Pairs one after another in this process."""

    def __init__(self, config: AnalogyConfig, save: Dict[str, bool]) -> None:
        self.runner = PairRunner(config, save)

    def run(self, pairs: Sequence[Pair], on_start: OnStart = None, on_retry: OnRetry = None,
            on_progress: OnProgress = None) -> Iterator[PairOutcome]:
        for pair in pairs:
            if on_start is not None:
                on_start(pair)
            yield self.runner(pair, None if on_progress is None
                              else functools.partial(on_progress, pair))


def death(exitcode: Optional[int]) -> str:
    """Why a worker process ended, in words."""
    if exitcode is not None and exitcode < 0:
        try:
            return f"worker process died (killed by {signal.Signals(-exitcode).name})"
        except ValueError:
            return f"worker process died (killed by signal {-exitcode})"
    return f"worker process died (exit status {exitcode})"


def clean_up_after_death(pair: Pair, fresh: bool) -> None:
    """Remove what a worker killed in the middle of `pair` left in its folder (temporaries, the
    lock file) and the folder itself if the batch made it and it is empty."""
    # (not when another run took the folder meanwhile)
    if clear_stale_temporaries(pair.out) and fresh:
        try:
            pair.out.rmdir()
        except OSError:
            pass


class ProcessExecutor:
    """Pairs in worker processes on this machine, one per device (CPU workers split the cores
    between them); a worker that dies is replaced."""

    def __init__(self, config: AnalogyConfig, save: Dict[str, bool],
                 devices: Sequence[Optional[str]], retries: int = 1) -> None:
        self.config, self.save, self.devices, self.retries = config, save, list(devices), retries
        cpu_workers = sum(d is None for d in devices)
        self.threads = (max(1, usable_cpus() // cpu_workers) if cpu_workers
                        else max(1, torch.get_num_threads()))

    def run(self, pairs: Sequence[Pair], on_start: OnStart = None, on_retry: OnRetry = None,
            on_progress: OnProgress = None) -> Iterator[PairOutcome]:
        # fork would copy torch's and Numba's thread pools
        context = multiprocessing.get_context("spawn")
        queue = Attempts(pairs, self.retries, on_start, on_retry)
        fresh = {pair: not pair.out.exists() for pair in pairs}
        workers = [_WorkerProcess(context, self.config, self.save, self.threads, d)
                   for d in self.devices]
        succeeded = False
        try:
            while queue or any(w.pair for w in workers):
                for worker in workers:
                    if worker.pair is None and queue:
                        worker.send(*queue.next())
                busy = [w for w in workers if w.pair is not None]
                ready = set(connection.wait([w.conn for w in busy]
                                            + [w.process.sentinel for w in busy]))
                for worker in busy:
                    if worker.conn not in ready and worker.process.sentinel not in ready:
                        continue
                    pair, attempt = worker.pair, worker.attempt
                    kind, value = worker.receive()
                    if kind == "progress":
                        if on_progress is not None:
                            on_progress(pair, value)
                    elif kind == "done":
                        yield value
                    elif kind == "error":  # the worker could not start: the same for every worker
                        raise AnalogyError(value)
                    else:  # it died in the middle of the pair
                        worker.restart()
                        clean_up_after_death(pair, fresh[pair])
                        failure = queue.died(pair, attempt, value)
                        if failure is not None:
                            yield failure
            succeeded = True
        finally:
            for worker in workers:
                worker.stop(now=not succeeded)


class _WorkerProcess:
    """One worker process and the pipe to it, with the pair it is running (None when idle)."""

    def __init__(self, context, config: AnalogyConfig, save: Dict[str, bool], threads: int,
                 device: Optional[str]) -> None:
        self.context, self.args = context, (config, save, threads, device)
        self.pair: Optional[Pair] = None
        self.attempt = 0
        self.start()

    def start(self) -> None:
        self.conn, child = self.context.Pipe()
        self.process = self.context.Process(target=_worker_main,
                                            args=(child, *self.args, os.getpid()), daemon=True)
        self.process.start()
        child.close()

    def send(self, pair: Pair, attempt: int) -> None:
        self.pair, self.attempt = pair, attempt
        try:
            self.conn.send(pair)
        except OSError:  # already dead: receive() will say why
            pass

    def receive(self):
        """("progress", stage) while the pair runs, then ("done", outcome), ("error", message) or
        ("died", reason), after which the worker is idle."""
        try:
            if self.conn.poll():
                message = self.conn.recv()
                if message[0] != "progress":
                    self.pair = None
                return message
        except (EOFError, OSError):
            pass
        self.pair = None
        self.process.join()
        return "died", death(self.process.exitcode)

    def restart(self) -> None:
        self.conn.close()
        self.start()

    def stop(self, now: bool) -> None:
        """Let the worker finish (idle: it leaves at once), or with `now` stop it mid-pair; it
        cleans up what it was writing (SIGTERM) before it leaves."""
        if self.process.is_alive():
            if now:
                self.process.terminate()
            else:
                try:
                    self.conn.send(None)
                except OSError:
                    pass
        self.process.join()
        self.conn.close()


_WORKING = False  # whether this worker process is in the middle of a pair


def _on_sigterm(signum, frame) -> None:
    if _WORKING:
        interrupt_on_signal(signum, frame)  # cleaned up on the way out
        return  # (a second SIGTERM while it is)
    os._exit(128 + signum)  # starting or idle: nothing to clean up, nothing to say


def _send(conn, message) -> bool:
    """Send `message` to the batch; False if the batch is gone (killed: there is no one to tell)."""
    try:
        conn.send(message)
    except OSError:  # BrokenPipeError, mostly
        return False
    return True


def _watch_parent(parent: int) -> None:
    """End this worker (as on SIGTERM) when the batch that started it is gone, however it ended."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os.kill(os.getpid(), signal.SIGTERM)


def _worker_main(conn, config: AnalogyConfig, save: Dict[str, bool], threads: int,
                 device: Optional[str], parent: int) -> None:
    global _WORKING
    # Ctrl-C in a terminal reaches every process of the group: the batch alone handles it, and
    # stops its workers with SIGTERM.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_sigterm)
    quiet_lost_interruptions()
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    set_threads(threads)
    try:
        runner = PairRunner(config if device is None else config.replace(device=device), save)
    except AnalogyError as exc:
        _send(conn, ("error", str(exc).splitlines()[0]))
        return
    while True:
        try:
            pair = conn.recv()
        except (EOFError, OSError):
            return
        if pair is None:
            return
        _WORKING = True
        try:
            outcome = runner(pair, lambda stage: _send(conn, ("progress", stage)))
        except KeyboardInterrupt:
            # SIGTERM: its files are removed; the batch reports the interruption
            os._exit(143)
        _WORKING = False
        if not _send(conn, ("done", outcome)):
            return
