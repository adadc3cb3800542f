"""The set-up work of trials in flight (eager warm-up steps, CUDA graph captures) on threads of their own.

The first eager steps of a new network build cuDNN execution plans for its shapes: about 2 s of host time
per sampled `anynet_xa_cifar` network on an H200 (py-spy on a study with 8 trials in flight: 37% of the
engine thread's samples were eager forward and backward, `benchmarks/RESULTS.md`). On the engine's one
thread that time launches nothing, and the other trials' queues drain. So the trainer's programs hand
every call that is not a graph replay to a small pool of threads, each running it on the calling task's
own stream, and the task waits on the `Pending`; the engine's thread keeps replaying the other trials'
graphs. Torch releases the GIL inside its operators, so the threads overlap. Captures take `CAPTURE_LOCK`:
one at a time in the process. A thread never draws from the global random generators (models are built
and seeded on the engine's thread), so results do not depend on the threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

from anynet_search.training.fences import Pending

CAPTURE_LOCK = threading.Lock()
MAX_SETUP_THREADS = 4  # plan building is CPU work: a few threads cover a cohort of new trials

_CURRENT: SetupThreads | None = None


class SetupThreads:
    """A pool of threads that run set-up calls on the stream that was current where they were submitted."""

    def __init__(self, threads: int) -> None:
        if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= MAX_SETUP_THREADS:
            raise ValueError(f"threads must be an integer in 1..{MAX_SETUP_THREADS}, got {threads!r}")
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="anynet-setup")

    def submit(self, fn: Callable[[], Any]) -> Pending:
        """Run `fn` on a pool thread, on the caller's current CUDA stream; its Pending settles when it returns."""
        stream = torch.cuda.current_stream() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
        pending = Pending()

        def run() -> None:
            try:
                if stream is None:
                    value = fn()
                else:
                    with torch.cuda.stream(stream):
                        value = fn()
            except BaseException as exc:  # noqa: BLE001 - handed to the task that submitted the call
                pending.settle(error=exc)
            else:
                pending.settle(value=value)

        self.pool.submit(run)
        return pending

    def close(self) -> None:
        """Stop the threads once the calls already submitted have run."""
        self.pool.shutdown(wait=False)


def current() -> SetupThreads | None:
    """This process's set-up threads, if its worker runs any."""
    return _CURRENT


def install(threads: SetupThreads | None) -> None:
    """Make `threads` this process's set-up threads (None: set-up runs on the calling thread)."""
    global _CURRENT
    _CURRENT = threads
