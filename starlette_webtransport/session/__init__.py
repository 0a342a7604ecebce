"""WebTransport sessions over the ASGI contract (``docs/asgi-webtransport.md``).

Importable without the server, the client, Starlette integration or ``structured``:
the session needs nothing but a scope and the ``receive``/``send`` callables.
"""

from . import constants
from .config import SessionConfig
from .datagram import WebTransportDatagramTransport
from .events import Event, EventEmitter, EventHandler, EventType
from .exceptions import (
    DatagramError,
    DatagramTooLargeError,
    ProtocolError,
    SessionClosedError,
    SessionError,
    SessionLimitError,
    SessionRejectedError,
    StreamClosedError,
    StreamError,
    StreamLimitError,
    StreamResetError,
    StreamStoppedError,
    WebTransportError,
    WebTransportTimeoutError,
)
from .manager import SessionManager
from .session import ASGIChannel, ConnectionInfo, SessionStats, WebTransportSession
from .state import SessionState, StreamDirection, StreamState
from .stream import (
    StreamType,
    WebTransportReceiveStream,
    WebTransportSendStream,
    WebTransportStream,
)
from .tasks import DatagramHandler, StreamHandler, serve_streams

__all__ = [
    "ASGIChannel",
    "ConnectionInfo",
    "DatagramError",
    "DatagramHandler",
    "DatagramTooLargeError",
    "Event",
    "EventEmitter",
    "EventHandler",
    "EventType",
    "ProtocolError",
    "SessionClosedError",
    "SessionConfig",
    "SessionError",
    "SessionLimitError",
    "SessionManager",
    "SessionRejectedError",
    "SessionState",
    "SessionStats",
    "StreamClosedError",
    "StreamDirection",
    "StreamError",
    "StreamHandler",
    "StreamLimitError",
    "StreamResetError",
    "StreamState",
    "StreamStoppedError",
    "StreamType",
    "WebTransportDatagramTransport",
    "WebTransportError",
    "WebTransportReceiveStream",
    "WebTransportSendStream",
    "WebTransportSession",
    "WebTransportStream",
    "WebTransportTimeoutError",
    "constants",
    "serve_streams",
]
