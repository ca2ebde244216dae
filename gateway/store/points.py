"""Reads by id coalesced under concurrency: one statement for the reads that queued up.

A read by id is a short statement, and at concurrency 16 the gateway and PostgreSQL spend
more on round trips (a statement each way, a pooled connection, a wake-up of a backend)
than on the rows. Here at most `slots` reads are in flight; reads arriving meanwhile wait,
and all that waited go as one statement when a slot frees. An idle gateway sends each read
at once: nothing waits for a batch to fill (a timer-based batcher would add its delay to
every read). Two waiting reads of the same resource share one answer.

Only for a client/server database: SQLite answers in the calling thread, so nothing is in
flight while another read arrives.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

Key = tuple[str, str]
Row = Sequence[Any]


class PointReads:
    def __init__(self, one: Callable[[str, str], Awaitable[Row | None]],
                 many: Callable[[list[str], list[str]], Awaitable[list[Row]]], slots: int, batch: int = 100) -> None:
        """`one(type, id)`: the row or None; `many(types, ids)`: the rows found, each starting with
        (type, id); `slots`: statements in flight at most; `batch`: keys per statement at most."""
        self._one = one
        self._many = many
        self._slots = slots
        self._batch = batch
        self._busy = 0
        self._waiting: dict[Key, list[asyncio.Future[Row | None]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def read(self, type_: str, id_: str) -> Row | None:
        if self._busy < self._slots and not self._waiting:
            self._busy += 1
            try:
                return await self._one(type_, id_)
            finally:
                self._freed()
        # A future per waiting read, so a cancelled request (its client went away) cancels only its own.
        future: asyncio.Future[Row | None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault((type_, id_), []).append(future)
        return await future

    def _freed(self) -> None:
        """A statement finished: the waiting reads (up to a batch) take its slot."""
        self._busy -= 1
        if not self._waiting or self._busy >= self._slots:
            return
        keys = list(self._waiting)[: self._batch]
        futures = [self._waiting.pop(key) for key in keys]
        self._busy += 1
        task = asyncio.get_running_loop().create_task(self._answer(keys, futures))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, keys: list[Key], waiting: list[list[asyncio.Future[Row | None]]]) -> None:
        try:
            rows = await self._many([k[0] for k in keys], [k[1] for k in keys])
        except BaseException as exc:  # every waiting request answers with the error, as a read of its own would
            for futures in waiting:
                for future in futures:
                    if not future.done():
                        future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            found = {(row[0], row[1]): row for row in rows}
            for key, futures in zip(keys, waiting, strict=True):
                for future in futures:
                    if not future.done():
                        future.set_result(found.get(key))
        finally:
            self._freed()
