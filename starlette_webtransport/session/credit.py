"""How much of each stream the app consumed, to report to the server (spec 1.1).

With a server that offers it (``extensions.webtransport.consumed``), a stream's receive
credit goes back to the peer when the app reads that stream, not when the session's
reader takes the event; so the reader never has to stop for one full stream, and the
peer can never send more than a window ahead of what the app read. Reporting every read
would cost a message per read, so counts are batched: a stream's report is due once it
reaches :data:`~.constants.CONSUMED_REPORT_BYTES`, and at once when the app is about to
wait on the stream or has read it to the end (a stream that waits while holding
unreported bytes could otherwise starve the shared connection window). No I/O here: the
session sends what :meth:`ConsumedCounts.pop_due` returns.
"""

from __future__ import annotations


class ConsumedCounts:
    """Bytes read per stream and not reported yet.

    A count can go below zero: data handed back to the buffer (a read cancelled half-way
    restores what it took) after its count was already reported is subtracted, so it is
    not reported twice when it is read again.
    """

    __slots__ = (
        "_counts",
        "batch",
        "due_ids",
    )

    def __init__(self, batch: int) -> None:
        if batch < 1:
            raise ValueError(f"the report batch must be at least one byte, got {batch}")
        self.batch = batch
        self._counts: dict[int, int] = {}
        self.due_ids: dict[int, None] = {}
        """Streams whose report is due, in the order they became due (read it, never
        change it: the same dict for the counts' whole life)."""

    def taken(self, stream_id: int, size: int, *, flush: bool = False) -> bool:
        """The app read ``size`` bytes of the stream (or dropped them); True when its
        report became due. ``flush``: report what the stream has, whatever the batch."""
        count = self._counts.get(stream_id, 0) + size
        if size:
            self._set(stream_id, count)
        if (count >= self.batch or (flush and count > 0)) and stream_id not in self.due_ids:
            self.due_ids[stream_id] = None
            return True
        return False

    def restored(self, stream_id: int, size: int) -> None:
        """``size`` bytes the app took went back to the stream's buffer unread."""
        self._set(stream_id, self._counts.get(stream_id, 0) - size)

    def flush(self, stream_id: int) -> bool:
        """Report what the stream has, whatever the batch; True when that is new work."""
        return self.taken(stream_id, 0, flush=True)

    def pop_due(self) -> tuple[int, int] | None:
        """The next report to send, ``(stream id, bytes)``, counted as sent; ``None``
        when none is due. One at a time, so that a report that could not be sent is
        the only one to :meth:`requeue`."""
        due = self.due_ids
        while due:
            stream_id = next(iter(due))
            del due[stream_id]
            count = self._counts.get(stream_id, 0)
            if count > 0:
                del self._counts[stream_id]
                return stream_id, count
        return None

    def due(self) -> list[tuple[int, int]]:
        """The reports to send now, ``(stream id, bytes)``; they count as sent."""
        reports = []
        while (report := self.pop_due()) is not None:
            reports.append(report)
        return reports

    def requeue(self, stream_id: int, size: int) -> None:
        """A report from :meth:`pop_due` was not sent: its bytes are due again."""
        self._set(stream_id, self._counts.get(stream_id, 0) + size)
        self.due_ids[stream_id] = None

    def pending(self, stream_id: int) -> int:
        """Bytes of the stream read and not reported yet (diagnostics, tests)."""
        return self._counts.get(stream_id, 0)

    def clear(self) -> None:
        """The session ended: the server returns all credit by itself."""
        self._counts.clear()
        self.due_ids.clear()

    def _set(self, stream_id: int, count: int) -> None:
        if count:
            self._counts[stream_id] = count
        else:
            self._counts.pop(stream_id, None)
