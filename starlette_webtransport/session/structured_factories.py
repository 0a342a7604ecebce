"""Typed-message streams and datagrams on a session (``structured``), from its public API.

A mixin of :class:`~.session.WebTransportSession`: it only opens a bidirectional stream or
takes the datagram transport, and wraps them. ``structured`` is imported when first used,
so that the session layer loads without it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, TypeVar, overload

if TYPE_CHECKING:
    from ..structured import Schema, Serializer, StructuredDatagramTransport, StructuredStream
    from .datagram import WebTransportDatagramTransport
    from .stream import WebTransportStream

T = TypeVar("T")


class StructuredFactories:
    """``create_structured_stream()`` and ``create_structured_datagram_transport()``."""

    if TYPE_CHECKING:  # what it uses of the session

        @property
        def datagrams(self) -> WebTransportDatagramTransport: ...

        async def create_bidirectional_stream(
            self, *, timeout: float | None = None
        ) -> WebTransportStream: ...

    @overload
    async def create_structured_stream(
        self, *, schema: Schema[T], timeout: float | None = None
    ) -> StructuredStream[T]: ...

    @overload
    async def create_structured_stream(
        self,
        *,
        serializer: Serializer,
        registry: Mapping[int, type[T]],
        timeout: float | None = None,
    ) -> StructuredStream[T]: ...

    async def create_structured_stream(
        self,
        *,
        serializer: Serializer | None = None,
        registry: Mapping[int, type[T]] | None = None,
        timeout: float | None = None,
        schema: Schema[T] | None = None,
    ) -> StructuredStream[T]:
        """A new bidirectional stream carrying typed messages (``structured``): give a
        shared ``schema``, or the ``serializer`` and ``registry`` to build one from."""
        from ..structured import StructuredStream
        from ..structured.schema import resolve_schema

        resolved = resolve_schema(schema, serializer, registry)  # bad arguments open nothing
        stream = await self.create_bidirectional_stream(timeout=timeout)
        return StructuredStream(stream, schema=resolved)

    @overload
    async def create_structured_datagram_transport(
        self, *, schema: Schema[T]
    ) -> StructuredDatagramTransport[T]: ...

    @overload
    async def create_structured_datagram_transport(
        self, *, serializer: Serializer, registry: Mapping[int, type[T]]
    ) -> StructuredDatagramTransport[T]: ...

    async def create_structured_datagram_transport(
        self,
        *,
        serializer: Serializer | None = None,
        registry: Mapping[int, type[T]] | None = None,
        schema: Schema[T] | None = None,
    ) -> StructuredDatagramTransport[T]:
        """Typed messages over this session's datagrams (``structured``), from a shared
        ``schema`` or a ``serializer`` and ``registry``."""
        from ..structured import StructuredDatagramTransport
        from ..structured.schema import resolve_schema

        return StructuredDatagramTransport(
            self.datagrams, schema=resolve_schema(schema, serializer, registry)
        )
