"""What every executor shares (executors.py for this machine, ray_executor.py for Ray): the
callbacks a batch passes in, the queue of pairs with their attempts, and a worker's thread count."""
from __future__ import annotations

import collections
import os
from typing import Callable, Iterator, Optional, Protocol, Sequence, Tuple

import torch

from .pairs import Pair, PairOutcome

OnStart = Optional[Callable[[Pair], None]]
#: Called with the pair, the reason its worker died, and the attempt about to start (2, 3, …).
OnRetry = Optional[Callable[[Pair, str, int], None]]
#: Called with a pair and each stage its analogy starts (the progress of run_analogy).
OnProgress = Optional[Callable[[Pair, str], None]]


class Executor(Protocol):
    def run(self, pairs: Sequence[Pair], on_start: OnStart = None, on_retry: OnRetry = None,
            on_progress: OnProgress = None) -> Iterator[PairOutcome]:
        """Run every pair; yield its outcome as it finishes."""


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the system has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def set_threads(threads: int) -> None:
    """The threads of torch and of Numba's parallel kernels in a worker."""
    import numba

    torch.set_num_threads(threads)
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))


class Attempts:
    """The pairs still to run, each with its attempt number (1, 2, …): a pair whose worker died
    goes back to the front of the queue until it has had 1 + `retries` attempts."""

    def __init__(self, pairs: Sequence[Pair], retries: int, on_start: OnStart,
                 on_retry: OnRetry) -> None:
        self.queue = collections.deque((pair, 1) for pair in pairs)
        self.retries, self.on_start, self.on_retry = retries, on_start, on_retry

    def __bool__(self) -> bool:
        return bool(self.queue)

    def next(self) -> Tuple[Pair, int]:
        """The next pair to start, and its attempt number."""
        pair, attempt = self.queue.popleft()
        if self.on_start is not None:
            self.on_start(pair)
        return pair, attempt

    def died(self, pair: Pair, attempt: int, reason: str) -> Optional[PairOutcome]:
        """The worker running `pair` died: queue it again, or (out of attempts) its failure."""
        if attempt <= self.retries:
            if self.on_retry is not None:
                self.on_retry(pair, reason, attempt + 1)
            self.queue.appendleft((pair, attempt + 1))
            return None
        return PairOutcome(pair, "failed", f"{reason}; tried {attempt} time{'s' * (attempt > 1)}")
