"""Which part of a session each received ASGI message is for: sans-I/O.

:meth:`Demux.receive` turns one message from ``receive()`` into a list of *effects* (data
for a stream, a new peer stream to admit or refuse, the reply to an open, a reset, a
datagram, the end...), and never calls back into the session: the session's reader
applies the effects. So the rules of the contract as a session sees them (what is a
violation, what is late and ignored) are testable with plain values, like ``protocol/``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from ..asgi import ReceiveEvent, unknown_message
from ..protocol.ids import is_unidirectional, opener_bit
from .constants import RETIRED_STREAM_MEMORY
from .state import Side


class Sides(Protocol):
    """What the demultiplexer reads of a known stream."""

    @property
    def receive_side(self) -> Side | None: ...

    @property
    def send_side(self) -> Side | None: ...


@dataclass(slots=True)
class NewStream:
    """A peer stream to admit: make it, queue it for the app, then apply its :class:`Data`."""

    stream_id: int
    bidirectional: bool


@dataclass(slots=True)
class Refuse:
    """A peer stream over the session's limits: stop (and reset) it unseen."""

    stream_id: int
    bidirectional: bool


@dataclass(slots=True)
class Data:
    """Payload (and maybe the FIN) for a stream whose receiving side is open."""

    stream_id: int
    data: bytes
    end_stream: bool


@dataclass(slots=True)
class Opened:
    """The reply to the oldest pending open, matching it."""

    stream_id: int
    bidirectional: bool


@dataclass(slots=True)
class OpenFailed:
    """A reply that does not match the oldest pending open: that open fails."""

    stream_id: int


@dataclass(slots=True)
class PeerReset:
    stream_id: int
    code: int | None


@dataclass(slots=True)
class PeerStopped:
    stream_id: int
    code: int | None


@dataclass(slots=True)
class Datagram:
    data: bytes


@dataclass(slots=True)
class Drain:
    pass


@dataclass(slots=True)
class Disconnect:
    code: int
    reason: str
    cause: str | None


@dataclass(slots=True)
class Violation:
    """The server broke the contract: log and count it, and go on."""

    text: str


Effect = (
    NewStream
    | Refuse
    | Data
    | Opened
    | OpenFailed
    | PeerReset
    | PeerStopped
    | Datagram
    | Drain
    | Disconnect
    | Violation
)


class Demux:
    """The received-message rules of one session.

    It remembers the ids of streams that ended or were refused (the last
    :data:`~.constants.RETIRED_STREAM_MEMORY`), so that late events for them are ignored
    rather than taken for new peer streams; everything else it is told per message.
    """

    __slots__ = (
        "_memory",
        "_retired",
        "local_bit",
    )

    def __init__(self, *, local_bit: int, memory: int = RETIRED_STREAM_MEMORY) -> None:
        self.local_bit = local_bit
        """Bit 0 of the stream ids this end opens (1 for a server)."""
        self._memory = memory
        self._retired: OrderedDict[int, None] | None = None
        """Made by the first stream that ends: an idle session holds none."""

    def retire(self, stream_id: int) -> None:
        """The stream is over for the session; later events for it are late."""
        retired = self._retired
        if retired is None:
            self._retired = retired = OrderedDict()
        retired[stream_id] = None
        if len(retired) > self._memory:
            retired.popitem(last=False)

    def is_local(self, stream_id: int) -> bool:
        return opener_bit(stream_id) == self.local_bit

    def receive(
        self,
        message: ReceiveEvent,
        *,
        streams: Mapping[int, Sides],
        admit: bool,
        oldest_open: bool | None,
    ) -> list[Effect]:
        """The effects of ``message``. ``streams``: the session's live streams; ``admit``:
        whether a new peer stream fits the session's limits; ``oldest_open``: the kind
        (bidirectional?) of the oldest pending open, ``None`` if there is none.

        Keys a server may leave out are read with their defaults; a message of a type
        the contract does not have (or of no type) is a :class:`Violation`, not an error."""
        try:
            match message["type"]:
                case "webtransport.stream.receive":
                    return self._data(
                        message["stream"],
                        message.get("data", b""),
                        message.get("end_stream", False),
                        streams,
                        admit,
                    )
                case "webtransport.datagram.receive":
                    return [Datagram(message["data"])]
                case "webtransport.stream.opened":
                    return self._opened(message["stream"], message["bidirectional"], oldest_open)
                case "webtransport.stream.reset":
                    return self._reset(message["stream"], message.get("code"), streams)
                case "webtransport.stream.stop_sending":
                    return self._stop(message["stream"], message.get("code"), streams)
                case "webtransport.drain":
                    return [Drain()]
                case "webtransport.disconnect":
                    code, reason = message.get("code", 0), message.get("reason", "")
                    return [Disconnect(code, reason, message.get("cause"))]
                case "webtransport.connect":
                    return [Violation("unexpected ASGI message 'webtransport.connect'")]
                case _:
                    return [Violation(unknown_message(message))]
        except KeyError:
            if "type" in message:
                raise  # a key of the message's own type is missing: the server is broken
            return [Violation("unexpected ASGI message None")]

    def _data(
        self, stream_id: int, data: bytes, end: bool, streams: Mapping[int, Sides], admit: bool
    ) -> list[Effect]:
        stream = streams.get(stream_id)
        if stream is None:
            if self._retired is not None and stream_id in self._retired:
                return []  # in flight when the stream ended or was refused
            if self.is_local(stream_id):
                return [Violation(f"data for stream {stream_id}, which we never opened")]
            bidirectional = not is_unidirectional(stream_id)
            if not admit:
                self.retire(stream_id)
                return [Refuse(stream_id, bidirectional)]
            return [NewStream(stream_id, bidirectional), Data(stream_id, data, end)]
        side = stream.receive_side
        if side is None:
            return [Violation(f"data for our send-only stream {stream_id}")]
        if side is Side.STOPPED:
            return []  # we sent STOP_SENDING; late data is discarded
        if side is not Side.OPEN:
            return [Violation(f"data for stream {stream_id} after its {side.value}")]
        return [Data(stream_id, data, end)]

    def _opened(self, stream_id: int, bidirectional: bool, oldest: bool | None) -> list[Effect]:
        if oldest is None:
            return [Violation(f"stream.opened for stream {stream_id} without a pending open")]
        if (
            oldest != bidirectional
            or is_unidirectional(stream_id) == bidirectional
            or not self.is_local(stream_id)
        ):
            return [
                Violation(
                    f"stream.opened reply (stream {stream_id}, bidirectional={bidirectional}) "
                    f"does not match the oldest open (bidirectional={oldest})"
                ),
                OpenFailed(stream_id),
            ]
        return [Opened(stream_id, bidirectional)]

    def _reset(
        self, stream_id: int, code: int | None, streams: Mapping[int, Sides]
    ) -> list[Effect]:
        stream = streams.get(stream_id)
        if stream is None:
            return []  # ended, refused, or reset before it was announced: nothing to tell
        if stream.receive_side is None:
            return [Violation(f"reset of our send-only stream {stream_id}")]
        if stream.receive_side is not Side.OPEN:
            return []  # e.g. the peer's answer to our STOP_SENDING
        return [PeerReset(stream_id, code)]

    def _stop(self, stream_id: int, code: int | None, streams: Mapping[int, Sides]) -> list[Effect]:
        stream = streams.get(stream_id)
        if stream is None:
            return []
        if stream.send_side is None:
            return [Violation(f"STOP_SENDING for stream {stream_id}, which we cannot write")]
        return [PeerStopped(stream_id, code)]
