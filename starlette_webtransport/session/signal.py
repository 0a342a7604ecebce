"""A flag that tasks wait for: :class:`asyncio.Event`'s semantics at a fraction of its size.

A session has a few such flags and every stream three, and most of them are never waited
on. ``asyncio.Event`` gives each instance a ``__dict__`` and a deque of waiters (close to
a kilobyte together); :class:`Signal` has two slots and makes a future only for a task
that actually waits. Only public asyncio API is used (``loop.create_future``).
"""

from __future__ import annotations

import asyncio


class Signal:
    """``set()``/``clear()``/``is_set()``/``await wait()``, as :class:`asyncio.Event`:
    ``set()`` wakes every waiter, and a waiter woken by it returns even if the flag is
    cleared again before it runs."""

    __slots__ = ("_value", "_waiters")

    def __init__(self, value: bool = False) -> None:
        self._value = value
        self._waiters: list[asyncio.Future[None]] | None = None

    def __repr__(self) -> str:
        waiters = len(self._waiters) if self._waiters else 0
        return f"<Signal {'set' if self._value else 'unset'}, {waiters} waiting>"

    def is_set(self) -> bool:
        return self._value

    def set(self) -> None:
        if self._value:
            return
        self._value = True
        waiters, self._waiters = self._waiters, None
        if waiters:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def clear(self) -> None:
        self._value = False

    async def wait(self) -> None:
        if self._value:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = [waiter]
        else:
            self._waiters.append(waiter)
        try:
            await waiter
        finally:
            waiters = self._waiters
            if waiters is not None and waiter in waiters:  # cancelled, or the loop stopped
                waiters.remove(waiter)
                if not waiters:
                    self._waiters = None
