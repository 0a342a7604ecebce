"""WebTransport endpoints in FastAPI apps, with FastAPI's own dependency injection.

Routing is the same as for Starlette (:func:`~.routing.enable_webtransport`); what
differs is how endpoint parameters are filled. :class:`APIWebTransportRoute` solves
them with FastAPI's ``solve_dependencies``, as FastAPI does for WebSocket endpoints:
``Depends`` (including generator dependencies, cleaned up after the session ends),
``Query``, ``Header``, ``Cookie``, path parameters, ``HTTPConnection``, and
``app.dependency_overrides``.

FastAPI injects a ``WebSocket`` parameter because ``WebSocket`` is a subclass of
``HTTPConnection``, which FastAPI recognises; a ``WebTransportSession`` is not one, so
the endpoint's signature is presented to FastAPI with each ``WebTransportSession``
parameter turned into ``Annotated[WebTransportSession, Depends(webtransport_session)]``.
Dependencies that need the session declare it that way themselves.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from re import Pattern
from typing import Annotated, Any, TypeVar, cast

from fastapi import APIRouter, FastAPI, params
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import (
    get_dependant,
    get_parameterless_sub_dependant,
    solve_dependencies,
)
from starlette.convertors import Convertor
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.routing import BaseRoute, Mount, compile_path
from starlette.types import ASGIApp

from ..asgi import Receive, Scope, Send
from ..session import WebTransportSession
from .connection import WebTransportConnection
from .dependencies import is_coroutine_callable
from .exceptions import VALIDATION_ERROR_STATUS, run_session
from .routing import ExactPathRoute, is_function_endpoint

__all__ = [
    "SESSION_SCOPE_KEY",
    "APIWebTransportRoute",
    "webtransport_route",
    "webtransport_session",
]

F = TypeVar("F", bound=Callable[..., Any])

logger = logging.getLogger("starlette_webtransport.starlette")

SESSION_SCOPE_KEY = "starlette_webtransport.session"
"""Where an :class:`APIWebTransportRoute` puts the session, for :func:`webtransport_session`."""


def webtransport_session(conn: HTTPConnection) -> WebTransportSession:
    """FastAPI dependency returning the session of the current WebTransport endpoint."""
    session = conn.scope.get(SESSION_SCOPE_KEY)
    if not isinstance(session, WebTransportSession):
        raise RuntimeError("webtransport_session is only available to WebTransport endpoints")
    return session


@functools.lru_cache(maxsize=1024)
def _compiled(path: str) -> tuple[Pattern[str], str, dict[str, Convertor[Any]]]:
    # FastAPI strips the trailing "/" of a route it includes, which empties "/".
    return compile_path(path or "/")


class APIWebTransportRoute(ExactPathRoute, Mount):
    """A WebTransport route whose function endpoint gets FastAPI dependency injection.

    It derives from ``Mount`` for one reason: ``APIRouter.include_router`` keeps
    ``Mount`` instances (copying them and prefixing their ``path``) and drops route
    types it does not know. Nothing of ``Mount``'s routing is used: the route matches
    exactly its ``path``, compiled afresh whenever FastAPI has re-prefixed it.
    """

    def __init__(
        self,
        path: str,
        endpoint: Callable[..., Any],
        *,
        name: str | None = None,
        dependencies: Sequence[params.Depends] | None = None,
    ) -> None:
        # Mount.__init__ is not called: it would strip the path's trailing "/".
        self._target(path, endpoint, name)
        self.dependencies = list(dependencies or [])
        self._dependants: dict[str, tuple[Dependant, Callable[..., Any]]] = {}
        self._injects = is_function_endpoint(endpoint)
        if self._injects:
            if not is_coroutine_callable(endpoint):
                raise TypeError(f"WebTransport endpoints must be async functions, got {endpoint!r}")
            self._dependant()  # fail now, not on the first session, if FastAPI cannot
        # ``app`` is kept for introspection; ``handle`` dispatches on ``_injects`` because
        # a bound method would tie FastAPI's re-prefixed copies to this instance's path.
        self.app: ASGIApp = self._session_app if self._injects else endpoint
        self._base_app = self.app
        # Mount's attributes, for code that inspects routes. FastAPI overwrites them on
        # its copies with a mount's pattern, which is why matching uses _compiled(path).
        self.path_regex, self.path_format, self.param_convertors = compile_path(path)

    @property
    def routes(self) -> list[BaseRoute]:
        return []

    def compiled_path(self) -> tuple[Pattern[str], str, dict[str, Convertor[Any]]]:
        return _compiled(self.path)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._injects:
            await self._session_app(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    def _dependant(self) -> tuple[Dependant, Callable[..., Any]]:
        """FastAPI's analysis of the endpoint for the current path: a prefix added by
        ``include_router`` may bring path parameters of its own. Copies made by FastAPI
        share the cache."""
        path = self.path
        if path not in self._dependants:
            call = _with_session_dependency(self.endpoint)
            path_format = _compiled(path)[1]
            dependant = get_dependant(path=path_format, call=call, scope="function")
            for depends in reversed(self.dependencies):
                dependant.dependencies.insert(
                    0, get_parameterless_sub_dependant(depends=depends, path=path_format)
                )
            self._dependants[path] = (dependant, call)
        return self._dependants[path]

    async def _session_app(self, scope: Scope, receive: Receive, send: Send) -> None:
        dependant, call = self._dependant()
        session = WebTransportSession(scope, receive, send)
        scope[SESSION_SCOPE_KEY] = session
        app = scope.get("app")
        overrides_provider = app if hasattr(app, "dependency_overrides") else None

        stack = AsyncExitStack()

        async def run() -> None:
            # Dependencies of the default ("request") scope are cleaned up with ``stack``,
            # after the session; "function" ones when the endpoint returns.
            scope["fastapi_inner_astack"] = stack
            async with AsyncExitStack() as function_stack:
                scope["fastapi_function_astack"] = function_stack
                solved = await solve_dependencies(
                    # FastAPI reads only HTTPConnection attributes of its ``request``.
                    request=cast(Request, WebTransportConnection(scope)),
                    dependant=dependant,
                    dependency_overrides_provider=overrides_provider,
                    async_exit_stack=stack,
                    embed_body_fields=False,
                )
                if solved.errors:
                    logger.info(
                        "WebTransport request for %s failed validation: %s",
                        session.path,
                        solved.errors,
                    )
                    raise HTTPException(VALIDATION_ERROR_STATUS)
                await call(**solved.values)

        await run_session(session, run(), stack)


def _with_session_dependency(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """``endpoint`` as FastAPI should see it: each parameter annotated with
    ``WebTransportSession`` becomes a dependency on :func:`webtransport_session`."""
    signature = inspect.signature(endpoint, eval_str=True)
    parameters = []
    for parameter in signature.parameters.values():
        annotation = parameter.annotation
        if inspect.isclass(annotation) and issubclass(annotation, WebTransportSession):
            depends = params.Depends(webtransport_session)
            parameter = parameter.replace(annotation=Annotated[annotation, depends])
        parameters.append(parameter)

    @functools.wraps(endpoint)
    async def call(**kwargs: Any) -> Any:
        return await endpoint(**kwargs)

    call.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    return call


def webtransport_route(
    router: APIRouter | FastAPI,
    path: str,
    *,
    name: str | None = None,
    dependencies: Sequence[params.Depends] | None = None,
) -> Callable[[F], F]:
    """Decorator adding an :class:`APIWebTransportRoute`, the WebTransport counterpart
    of ``@router.websocket(path)``. The router's ``prefix`` and ``dependencies`` apply,
    as they do to its WebSocket routes; routers included later carry the route along."""
    api_router = router.router if isinstance(router, FastAPI) else router

    def decorator(endpoint: F) -> F:
        route = APIWebTransportRoute(
            api_router.prefix + path,
            endpoint,
            name=name,
            dependencies=[*api_router.dependencies, *(dependencies or [])],
        )
        api_router.routes.append(route)
        return endpoint

    return decorator
