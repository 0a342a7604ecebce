"""What one server worker lets its peers make it hold, and for how long.

Every resource a peer can make us keep has a bound here; ``docs/reliability.md`` lists
each one with the behaviour that answers it. The values are plain settings so that
``serve(limits=Limits(...))`` and the CLI configure them in one place; the
:class:`ReceiveBudget` is the one piece of state that all connections of a worker share.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

MiB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Bounds in time and memory; the defaults suit a server on the open internet."""

    accept_timeout: float = 10.0
    """Seconds from a CONNECT to the app's accept or reject. Past it the server answers
    503 and cancels the app's task."""

    pending_streams: int = 16
    """Streams per connection held for sessions that are not open yet (CONNECT not
    arrived, or not accepted yet); more are refused with WT_BUFFERED_STREAM_REJECTED."""

    pending_bytes: int = 256 * 1024
    """Stream bytes per connection held that way; a stream that would exceed it is refused."""

    pending_datagrams: int = 16
    """Datagrams per connection held for sessions that are not open yet; more are dropped."""

    pending_timeout: float = 2.0
    """Seconds a stream waits for its session to open before it is refused."""

    receive_memory: int = 256 * MiB
    """Received stream and datagram bytes waiting for applications, summed over every
    connection of a worker. Past it no connection is granted new QUIC credit and received
    datagrams are dropped, until applications have consumed enough."""

    udp_receive_buffer: int = 4 * MiB
    """SO_RCVBUF asked for on each UDP socket, so handshake bursts are not dropped by the
    kernel (it may grant less; the server logs what it got). 0 keeps the kernel default."""

    udp_send_buffer: int = 4 * MiB
    """SO_SNDBUF asked for on each UDP socket. 0 keeps the kernel default."""

    idle_timeout: float = 7.0
    """Seconds without a packet from the peer after which its QUIC connection, and every
    session on it, is over (cause ``"timeout"``). It is advertised as ``max_idle_timeout``
    and QUIC uses the smaller of both ends' values, so a vanished peer (a killed browser
    tab, a dropped network) is noticed within ``keep_alive + idle_timeout`` seconds at
    most, instead of the 30 s to 60 s of browsers' and aioquic's defaults."""

    keep_alive: float = 2.0
    """Seconds without a packet from the peer after which the server sends a PING. The
    peer's acknowledgement keeps a live but idle session from timing out; keep it well
    under ``idle_timeout``. 0 sends none (an idle session then ends after
    ``idle_timeout``)."""

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not value >= 0:
                raise ValueError(f"Limits.{name} must not be negative, got {value!r}")
        if not self.idle_timeout > 0:
            raise ValueError("Limits.idle_timeout must be positive")
        if self.keep_alive >= self.idle_timeout:
            raise ValueError(
                f"Limits.keep_alive ({self.keep_alive:g} s) must be shorter than "
                f"idle_timeout ({self.idle_timeout:g} s), or idle sessions time out"
            )


@dataclass
class ReceiveBudget:
    """Received bytes that wait for applications, across every connection of a worker.

    Connections report what they hold (:meth:`take` / :meth:`give_back`) and ask before
    granting credit (:meth:`exhausted`); one that was refused registers a callback and is
    woken to grant once the total is back under half the cap, so that a stalled peer does
    not wait for a timer."""

    cap: int
    held: int = 0
    peak: int = 0
    stalled: dict[object, Callable[[], object]] = field(default_factory=dict)

    def take(self, size: int) -> None:
        self.held += size
        if self.held > self.peak:
            self.peak = self.held

    def give_back(self, size: int) -> None:
        self.held -= size
        if self.stalled and self.held <= self.cap // 2:
            stalled, self.stalled = self.stalled, {}
            for wake in stalled.values():
                wake()

    def exhausted(self) -> bool:
        return self.held >= self.cap
