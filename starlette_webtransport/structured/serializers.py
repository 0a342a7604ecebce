"""Payload serializers: factories of encoders and per-type decoders.

A serializer is asked once per :class:`~starlette_webtransport.structured.Schema` for an
encoder and for one decoder per registered type, so the per-message path is a dict
lookup and a call into msgspec. Per-type decoders are also what makes untagged Structs
work: ``msgspec`` cannot decode a ``Union`` of arbitrary Structs, but the frame's type
id already says which one to expect.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import msgspec

T = TypeVar("T")


class Serializer(Protocol):
    """Builds the functions that turn messages into payload bytes and back.

    Decoders receive a ``memoryview`` (a zero-copy slice of the received data). They
    must raise :class:`msgspec.ValidationError` when the payload does not match the
    type and :class:`msgspec.DecodeError` when it is malformed; the transports turn
    those into :class:`~starlette_webtransport.structured.MessageValidationError` and
    :class:`~starlette_webtransport.structured.MessageDecodeError`.
    """

    def encoder(self) -> Callable[[Any], bytes]: ...

    def decoder(self, type_: type[T], /) -> Callable[[memoryview], T]: ...


class MsgPackSerializer:
    """MessagePack payloads: compact and fast; the default choice between Python peers."""

    def encoder(self) -> Callable[[Any], bytes]:
        return msgspec.msgpack.Encoder().encode

    def decoder(self, type_: type[T], /) -> Callable[[memoryview], T]:
        return msgspec.msgpack.Decoder(type_).decode

    def __repr__(self) -> str:
        return "MsgPackSerializer()"


class JSONSerializer:
    """UTF-8 JSON payloads: what ``static/structured.js`` speaks to browsers."""

    def encoder(self) -> Callable[[Any], bytes]:
        return msgspec.json.Encoder().encode

    def decoder(self, type_: type[T], /) -> Callable[[memoryview], T]:
        return msgspec.json.Decoder(type_).decode

    def __repr__(self) -> str:
        return "JSONSerializer()"
