"""The registry of message types and the codecs built from it once.

A :class:`Schema` is the whole contract between two peers: which type id means which
Struct, and how payloads are serialized. It is built once (usually at import time)
and shared by every transport that speaks it, so encoders and decoders are never
rebuilt per stream or per message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Generic, TypeVar

import msgspec

from .errors import MessageDecodeError, MessageValidationError, UnknownMessageTypeError
from .serializers import Serializer

T = TypeVar("T")

MAX_TYPE_ID = 0xFFFF
"""Type ids travel as a big-endian u16 (``docs/structured.md``)."""


class Registry(Mapping[int, type[T]]):
    """A checked one-to-one mapping of type ids to Struct types.

    Encoding looks a message's exact class up to find its id, and decoding looks the
    id up to find the class, so both directions must be unambiguous; the checks run
    here, at construction, instead of surfacing as a wrong type on the wire.
    """

    __slots__ = ("_types",)

    def __init__(self, registry: Mapping[int, type[T]]) -> None:
        if not registry:
            raise ValueError("the registry must contain at least one message type")
        types: dict[int, type[T]] = {}
        ids: dict[type[T], int] = {}
        for type_id, type_ in registry.items():
            if isinstance(type_id, bool) or not isinstance(type_id, int):
                raise TypeError(f"type id {type_id!r} is not an int")
            if not 0 <= type_id <= MAX_TYPE_ID:
                raise ValueError(
                    f"type id {type_id} does not fit the wire's u16 field (0..{MAX_TYPE_ID})"
                )
            if not (isinstance(type_, type) and issubclass(type_, msgspec.Struct)):
                raise TypeError(
                    f"type id {type_id} maps to {type_!r}, which is not a msgspec.Struct subclass"
                )
            if type_ in ids:
                raise ValueError(
                    f"{type_.__qualname__} is registered twice, as type ids {ids[type_]} "
                    f"and {type_id}; the registry must be one-to-one"
                )
            types[type_id] = type_
            ids[type_] = type_id
        self._types = types

    def __getitem__(self, type_id: int) -> type[T]:
        return self._types[type_id]

    def __iter__(self) -> Iterator[int]:
        return iter(self._types)

    def __len__(self) -> int:
        return len(self._types)

    def __repr__(self) -> str:
        entries = ", ".join(f"{i}: {t.__qualname__}" for i, t in self._types.items())
        return f"Registry({{{entries}}})"


class Schema(Generic[T]):
    """Message types by id plus the serializer's codecs for them, built once.

    ``T`` is the union of the registered types. mypy joins the values of a dict
    literal to their common base, so name the union to get precise types::

        Message = Ping | Pong
        schema = Schema[Message]({1: Ping, 2: Pong}, serializer=MsgPackSerializer())
    """

    __slots__ = ("_decoders", "_encode", "_ids", "registry", "serializer")

    def __init__(self, registry: Mapping[int, type[T]], *, serializer: Serializer) -> None:
        self.registry = Registry(registry)
        self.serializer = serializer
        self._encode = serializer.encoder()
        self._ids = {type_: type_id for type_id, type_ in self.registry.items()}
        self._decoders: dict[int, tuple[type[T], Callable[[memoryview], T]]] = {
            type_id: (type_, serializer.decoder(type_)) for type_id, type_ in self.registry.items()
        }

    def encode(self, obj: T) -> tuple[int, bytes]:
        """Return the type id and payload of ``obj``."""
        try:
            type_id = self._ids[type(obj)]
        except KeyError:
            raise TypeError(f"{type(obj).__qualname__} is not in the message registry") from None
        return type_id, self._encode(obj)

    def decode(self, type_id: int, payload: memoryview) -> T:
        """Decode one payload; the caller has already consumed its frame."""
        try:
            type_, decode = self._decoders[type_id]
        except KeyError:
            raise UnknownMessageTypeError(type_id) from None
        try:
            return decode(payload)
        except msgspec.ValidationError as exc:
            raise MessageValidationError(type_id, type_, str(exc)) from exc
        except msgspec.DecodeError as exc:
            raise MessageDecodeError(type_id, type_, str(exc)) from exc

    def __repr__(self) -> str:
        return f"Schema({self.registry!r}, serializer={self.serializer!r})"


def resolve_schema(
    schema: Schema[T] | None,
    serializer: Serializer | None,
    registry: Mapping[int, type[T]] | None,
) -> Schema[T]:
    """Take a shared, prebuilt schema or the ``serializer=, registry=`` pair.

    The pair is what ``session.create_structured_stream`` passes; a schema built once
    and shared is the cheaper form when many streams speak the same messages.
    """
    if schema is not None:
        if serializer is not None or registry is not None:
            raise TypeError("pass either schema= or serializer= and registry=, not both")
        return schema
    if serializer is None or registry is None:
        raise TypeError("pass schema=, or both serializer= and registry=")
    return Schema(registry, serializer=serializer)
