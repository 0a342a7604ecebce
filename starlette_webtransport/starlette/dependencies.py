"""A small dependency injector for WebTransport endpoints of plain Starlette apps.

Starlette has no dependency injection and FastAPI's cannot be borrowed without FastAPI,
so this module offers the part of it a session endpoint needs: parameters filled by
annotation (the session, its ``HTTPConnection``), by name (path parameters) and by
``Depends(...)``, where a dependency may be a coroutine, a plain function, or a (sync or
async) generator whose code after ``yield`` runs once the session has ended. FastAPI
apps use FastAPI's own ``Depends`` instead (``starlette_webtransport.starlette.fastapi``).

Signatures are analysed once, when the route is built, so a parameter that can never be
filled fails at import time rather than on the first session.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractContextManager, AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from enum import Enum
from typing import Annotated, Any, TypeVar, cast, get_args, get_origin

from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection

from ..session import WebTransportSession
from .connection import WebTransportConnection

__all__ = [
    "Dependant",
    "Depends",
    "build_dependant",
    "call_with_dependencies",
    "is_coroutine_callable",
]

T = TypeVar("T")


def Depends(dependency: Callable[..., Any], *, use_cache: bool = True) -> Any:
    """Declare that a parameter is the result of calling ``dependency``.

    Use it as the default (``user: User = Depends(get_user)``) or in ``Annotated``
    (``user: Annotated[User, Depends(get_user)]``). With ``use_cache`` (the default) a
    dependency used several times in one session is called once. Typed ``Any``, like
    FastAPI's, so that it type-checks as the default of a parameter of any type.
    """
    return _Depends(dependency, use_cache=use_cache)


class _Depends:
    __slots__ = ("dependency", "use_cache")

    def __init__(self, dependency: Callable[..., Any], *, use_cache: bool) -> None:
        if not callable(dependency):
            raise TypeError(f"Depends() needs a callable, got {dependency!r}")
        self.dependency = dependency
        self.use_cache = use_cache

    def __repr__(self) -> str:
        name = getattr(self.dependency, "__qualname__", repr(self.dependency))
        cache = "" if self.use_cache else ", use_cache=False"
        return f"Depends({name}{cache})"


class _Source(Enum):
    SESSION = "session"
    CONNECTION = "connection"
    PATH = "path"
    DEPENDENCY = "dependency"


class _Kind(Enum):
    COROUTINE = "coroutine"
    FUNCTION = "function"
    ASYNC_GENERATOR = "async generator"
    GENERATOR = "generator"


@dataclass(frozen=True, slots=True)
class _Parameter:
    name: str
    source: _Source
    dependant: Dependant | None = None
    use_cache: bool = True


@dataclass(frozen=True, slots=True)
class Dependant:
    """A callable and how to fill each of its parameters."""

    call: Callable[..., Any]
    kind: _Kind
    parameters: tuple[_Parameter, ...] = field(default=())
    cleanup: bool = False
    """Solving it enters generator dependencies, whose code after ``yield`` needs an
    exit stack."""
    session_only: bool = False
    """A coroutine function that takes nothing but the session: called as it is, with
    nothing to solve (the common ``async def endpoint(session)``)."""


def build_dependant(call: Callable[..., Any]) -> Dependant:
    """Analyse ``call``'s signature; ``TypeError`` names a parameter nothing can fill."""
    try:
        signature = inspect.signature(call, eval_str=True)
    except NameError as exc:
        raise TypeError(f"cannot resolve the annotations of {_describe(call)}: {exc}") from exc
    parameters = []
    for parameter in signature.parameters.values():
        if parameter.kind in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.VAR_POSITIONAL,
            inspect.Parameter.VAR_KEYWORD,
        ):
            raise TypeError(
                f"parameter {parameter.name!r} of {_describe(call)} is "
                f"{parameter.kind.description}; dependencies are passed by keyword"
            )
        resolved = _analyse(call, parameter)
        if resolved is not None:
            parameters.append(resolved)
    kind = _kind_of(call)
    return Dependant(
        call=call,
        kind=kind,
        parameters=tuple(parameters),
        cleanup=kind in (_Kind.ASYNC_GENERATOR, _Kind.GENERATOR)
        or any(p.dependant is not None and p.dependant.cleanup for p in parameters),
        session_only=kind is _Kind.COROUTINE
        and all(p.source is _Source.SESSION for p in parameters),
    )


