"""Where a request's latency goes inside a server: its critical path, phase by phase.

One request at a time is a ping-pong, so a server's rate is set by the time from the
request's packet arriving to the answer's ``sendto``, plus the client's own time per
cycle. cProfile inflates every Python call and cannot say what lies on that path; this
recorder times only a handful of calls, all public names, so its own cost is a few
microseconds per request:

- ``socket.socket.recvfrom``: the first read after the loop was idle starts the path;
- ``QuicConnection.receive_datagram`` and ``QuicConnection.datagrams_to_send`` (the base
  class's, so a subclass's own additions count as the server's, not aioquic's): aioquic's
  own work per packet in and per transmit pass;
- ``H3Connection.handle_event``: aioquic's HTTP/3 parsing of what a packet brought, which
  raw aioquic and our server both run;
- ``socket.socket.sendto``: the first one ends the path (the kernel's loopback delivery
  to the client, inside it, is shown apart);
- ``selectors.EpollSelector.select`` with a timeout: the loop has gone idle, which ends
  the work done after the answer left, and drops a path that sent nothing (a packet that
  only acknowledged).

``bench/servers.py --timeline`` installs it and prints its totals as one JSON line on
SIGHUP; ``bench/critical_path.py`` drives it.
"""

from __future__ import annotations

import selectors
import socket
import time
from collections.abc import Callable
from typing import Any

from aioquic.h3.connection import H3Connection
from aioquic.quic.connection import QuicConnection

_clock = time.perf_counter_ns

FIELDS = ("answers", "dropped", "path", "receive", "h3", "transmit", "sendto", "after")
"""Totals, nanoseconds except the two counts: answers sent, paths that sent nothing,
critical path, aioquic's receive_datagram, H3 handle_event and datagrams_to_send on it,
the sendto that ended it, and the work after it until the loop went idle."""

_AIOQUIC = ("receive", "h3", "transmit")


class Timeline:
    def __init__(self) -> None:
        self.totals = dict.fromkeys(FIELDS, 0)
        self._start: int | None = None
        self._spent = dict.fromkeys(_AIOQUIC, 0)
        """aioquic's time on the current path."""
        self._answered_at: int | None = None

    def report(self) -> dict[str, int]:
        """The totals since the last report."""
        totals, self.totals = self.totals, dict.fromkeys(FIELDS, 0)
        return totals

    def install(self) -> None:
        recvfrom = socket.socket.recvfrom
        sendto = socket.socket.sendto
        select = selectors.EpollSelector.select
        receive_datagram = QuicConnection.receive_datagram
        datagrams_to_send = QuicConnection.datagrams_to_send
        handle_event = H3Connection.handle_event

        def timed_recvfrom(sock: socket.socket, *args: Any) -> Any:
            if self._start is None:
                self._start = _clock()
            return recvfrom(sock, *args)

        def timed_sendto(sock: socket.socket, *args: Any) -> int:
            began = _clock()
            sent = sendto(sock, *args)
            ended = _clock()
            if self._start is not None:
                totals = self.totals
                totals["answers"] += 1
                totals["path"] += ended - self._start
                for field in _AIOQUIC:
                    totals[field] += self._spent[field]
                totals["sendto"] += ended - began
                self._forget()
                self._answered_at = ended
            return sent

        def timed_select(selector: selectors.EpollSelector, timeout: float | None = None) -> Any:
            if timeout is None or timeout > 0:  # nothing ready to run: idle until an event
                now = _clock()
                if self._answered_at is not None:
                    self.totals["after"] += now - self._answered_at
                    self._answered_at = None
                if self._start is not None:
                    self.totals["dropped"] += 1
                    self._forget()
            return select(selector, timeout)

        def timed(method: Callable[..., Any], field: str) -> Callable[..., Any]:
            def wrapper(connection: Any, *args: Any, **kwargs: Any) -> Any:
                began = _clock()
                try:
                    return method(connection, *args, **kwargs)
                finally:
                    if self._start is not None:
                        self._spent[field] += _clock() - began

            return wrapper

        socket.socket.recvfrom = timed_recvfrom  # type: ignore[method-assign,assignment]
        socket.socket.sendto = timed_sendto  # type: ignore[method-assign,assignment]
        selectors.EpollSelector.select = timed_select  # type: ignore[method-assign,assignment]
        QuicConnection.receive_datagram = timed(receive_datagram, "receive")  # type: ignore[method-assign]
        QuicConnection.datagrams_to_send = timed(datagrams_to_send, "transmit")  # type: ignore[method-assign]
        H3Connection.handle_event = timed(handle_event, "h3")  # type: ignore[method-assign]

    def _forget(self) -> None:
        self._start = None
        self._spent = dict.fromkeys(_AIOQUIC, 0)
