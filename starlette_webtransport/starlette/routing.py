"""WebTransport routes in Starlette's routing tree.

A session arrives as a ``"webtransport"`` scope, which Starlette's ``Router`` refuses
(it asserts http/websocket/lifespan) and its ``Mount`` and ``Host`` do not match. Rather
than replacing those classes, :func:`enable_webtransport` puts a small dispatcher in
front of the app's router, after every middleware of the app: it finds the
:class:`WebTransportRoute` for the session by walking the same ``routes`` the router
uses, asking ``Mount`` and ``Host`` to match a websocket-typed *copy* of the scope (their
matching is path and host only) and never handing a disguised scope to any handler.
HTTP, WebSocket and lifespan scopes pass straight through to the router.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from re import Pattern
from typing import Any, Protocol, TypeVar

from starlette.convertors import Convertor
from starlette.datastructures import URLPath
from starlette.middleware import Middleware
from starlette.routing import (
    BaseRoute,
    Host,
    Match,
    Mount,
    NoMatchFound,
    Router,
    compile_path,
    get_name,
    replace_params,
)
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from ..asgi import Receive, Scope, Send
from ..session import WebTransportSession
from .dependencies import build_dependant, call_with_dependencies, is_coroutine_callable
from .exceptions import log_rejection, run_session

__all__ = [
    "JAVASCRIPT_PATH",
    "WebTransportDispatcher",
    "WebTransportRoute",
    "enable_webtransport",
    "javascript_mount",
    "resolve",
    "route_path",
    "webtransport_route",
]

F = TypeVar("F", bound=Callable[..., Any])

JAVASCRIPT_PATH = "/_webtransport/js"
"""Where :func:`javascript_mount` serves the browser modules by default."""


class _HasRouter(Protocol):
    @property
    def router(self) -> Router: ...


def route_path(scope: Scope) -> str:
    """The part of ``path`` below ``root_path``, which routes match against; the same
    rule as Starlette's, so a WebTransport route inside a ``Mount`` sees what an HTTP
    route there would."""
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if not root_path or not path.startswith(root_path):
        return path
    rest = path[len(root_path) :]
    return rest if rest == "" or rest.startswith("/") else path


def is_function_endpoint(endpoint: Callable[..., Any]) -> bool:
    """A function (or method, or partial of one) gets its parameters injected; anything
    else, such as a :class:`~.endpoints.WebTransportEndpoint` class, is an ASGI app."""
    while isinstance(endpoint, functools.partial):
        endpoint = endpoint.func
    return inspect.isfunction(endpoint) or inspect.ismethod(endpoint)


def session_app(endpoint: Callable[..., Any]) -> ASGIApp:
    """Wrap ``async def endpoint(session, ...)`` (parameters injected by
    :mod:`.dependencies`) as the ASGI app of a route."""
    if not is_coroutine_callable(endpoint):
        raise TypeError(f"WebTransport endpoints must be async functions, got {endpoint!r}")
    dependant = build_dependant(endpoint)
    cleanup = dependant.cleanup  # known once per route, not looked up per session

    def app(scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # A plain function returning run_session's coroutine: the session's task holds
        # no frame of its own for this layer (each is a few hundred bytes per session).
        session = WebTransportSession(scope, receive, send)
        stack = AsyncExitStack() if cleanup else None
        endpoint = call_with_dependencies(dependant, session=session, stack=stack)
        return run_session(session, endpoint, stack)

    return app


class ExactPathRoute(BaseRoute):
    """What the Starlette and the FastAPI WebTransport routes share: a session matches
    exactly ``path`` (with its parameters), and the route names ``endpoint``.

    Subclasses say where the compiled path comes from (:meth:`compiled_path`)."""

    path: str
    endpoint: Callable[..., Any]
    name: str | None

    def _target(self, path: str, endpoint: Callable[..., Any], name: str | None) -> None:
        if not path.startswith("/"):
            raise ValueError(f"routed paths must start with '/', got {path!r}")
        self.path = path
        self.endpoint = endpoint
        self.name = get_name(endpoint) if name is None else name

    def compiled_path(self) -> tuple[Pattern[str], str, dict[str, Convertor[Any]]]:
        raise NotImplementedError

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        """A WebTransport session whose path matches; its path parameters are merged over
        those of enclosing routes (``Mount``, ``Host``)."""
        if scope["type"] != "webtransport":
            return Match.NONE, {}
        path_regex, _, param_convertors = self.compiled_path()
        match = path_regex.match(route_path(scope))
        if match is None:
            return Match.NONE, {}
        path_params = dict(scope.get("path_params", {}))
        for key, value in match.groupdict().items():
            path_params[key] = param_convertors[key].convert(value)
        return Match.FULL, {"endpoint": self.endpoint, "path_params": path_params, "route": self}

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        _, path_format, param_convertors = self.compiled_path()
        if name != self.name or set(path_params) != set(param_convertors):
            raise NoMatchFound(name, path_params)
        path, remaining = replace_params(path_format, param_convertors, path_params)
        assert not remaining
        # WebTransport URLs are https:// URLs, so the URL is built as for HTTP.
        return URLPath(path=path, protocol="http")

    def __eq__(self, other: Any) -> bool:
        return (
            isinstance(other, type(self))
            and self.path == other.path
            and self.endpoint == other.endpoint
        )

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(path={self.path!r}, name={self.name!r})"


class WebTransportRoute(ExactPathRoute):
    """A WebTransport endpoint at ``path``, beside ``Route`` and ``WebSocketRoute``.

    ``endpoint`` is ``async def endpoint(session: WebTransportSession, ...)``, its other
    parameters filled by path parameter name, by annotation or by ``Depends``; or an ASGI
    class such as a :class:`~.endpoints.WebTransportEndpoint` subclass.
    """

    def __init__(
        self,
        path: str,
        endpoint: Callable[..., Any],
        *,
        name: str | None = None,
        middleware: Sequence[Middleware] | None = None,
    ) -> None:
        self._target(path, endpoint, name)

        if is_function_endpoint(endpoint):
            self.app = session_app(endpoint)
        else:
            self.app = endpoint  # an ASGI class, e.g. a WebTransportEndpoint
        for cls, args, kwargs in reversed(middleware or ()):
            self.app = cls(self.app, *args, **kwargs)

        self.path_regex, self.path_format, self.param_convertors = compile_path(path)

    def compiled_path(self) -> tuple[Pattern[str], str, dict[str, Convertor[Any]]]:
        return self.path_regex, self.path_format, self.param_convertors

    def handle(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:  # type: ignore[override]
        """The app's awaitable, returned rather than awaited here (callers only await it):
        no frame of this route stays on the stack of a session for its whole life."""
        return self.app(scope, receive, send)


def resolve(routes: Sequence[BaseRoute], scope: Scope) -> tuple[BaseRoute, Scope] | None:
    """The first route, depth first in declaration order, that takes this WebTransport
    session, and the scope it should see (a new dict, to apply to ``scope``).

    Routes that understand WebTransport scopes answer for themselves. ``Mount`` and
    ``Host`` only match http/websocket scopes, but their matching reads nothing but the
    path, the root path and the host header, so they are asked about a websocket-typed
    copy and, when they match, searched recursively. Unlike HTTP routing, a ``Mount``
    with nothing matching inside does not end the search: a mount of HTTP routes (or
    static files) could only have rejected the session.
    """
    for route in routes:
        match, child_scope = route.matches(scope)
        if match is Match.FULL:
            return route, {**scope, **child_scope}
        if isinstance(route, Mount | Host):
            match, child_scope = route.matches({**scope, "type": "websocket"})
            if match is Match.FULL:
                found = resolve(route.routes, {**scope, **child_scope})
                if found is not None:
                    return found
    return None


class WebTransportDispatcher:
    """Routes WebTransport sessions for one router; everything else goes to ``app``
    (the router's own stack). Installed by :func:`enable_webtransport`."""

    def __init__(self, router: Router, app: ASGIApp) -> None:
        self.router = router
        self.app = app

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """A plain function returning the awaitable of whoever handles the scope: no
        frame of the dispatcher (or of the route's ``handle``) stays on the stack of a
        session for its whole life."""
        if scope["type"] != "webtransport":
            return self.app(scope, receive, send)
        route = self._route(scope)
        if route is None:
            log_rejection(scope, 404, "no WebTransportRoute matches the path")
            return send({"type": "webtransport.reject", "status": 404, "headers": []})
        return route.handle(scope, receive, send)

    def _route(self, scope: Scope) -> BaseRoute | None:
        """The session's route, its match applied to ``scope``. A function of its own so
        that the matched copy of the scope is not held by the frame that runs the whole
        session."""
        scope.setdefault("router", self.router)
        found = resolve(self.router.routes, scope)
        if found is None:
            return None
        route, child_scope = found
        scope.update(child_scope)
        return route


def enable_webtransport(app: Router | _HasRouter) -> None:
    """Let ``app`` (a ``Starlette``/``FastAPI`` app, or a ``Router``) serve WebTransport
    sessions on its :class:`WebTransportRoute` routes, including those nested in
    ``Mount`` and ``Host``. Unmatched sessions are rejected with 404.

    The dispatcher wraps the router's ``middleware_stack``, so every middleware of the
    app sees WebTransport scopes, in order, before routing. Calling it again is a no-op.
    """
    router = app if isinstance(app, Router) else app.router
    if isinstance(router.middleware_stack, WebTransportDispatcher):
        return
    # Starlette types the attribute as its own ``async def app``; it only awaits it.
    dispatcher: Any = WebTransportDispatcher(router, router.middleware_stack)
    router.middleware_stack = dispatcher


def webtransport_route(
    router: Router | _HasRouter,
    path: str,
    *,
    name: str | None = None,
    middleware: Sequence[Middleware] | None = None,
) -> Callable[[F], F]:
    """Decorator adding a :class:`WebTransportRoute` to a ``Router`` or a ``Starlette``
    app, for code that prefers decorators to ``routes=[...]`` lists. FastAPI apps and
    ``APIRouter`` have their own, in :mod:`.fastapi`."""
    target = router if isinstance(router, Router) else router.router

    def decorator(endpoint: F) -> F:
        target.routes.append(WebTransportRoute(path, endpoint, name=name, middleware=middleware))
        return endpoint

    return decorator


def javascript_mount(path: str = JAVASCRIPT_PATH) -> Mount:
    """The package's browser modules, for ``routes=[...]``: ``webtransport.js``
    (``connect()``, which pins a development certificate by itself) and ``structured.js``
    (typed messages) at ``{path}/webtransport.js`` and ``{path}/structured.js``.

    Served from the installed package, so a page's module is always the one that matches
    the server's wire format."""
    static = StaticFiles(packages=[("starlette_webtransport", "static")])
    return Mount(path, app=static, name="webtransport-js")
