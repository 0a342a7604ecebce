"""aioquic's HTTP/3 connection, set up for WebTransport on either end."""

from __future__ import annotations

from aioquic.h3.connection import FrameType, H3Connection, H3Stream, Setting
from aioquic.quic.connection import QuicConnection

from ..protocol.settings import FlowControlLimits, client_settings, server_settings
from .internals import remember_h3_stream

WT_CREDIT = FlowControlLimits()
"""WebTransport-level credit (draft-07 and later) granted to the peer in each session:
advertised in SETTINGS, then renewed with WT_MAX_DATA / WT_MAX_STREAMS as the application
consumes, so a peer that enforces it never stalls while the application keeps reading."""

MAX_SESSIONS = 100
"""WebTransport sessions a server lets one connection have open at once (WT_MAX_SESSIONS);
CONNECTs beyond it are reset with H3_REQUEST_REJECTED, as the draft says."""


_SHARED_SETTINGS: dict[tuple[tuple[int, int], ...], dict[int, int]] = {}
"""The SETTINGS dicts handed to aioquic, one per distinct content."""


class WebTransportH3Connection(H3Connection):
    """Sends the SETTINGS every peer draft keys on, and remembers our bidirectional
    WebTransport streams.

    ``limits`` is the WebTransport-level credit advertised to the peer; sessions renew it
    from there. ``max_sessions`` is what a server announces as WT_MAX_SESSIONS.
    """

    __slots__ = ("is_client", "limits", "max_sessions")  # not in aioquic's instance dict

    def __init__(
        self, quic: QuicConnection, limits: FlowControlLimits, *, max_sessions: int = MAX_SESSIONS
    ) -> None:
        self.limits = limits
        self.is_client = quic.configuration.is_client
        self.max_sessions = max_sessions
        """Announced in SETTINGS; the server adapter refuses CONNECTs beyond it."""
        super().__init__(quic, enable_webtransport=True)

    def _get_local_settings(self) -> dict[int, int]:
        settings = super()._get_local_settings()
        if self.is_client:
            # ENABLE_CONNECT_PROTOCOL is a server's promise to accept extended CONNECT;
            # aioquic sends it from clients too, browsers do not.
            del settings[Setting.ENABLE_CONNECT_PROTOCOL]
            settings.update(client_settings(self.limits))
        else:
            settings.update(server_settings(self.limits, max_sessions=self.max_sessions))
        # aioquic keeps the dict for the connection's life and only reads it: connections
        # with the same settings share one (over 500 bytes each, every connection).
        key = tuple(settings.items())
        if len(_SHARED_SETTINGS) >= 32 and key not in _SHARED_SETTINGS:
            _SHARED_SETTINGS.clear()  # only a process that varies its limits gets here
        return _SHARED_SETTINGS.setdefault(key, settings)

    def create_webtransport_stream(self, session_id: int, is_unidirectional: bool = False) -> int:
        """Open a stream, and for a bidirectional one remember that it is WebTransport.

        aioquic writes the stream header but keeps no state for a locally opened
        bidirectional stream, so the peer's replies on it would be parsed as HTTP/3
        frames and end the connection with H3_FRAME_ERROR.
        """
        stream_id = super().create_webtransport_stream(session_id, is_unidirectional)
        if not is_unidirectional:
            stream = H3Stream(stream_id)
            remember_h3_stream(self, stream)
            stream.frame_type = FrameType.WEBTRANSPORT_STREAM
            stream.session_id = session_id
        return stream_id
