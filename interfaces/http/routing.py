"""FastAPI routes of one simple shape, run without the general solver or the router.

FastAPI's per-request machinery (endpoint context, telemetry hooks, the
general dependency solver, response-model handling) costs about 0.1 ms of
CPU per request on this machine: as much as the whole rest of a reaction
command on the event-loop thread. Most command endpoints need none of it: they
take path parameters and dependencies that read only the request, and build
their ``Response`` themselves.

A ``DirectRoute`` is declared exactly like any FastAPI route (the signature
still drives validation errors, OpenAPI and docs); only when its endpoint has
that shape does it run through a plan made once at start-up: validate each
path parameter, await each dependency with the request, call the endpoint.
Any other endpoint, or an app with dependency overrides, runs through FastAPI's
own handler, so the route class is safe to use on every router.

The hottest routes go further: an ``ExpressLane`` (see ``include_express``)
matches and runs them before the router, with the same plan.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, cast, get_type_hints

from fastapi import APIRouter, FastAPI
from fastapi import routing as fastapi_routing
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError
from pydantic.fields import FieldInfo
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match

from interfaces.http.middleware import ASGIApp, Receive, Scope, Send

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


@dataclass(frozen=True)
class _PathParameter:
    name: str
    alias: str
    adapter: TypeAdapter[Any]


@dataclass
class _Dependency:
    call: Callable[[Request], Awaitable[Any]]
    # The parameters its value fills: none for a route-level dependency, run
    # for its effect; several when one cached dependency is declared twice.
    names: list[str]


@dataclass(frozen=True)
class _Plan:
    endpoint: Callable[..., Awaitable[Response]]
    path: tuple[_PathParameter, ...]
    dependencies: tuple[_Dependency, ...]
    request_name: str | None


def _takes_more_than_path_parameters(dependant: Dependant) -> bool:
    """Query, header, cookie or body parameters, or one FastAPI fills specially."""
    return bool(
        dependant.query_params
        or dependant.header_params
        or dependant.cookie_params
        or dependant.body_params
        or dependant.websocket_param_name
        or dependant.http_connection_param_name
        or dependant.response_param_name
        or dependant.background_tasks_param_name
        or dependant.security_scopes_param_name
    )


def _reads_only_the_request(dependant: Dependant) -> bool:
    return (
        dependant.request_param_name is not None
        and not dependant.path_params
        and not dependant.dependencies
        and not _takes_more_than_path_parameters(dependant)
        and inspect.iscoroutinefunction(dependant.call)
    )


def _returns_a_response(call: Callable[..., Any]) -> bool:
    try:
        returned = get_type_hints(call).get("return")
    except (NameError, TypeError):
        return False
    return isinstance(returned, type) and issubclass(returned, Response)


def _adapter(info: FieldInfo) -> TypeAdapter[Any]:
    # The parameter's type with its constraints (``Path(ge=1)``...), as FastAPI validates it.
    annotated: Any = Annotated[info.annotation, info]
    return TypeAdapter(annotated)


def plan_for(dependant: Dependant) -> _Plan | None:
    """How to run an endpoint directly; None when it has any other shape."""
    call = dependant.call
    if (
        call is None
        or not inspect.iscoroutinefunction(call)
        or not _returns_a_response(call)
        or _takes_more_than_path_parameters(dependant)
        or not all(_reads_only_the_request(d) for d in dependant.dependencies)
    ):
        return None
    path = tuple(
        _PathParameter(field.name, field.alias, _adapter(field.field_info))
        for field in dependant.path_params
    )
    dependencies: list[_Dependency] = []
    for sub in dependant.dependencies:
        names = [sub.name] if sub.name else []
        # Declared twice, a cached dependency runs once per request, as in FastAPI.
        earlier = [d for d in dependencies if d.call is sub.call] if sub.use_cache else []
        if earlier:
            earlier[0].names.extend(names)
        else:
            call_with_request = cast(Callable[[Request], Awaitable[Any]], sub.call)
            dependencies.append(_Dependency(call_with_request, names))
    return _Plan(call, path, tuple(dependencies), dependant.request_param_name)


async def _run(plan: _Plan, request: Request) -> Response:
    arguments: dict[str, Any] = {}
    # In FastAPI's order: dependencies first (so an anonymous caller is told to
    # sign in even when the path is wrong), then the path parameters.
    for dependency in plan.dependencies:
        value = await dependency.call(request)
        for name in dependency.names:
            arguments[name] = value
    errors: list[dict[str, Any]] = []
    given = request.path_params
    for parameter in plan.path:
        try:
            arguments[parameter.name] = parameter.adapter.validate_python(given[parameter.alias])
        except ValidationError as invalid:
            errors.extend(
                {**error, "loc": ("path", parameter.alias, *error["loc"])}
                for error in invalid.errors(include_url=False)
            )
    if errors:
        raise RequestValidationError(errors)
    if plan.request_name is not None:
        arguments[plan.request_name] = request
    return await plan.endpoint(**arguments)


def _in_effect(route: APIRoute) -> tuple[Dependant, Any] | None:
    """The dependant and dependency-overrides provider FastAPI's own handler
    would use for ``route`` as its handler is built now.

    A router included in another gets a context of its own (the include's
    dependencies, the app's overrides), published in a context variable while
    its handler is built. None when this FastAPI does not publish it that way:
    the route then runs through FastAPI's handler rather than risk missing a
    dependency or an override.
    """
    published = getattr(fastapi_routing, "_effective_route_context_var", None)
    if published is None:
        return None
    context = published.get()
    if context is not None and context.original_route is route:
        return cast(Dependant, context.dependant), context.dependency_overrides_provider
    return route.dependant, route.dependency_overrides_provider


class DirectRoute(APIRoute):
    """An ``APIRoute`` that runs simple endpoints without FastAPI's general solver."""

    #: Whether the endpoint runs directly (set as its handler is built).
    direct: bool = False

    def get_route_handler(self) -> Handler:
        """The direct handler when the endpoint allows it, FastAPI's otherwise."""
        general = super().get_route_handler()
        in_effect = _in_effect(self)
        plan = None if in_effect is None else plan_for(in_effect[0])
        if in_effect is None or plan is None:
            return general
        self.direct = True
        overrides = in_effect[1]

        async def handle(request: Request) -> Response:
            # Overrides (tests, mostly) can be added at any time: FastAPI's
            # handler honours them, so it takes over while there are any.
            if overrides is not None and getattr(overrides, "dependency_overrides", None):
                return await general(request)
            return await _run(plan, request)

        return handle


class ExpressLane:
    """Pure ASGI middleware: a few hot routes, matched and run before the router.

    The innermost of the app's middleware, so the request context (request id,
    access log, body limits, extra headers), CORS and idempotency still see
    every request. What it skips costs more than the command itself on the
    event-loop thread: FastAPI's exception middleware, its exit stack, the
    router's walk over every route and included router, and the per-route
    request wrapper (36 of the 41 us of CPU that a reaction cost in process,
    measured with the application faked out; ~13 us with the lane).

    A request it takes is answered exactly as the router would answer it:
    the route's own matching, the direct plan (see ``DirectRoute``), and the
    app's exception handlers for what the plan raises. Anything else (another
    path or method, or an app with dependency overrides) goes on to the router.
    """

    def __init__(self, app: ASGIApp, routes: Sequence[APIRoute]) -> None:
        self.app = app
        self._routes = _planned(routes)

    @property
    def routes(self) -> list[APIRoute]:
        """The routes it runs, in the order it tries them."""
        return [route for _, route, _ in self._routes]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run a request for one of the lane's routes; pass any other on."""
        if scope["type"] == "http" and not scope["app"].dependency_overrides:
            method = scope["method"]
            for methods, route, plan in self._routes:
                if method not in methods:
                    continue
                match, child_scope = route.matches(scope)
                if match is Match.FULL:
                    scope.update(child_scope)
                    scope.setdefault("router", scope["app"].router)
                    await _answer(plan, scope, receive, send)
                    return
        await self.app(scope, receive, send)


def _planned(routes: Sequence[APIRoute]) -> list[tuple[frozenset[str], APIRoute, _Plan]]:
    planned = []
    for route in routes:
        plan = plan_for(route.dependant)
        if plan is None:
            raise TypeError(f"{route.path} {route.methods}: not of the direct shape")
        planned.append((frozenset(route.methods or ()), route, plan))
    return planned


async def _answer(plan: _Plan, scope: Scope, receive: Receive, send: Send) -> None:
    request = Request(scope, receive, send)
    try:
        response = await _run(plan, request)
    except Exception as error:
        handler = _exception_handler(scope["app"], error)
        if handler is None:
            raise  # to the server-error middleware, as from the router
        if inspect.iscoroutinefunction(handler):
            response = await handler(request, error)
        else:
            response = await run_in_threadpool(handler, request, error)
    await response(scope, receive, send)


def _exception_handler(app: FastAPI, error: Exception) -> Any:
    """The handler FastAPI's exception middleware would pick for ``error``; None if none.

    As in Starlette: an HTTP status's handler first, then the nearest class's;
    the handlers of 500 and ``Exception`` belong to the outermost middleware.
    """
    handlers = app.exception_handlers
    if isinstance(error, StarletteHTTPException) and error.status_code != 500:
        handler = handlers.get(error.status_code)
        if handler is not None:
            return handler
    for kind in type(error).__mro__:
        if kind is Exception:
            return None
        if kind in handlers:
            return handlers[kind]
    return None


def include_express(app: FastAPI, *routers: APIRouter) -> None:
    """Include ``routers`` in the app, their routes run by its ``ExpressLane``.

    The routers are included as any other (for OpenAPI, and for the requests
    the lane passes on) and must carry no include-time prefix or dependency,
    since the lane matches and runs their routes as declared. Call it last:
    the lane must be the innermost middleware, inside idempotency.
    """
    routes: list[APIRoute] = []
    for router in routers:
        app.include_router(router)
        for route in router.routes:
            if not isinstance(route, APIRoute):
                raise TypeError(f"{route!r} is not an APIRoute: include the router instead")
            routes.append(route)
    if app.router.dependencies:
        raise TypeError("the lane cannot run app-wide dependencies: include the routers instead")
    _planned(routes)  # refused now rather than at the first request
    app.user_middleware.append(Middleware(ExpressLane, routes=routes))
