"""The session layer's exceptions.

Everything derives from :class:`WebTransportError` so an app can catch the library's
failures in one place; the leaves carry what the peer said (codes, status) because
that is what an app needs to decide what to do next.
"""

from __future__ import annotations

from ..asgi import SessionEnd


class WebTransportError(Exception):
    """Base class of every error raised by the session layer."""


class WebTransportTimeoutError(WebTransportError, TimeoutError):
    """``ready()`` or ``create_*_stream()`` did not complete in time."""


class ProtocolError(WebTransportError):
    """The ASGI server broke the contract of ``docs/asgi-webtransport.md``."""


class SessionError(WebTransportError):
    """Base class of session-level failures."""


class SessionClosedError(SessionError, SessionEnd):
    """The session is closed (or closing); ``code``/``reason`` are the close's, when known.

    It is a :class:`~starlette_webtransport.asgi.SessionEnd`: an app that ends with it, or
    with an exception group made only of it, has ended normally (no error is logged)."""

    def __init__(self, message: str, *, code: int | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


class SessionRejectedError(SessionError):
    """The server answered the CONNECT request with a non-2xx ``status``."""

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        super().__init__(f"WebTransport session rejected with HTTP status {status}")
        self.status = status
        self.headers = headers or []


class SessionLimitError(SessionError):
    """A :class:`~.manager.SessionManager` already holds ``max_sessions`` sessions."""


class StreamError(WebTransportError):
    """Base class of stream-level failures; ``stream_id`` names the stream."""

    def __init__(self, message: str, *, stream_id: int | None = None) -> None:
        super().__init__(message)
        self.stream_id = stream_id


class StreamResetError(StreamError):
    """The peer reset the stream (RESET_STREAM). ``code`` is its application error code,
    or ``None`` when the peer's HTTP/3 code was outside the WebTransport range."""

    def __init__(self, code: int | None, *, stream_id: int | None = None) -> None:
        super().__init__(
            f"stream {stream_id} was reset by the peer (code {code})", stream_id=stream_id
        )
        self.code = code


class StreamStoppedError(StreamError):
    """The peer asked us to stop sending (STOP_SENDING); ``code`` as for resets."""

    def __init__(self, code: int | None, *, stream_id: int | None = None) -> None:
        super().__init__(
            f"stream {stream_id} was stopped by the peer (STOP_SENDING, code {code})",
            stream_id=stream_id,
        )
        self.code = code


class StreamClosedError(StreamError):
    """This side already closed, reset or stopped the stream, so the call cannot proceed."""


class StreamLimitError(StreamError):
    """``create_*_stream()`` would exceed ``SessionConfig.max_streams``."""


class DatagramError(WebTransportError):
    """Base class of datagram failures."""


class DatagramTooLargeError(DatagramError, ValueError):
    """A datagram exceeds ``max_datagram_size``; nothing was sent."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"datagram of {size} bytes exceeds the session's max_datagram_size of {limit} bytes"
        )
        self.size = size
        self.limit = limit
