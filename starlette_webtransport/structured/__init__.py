"""Typed messages over WebTransport streams and datagrams, with msgspec Structs.

A :class:`Schema` maps type ids to Struct types and builds the serializer's codecs
once; the transports frame each message with its type id so the receiver knows which
decoder to use. ``docs/structured.md`` specifies the wire format for other peers,
and ``static/structured.js`` implements it for browsers.
"""

from .datagrams import DATAGRAM_HEADER, Datagrams, StructuredDatagramTransport
from .errors import (
    MESSAGE_TOO_LARGE_CODE,
    EndOfStream,
    MessageDecodeError,
    MessageTooLargeError,
    MessageValidationError,
    StructuredError,
    TruncatedMessageError,
    UnknownMessageTypeError,
)
from .schema import MAX_TYPE_ID, Registry, Schema
from .serializers import JSONSerializer, MsgPackSerializer, Serializer
from .streams import (
    DEFAULT_MAX_MESSAGE_SIZE,
    HEADER,
    BidirectionalStream,
    ReceiveStream,
    SendStream,
    StructuredReceiveStream,
    StructuredSendStream,
    StructuredStream,
)

__all__ = [
    "DATAGRAM_HEADER",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "HEADER",
    "MAX_TYPE_ID",
    "MESSAGE_TOO_LARGE_CODE",
    "BidirectionalStream",
    "Datagrams",
    "EndOfStream",
    "JSONSerializer",
    "MessageDecodeError",
    "MessageTooLargeError",
    "MessageValidationError",
    "MsgPackSerializer",
    "ReceiveStream",
    "Registry",
    "Schema",
    "SendStream",
    "Serializer",
    "StructuredDatagramTransport",
    "StructuredError",
    "StructuredReceiveStream",
    "StructuredSendStream",
    "StructuredStream",
    "TruncatedMessageError",
    "UnknownMessageTypeError",
]
