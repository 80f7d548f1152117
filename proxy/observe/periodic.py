"""Writers that batch in memory and flush off the request path: one task a writer, flushed once more
when it stops (usage figures, the ledger), and the one way to cancel such a task and wait for it."""

from __future__ import annotations

import asyncio


async def cancel_and_wait(task: asyncio.Task | None) -> None:
    """Cancel ``task`` and wait until it has ended (its cancellation is not an error)."""
    if task is None:
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass


class PeriodicFlush:
    """``flush()`` every ``flush_seconds`` in a task of its own, and a last one on :meth:`stop`."""

    flush_seconds: float = 2.0
    _task: asyncio.Task | None = None

    async def flush(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.flush_seconds)
            await self.flush()

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        await self.flush()
