"""Errors for typed messages, one class per way a peer's bytes can be wrong.

Each error says what was received and leaves the transport usable when it can be:
a frame that fails to decode has already been consumed, so the next ``receive_obj``
reads the next message. Only :class:`MessageTooLargeError` ends a stream's receiving
side before the peer does, because skipping an oversized frame would mean reading a
payload we refused to buffer.
"""

from __future__ import annotations

MESSAGE_TOO_LARGE_CODE = 0x53540001
"""WebTransport application error code sent with STOP_SENDING when a peer announces a
frame longer than ``max_message_size``. Part of the wire format (``docs/structured.md``),
so a peer can tell this refusal from its application's own codes."""


class StructuredError(Exception):
    """Base class for bad structured input; catch it to survive a misbehaving peer."""


class UnknownMessageTypeError(StructuredError):
    """A frame or datagram carried a type id that is not in the registry."""

    def __init__(self, type_id: int) -> None:
        super().__init__(f"unknown message type id {type_id}")
        self.type_id = type_id


class MessageDecodeError(StructuredError):
    """A payload is not valid in the serializer's format (e.g. malformed JSON)."""

    def __init__(self, type_id: int, message_type: type, detail: str) -> None:
        super().__init__(f"cannot decode {message_type.__qualname__} (type id {type_id}): {detail}")
        self.type_id = type_id
        self.message_type = message_type
        self.detail = detail


class MessageValidationError(MessageDecodeError):
    """A payload is well-formed but does not match its registered type.

    ``detail`` is msgspec's message, which names what was expected and the field path,
    e.g. ``Expected `int`, got `str` - at `$.seq```.
    """


class MessageTooLargeError(StructuredError):
    """A message exceeds a size limit: ``size`` bytes against ``limit`` bytes."""

    def __init__(self, what: str, size: int, limit: int) -> None:
        super().__init__(f"{what} is {size} bytes, over the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class TruncatedMessageError(StructuredError):
    """The stream ended (FIN) or the datagram ended inside a frame."""

    def __init__(self, what: str, expected: int, received: int) -> None:
        super().__init__(f"{what} ended after {received} of {expected} bytes")
        self.expected = expected
        self.received = received


class EndOfStream(Exception):
    """The peer finished its sending side at a frame boundary: no more messages.

    ``async for`` turns it into the end of the loop. Named after ``anyio.EndOfStream``
    and not a :class:`StructuredError`, because a clean end is not bad input.
    """