def _analyse(call: Callable[..., Any], parameter: inspect.Parameter) -> _Parameter | None:
    annotation = parameter.annotation
    depends = parameter.default if isinstance(parameter.default, _Depends) else None
    if get_origin(annotation) is Annotated:
        annotation, *metadata = get_args(annotation)
        for item in metadata:
            if isinstance(item, _Depends):
                if depends is not None:
                    raise TypeError(
                        f"parameter {parameter.name!r} of {_describe(call)} has two Depends()"
                    )
                depends = item
    if depends is not None:
        return _Parameter(
            parameter.name,
            _Source.DEPENDENCY,
            build_dependant(depends.dependency),
            depends.use_cache,
        )
    if _is_subclass(annotation, WebTransportSession):
        return _Parameter(parameter.name, _Source.SESSION)
    if _is_subclass(annotation, HTTPConnection):
        if not _is_subclass(WebTransportConnection, annotation):
            raise TypeError(
                f"parameter {parameter.name!r} of {_describe(call)} asks for a "
                f"{annotation.__qualname__}; a WebTransport session offers a "
                "WebTransportSession or an HTTPConnection"
            )
        return _Parameter(parameter.name, _Source.CONNECTION)
    if parameter.default is not inspect.Parameter.empty:
        return None  # nothing to inject: the default applies
    # Anything else is a path parameter. Only at request time are the parameters of
    # enclosing Mount and Host routes known, so the check is made there.
    return _Parameter(parameter.name, _Source.PATH)


def call_with_dependencies(
    dependant: Dependant,
    *,
    session: WebTransportSession,
    stack: AsyncExitStack | None,
) -> Awaitable[Any]:
    """The call of ``dependant`` with its parameters solved for ``session``, to await.

    Generator dependencies are entered on ``stack`` (required when ``dependant.cleanup``);
    the caller unwinds it when the session has ended, which runs their cleanup. An
    endpoint that takes only the session is called right here and its coroutine
    returned: no frame of this function stays on the session's stack.
    """
    if dependant.session_only:
        return cast(
            Awaitable[Any],
            dependant.call(**dict.fromkeys((p.name for p in dependant.parameters), session)),
        )
    context = _Context(session, WebTransportConnection(session.scope), stack, {})
    return context.call(dependant)


@dataclass(slots=True)
class _Context:
    session: WebTransportSession
    connection: WebTransportConnection
    stack: AsyncExitStack | None
    cache: dict[int, Any]
    """Results by ``id(call)``: the dependant tree keeps every call alive, so ids are
    stable, and a dependency need not be hashable."""

    async def call(self, dependant: Dependant) -> Any:
        kwargs = {parameter.name: await self.value(parameter) for parameter in dependant.parameters}
        call = dependant.call
        if dependant.kind is _Kind.COROUTINE:
            return await call(**kwargs)
        if dependant.kind is _Kind.ASYNC_GENERATOR:
            assert self.stack is not None, "a dependant with cleanup needs a stack"
            return await self.stack.enter_async_context(asynccontextmanager(call)(**kwargs))
        if dependant.kind is _Kind.GENERATOR:
            assert self.stack is not None, "a dependant with cleanup needs a stack"
            manager = contextmanager(call)(**kwargs)
            return await self.stack.enter_async_context(_in_threadpool(manager))
        return await run_in_threadpool(call, **kwargs)

    async def value(self, parameter: _Parameter) -> Any:
        if parameter.source is _Source.SESSION:
            return self.session
        if parameter.source is _Source.CONNECTION:
            return self.connection
        if parameter.source is _Source.PATH:
            path_params = self.session.path_params
            if parameter.name not in path_params:
                raise TypeError(
                    f"parameter {parameter.name!r} is not a path parameter of "
                    f"{self.session.path!r} (path parameters: {sorted(path_params)}); annotate "
                    "it with WebTransportSession or HTTPConnection, give it a default, or "
                    "use Depends()"
                )
            return path_params[parameter.name]
        dependant = parameter.dependant
        assert dependant is not None
        key = id(dependant.call)
        if parameter.use_cache and key in self.cache:
            return self.cache[key]
        value = await self.call(dependant)
        self.cache[key] = value
        return value


@asynccontextmanager
async def _in_threadpool(manager: AbstractContextManager[T]) -> AsyncIterator[T]:
    """Enter and exit a sync generator dependency off the event loop, like other sync
    dependencies, since its code may block."""
    value = await run_in_threadpool(manager.__enter__)
    try:
        yield value
    except BaseException as exc:
        if not await run_in_threadpool(manager.__exit__, type(exc), exc, exc.__traceback__):
            raise
    else:
        await run_in_threadpool(manager.__exit__, None, None, None)


def _kind_of(call: Callable[..., Any]) -> _Kind:
    while isinstance(call, functools.partial):
        call = call.func
    if not inspect.isroutine(call) and not inspect.isclass(call):
        call = type(call).__call__  # a callable instance: look at its method
    if inspect.isasyncgenfunction(call):
        return _Kind.ASYNC_GENERATOR
    if inspect.isgeneratorfunction(call):
        return _Kind.GENERATOR
    if inspect.iscoroutinefunction(call):
        return _Kind.COROUTINE
    return _Kind.FUNCTION


def is_coroutine_callable(call: Callable[..., Any]) -> bool:
    """Whether calling ``call`` returns a coroutine (functions, partials, instances)."""
    return _kind_of(call) is _Kind.COROUTINE


def _is_subclass(annotation: Any, cls: type) -> bool:
    return inspect.isclass(annotation) and issubclass(annotation, cls)


def _describe(call: Callable[..., Any]) -> str:
    return getattr(call, "__qualname__", repr(call))
