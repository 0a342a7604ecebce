from __future__ import annotations

import dataclasses
from typing import Any, Generic, TypeVar

import msgspec
import pytest

from starlette_webtransport.structured import (
    JSONSerializer,
    MessageValidationError,
    MsgPackSerializer,
    Registry,
    Schema,
    UnknownMessageTypeError,
)

from .messages import REGISTRY, Chat, Empty, Point, Shape

T = TypeVar("T")


class Box(msgspec.Struct, Generic[T]):
    value: T


@dataclasses.dataclass
class Plain:
    x: int


@pytest.mark.parametrize(
    ("registry", "error", "match"),
    [
        ({}, ValueError, "at least one"),
        ({1: Point, 2: Point}, ValueError, "Point is registered twice, as type ids 1 and 2"),
        ({-1: Point}, ValueError, r"type id -1 does not fit the wire's u16 field \(0..65535\)"),
        ({65536: Point}, ValueError, "type id 65536 does not fit"),
        ({True: Point}, TypeError, "type id True is not an int"),
        ({"1": Point}, TypeError, "type id '1' is not an int"),
        ({1: int}, TypeError, "not a msgspec.Struct subclass"),
        ({1: Plain}, TypeError, "not a msgspec.Struct subclass"),
        ({1: Box[int]}, TypeError, "not a msgspec.Struct subclass"),
        ({1: Point(0, 0)}, TypeError, "not a msgspec.Struct subclass"),  # an instance
    ],
)
def test_registry_rejects(registry: dict[Any, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        Registry(registry)
    with pytest.raises(error, match=match):
        Schema(registry, serializer=MsgPackSerializer())


def test_registry_is_a_read_only_mapping() -> None:
    registry = Registry(REGISTRY)
    assert dict(registry) == REGISTRY
    assert registry[3] is Shape and registry[0xFFFF] is Empty
    assert repr(registry) == "Registry({1: Point, 2: Chat, 3: Shape, 65535: Empty})"
    with pytest.raises(TypeError):
        registry[4] = Box  # type: ignore[index]


def test_subclasses_are_not_registered_implicitly() -> None:
    class SpecialPoint(Point, frozen=True):
        pass

    schema = Schema(REGISTRY, serializer=JSONSerializer())
    with pytest.raises(TypeError, match="SpecialPoint is not in the message registry"):
        schema.encode(SpecialPoint(1, 2))


def test_decoders_are_built_once_per_schema() -> None:
    calls: list[type] = []

    class CountingSerializer(JSONSerializer):
        def decoder(self, type_: Any, /) -> Any:
            calls.append(type_)
            return super().decoder(type_)

    schema = Schema(REGISTRY, serializer=CountingSerializer())
    for _ in range(3):
        assert schema.decode(1, memoryview(b'{"x":1,"y":2}')) == Point(1, 2)
    assert sorted(calls, key=lambda t: t.__name__) == [Chat, Empty, Point, Shape]


def test_decode_errors() -> None:
    schema = Schema(REGISTRY, serializer=JSONSerializer())
    with pytest.raises(UnknownMessageTypeError, match="unknown message type id 4"):
        schema.decode(4, memoryview(b"{}"))
    with pytest.raises(MessageValidationError, match=r"Object missing required field `text`"):
        schema.decode(2, memoryview(b'{"room":"r","mentions":[]}'))


class Color:
    def __init__(self, rgb: int) -> None:
        self.rgb = rgb

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Color) and other.rgb == self.rgb


class Paint(msgspec.Struct):
    color: Color


class ColorSerializer:
    """A user's serializer: msgspec JSON with hooks for a type msgspec does not know."""

    def encoder(self) -> Any:
        return msgspec.json.Encoder(enc_hook=lambda c: f"#{c.rgb:06x}").encode

    def decoder(self, type_: Any, /) -> Any:
        return msgspec.json.Decoder(type_, dec_hook=lambda t, s: Color(int(s[1:], 16))).decode


def test_a_custom_serializer_plugs_in() -> None:
    schema = Schema({9: Paint}, serializer=ColorSerializer())
    type_id, payload = schema.encode(Paint(Color(0x336699)))
    assert (type_id, payload) == (9, b'{"color":"#336699"}')
    assert schema.decode(9, memoryview(payload)) == Paint(Color(0x336699))
