"""Running the jobs of a load (prepare.py) on worker processes, results in job order.

Why processes: the work is pure Python (mapping, profile validation, FHIRPath), so threads
would share one core; a pool of processes uses every core while the loading process reads
the source, resolves references and writes to the store. Workers are forked from a
`forkserver` that imported this module once (`spawn` where there is none): they start
without the loading process's threads, database connections or event loop, and without
importing the gateway again; each builds its :class:`Context` while the first pass runs.
As with any `multiprocessing` start method but `fork`, a script that loads must guard its
entry point with `if __name__ == "__main__":`.

`map` keeps at most `window` jobs in flight and pulls the next job from the producer only
when one is taken: memory stays flat whatever the size of the export, and every job is
created knowing all results taken before it (the loader's hints come from those).
With `count` 0 or 1 the jobs run inline, in the loading process: same code, no pool.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import os
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from multiprocessing.connection import wait
from multiprocessing.context import BaseContext
from pathlib import Path

from gateway.ingest.mapping import load_mappings
from gateway.ingest.prepare import Context, Job, Outcome, Validator, default_validator

JOBS_PER_WORKER = 3
"""Jobs in flight per worker: enough that workers never wait while the loader writes a batch."""
YOUNG_OBJECTS = 50_000
"""Allocations between two collections of the youngest generation during a load (Python's default
is 700). A load allocates millions of short-lived, acyclic objects (cells, resources, index rows,
unpickled outcomes) and holds large long-lived state; with the default, the collector spends a
sixth of the loading process's time re-scanning that state (measured, 2,000 subjects)."""

_context: Context | None = None
"""The worker process's context (set by `_start`)."""


def default_count() -> int:
    """One worker per CPU the process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@contextmanager
def fewer_collections() -> Iterator[None]:
    """The collector of this process tuned for a load (YOUNG_OBJECTS) until the block ends."""
    before = gc.get_threshold()
    gc.set_threshold(YOUNG_OBJECTS, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


def _start(mappings_dir: Path, validator: Validator | None) -> None:
    global _context
    _end_with_parent()
    gc.set_threshold(YOUNG_OBJECTS, *gc.get_threshold()[1:])
    _context = Context(load_mappings(mappings_dir), validator if validator is not None else default_validator())


def _end_with_parent() -> None:
    """A worker ends when the loading process does, however it ends: killed with SIGKILL, it runs
    no cleanup, and its workers would wait for jobs forever (keeping the forkserver alive too)."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="end-with-parent", daemon=True).start()


def _start_method() -> BaseContext:
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])  # no effect once the server runs: it has imported us already
    return context


def _run(job: Job) -> list[Outcome]:
    assert _context is not None, "worker not started"
    return _context.run(job)


def _ready() -> None:
    """A no-op job: submitting one per worker starts them all before the first real job."""


class Workers:
    """The jobs' runner for one load: a process pool, or the loading process itself."""

    def __init__(self, count: int, context: Context, mappings_dir: Path, validator: Validator | None) -> None:
        """`context` runs jobs inline; workers build their own from `mappings_dir` and `validator`
        (pickled to them; None: each builds the default one)."""
        self.context = context
        self.window = max(1, count) * JOBS_PER_WORKER
        self._pool = None if count <= 1 else ProcessPoolExecutor(
            count, mp_context=_start_method(), initializer=_start, initargs=(mappings_dir, validator))
        if self._pool is not None:
            for _ in range(count):
                self._pool.submit(_ready)

    async def map(self, jobs: AsyncIterator[Job]) -> AsyncIterator[tuple[Job, list[Outcome]]]:
        """(job, its outcomes) for every job of `jobs`, in order."""
        if self._pool is None:
            async for job in jobs:
                yield job, self.context.run(job)
            return
        loop = asyncio.get_running_loop()
        flight: deque[tuple[Job, asyncio.Future[list[Outcome]]]] = deque()
        exhausted = False
        while True:
            while not exhausted and len(flight) < self.window:
                job = await anext(jobs, None)
                if job is None:
                    exhausted = True
                else:
                    flight.append((job, loop.run_in_executor(self._pool, _run, job)))
            if not flight:
                return
            job, future = flight.popleft()
            yield job, await future

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

