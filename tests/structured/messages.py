"""Message types shared by the structured tests, and hypothesis strategies for them."""

from __future__ import annotations

import msgspec
from hypothesis import strategies as st

from starlette_webtransport.structured import JSONSerializer, MsgPackSerializer, Serializer


class Point(msgspec.Struct, frozen=True):
    x: float
    y: float


class Chat(msgspec.Struct):
    room: str
    text: str
    mentions: list[str]
    reply_to: int | None = None


class Shape(msgspec.Struct):
    name: str
    vertices: list[Point]
    tags: dict[str, int]
    data: bytes
    closed: bool = False


class Empty(msgspec.Struct):
    pass


Message = Point | Chat | Shape | Empty
REGISTRY: dict[int, type[Message]] = {1: Point, 2: Chat, 3: Shape, 0xFFFF: Empty}
TYPE_IDS = {type_: type_id for type_id, type_ in REGISTRY.items()}
SERIALIZERS: dict[str, Serializer] = {"msgpack": MsgPackSerializer(), "json": JSONSerializer()}

# JSON has no NaN or infinity and msgspec's integers are 64-bit: stay inside both.
ints = st.integers(-(2**63), 2**63 - 1)
floats = st.floats(allow_nan=False, allow_infinity=False)
points = st.builds(Point, x=floats, y=floats)
chats = st.builds(
    Chat, room=st.text(), text=st.text(), mentions=st.lists(st.text()), reply_to=st.none() | ints
)
shapes = st.builds(
    Shape,
    name=st.text(),
    vertices=st.lists(points, max_size=20),
    tags=st.dictionaries(st.text(), ints, max_size=5),
    data=st.binary(max_size=300),
    closed=st.booleans(),
)
messages: st.SearchStrategy[Message] = st.one_of(points, chats, shapes, st.just(Empty()))
