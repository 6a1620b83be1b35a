"""A ``DirectRoute`` answers exactly as FastAPI's own handler would, only cheaper.

The same endpoints are served twice, once per route class, and every request
must get the same status, body and headers from both.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal
from uuid import UUID, uuid4

import pytest
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from application.errors import NotFound, Unauthenticated
from interfaces.http.errors import install_error_handlers
from interfaces.http.middleware import RequestContext
from interfaces.http.routing import DirectRoute, ExpressLane, include_express

calls: list[str] = []


async def who(request: Request) -> str:
    """The caller named by a header; 401 without it."""
    calls.append("who")
    name = request.headers.get("x-who")
    if name is None:
        raise Unauthenticated("sign in first")
    return name


async def audited(request: Request) -> None:
    """A route-level dependency, run for its effect only."""
    calls.append("audited")


async def also_who(request: Request) -> str:
    """What ``who`` is overridden with."""
    return "someone else"


Who = Annotated[str, Depends(who)]
Kind = Literal["like", "dislike", "love"]


async def mark(thing_id: UUID, kind: Kind, caller: Who, request: Request) -> Response:
    """Path parameters, a request-only dependency and the request itself."""
    if thing_id.int == 0:
        raise NotFound("no such thing")
    return JSONResponse(
        {"thing": str(thing_id), "kind": kind, "by": caller, "method": request.method},
        headers={"x-marked": "yes"},
    )


async def page(number: Annotated[int, Path(ge=1, le=10)], caller: Who) -> Response:
    """A constrained path parameter."""
    return JSONResponse({"page": number, "by": caller})


async def searched(q: Annotated[str, Query(min_length=2)]) -> Response:
    """A query parameter: not the direct shape."""
    return JSONResponse({"q": q})


async def as_model(thing_id: UUID) -> dict[str, str]:
    """Returns data for FastAPI to render: not the direct shape."""
    return {"thing": str(thing_id)}


def sync_endpoint(thing_id: UUID) -> Response:
    """A plain ``def``: FastAPI runs it in its thread pool, so it is not direct."""
    return JSONResponse({"thing": str(thing_id)})


def simple_routes(route_class: type[APIRoute]) -> APIRouter:
    """A router with the routes of the direct shape."""
    router = APIRouter(prefix="/v1", route_class=route_class, dependencies=[Depends(audited)])
    router.add_api_route("/things/{thing_id}/marks/{kind}", mark, methods=["PUT", "DELETE"])
    router.add_api_route("/pages/{number}", page, methods=["GET"])
    router.add_api_route("/twice/{number}", page, methods=["GET"], dependencies=[Depends(who)])
    return router


def build(route_class: type[APIRoute]) -> tuple[FastAPI, APIRouter]:
    app = FastAPI()
    install_error_handlers(app)
    router = simple_routes(route_class)
    router.add_api_route("/search", searched, methods=["GET"])
    router.add_api_route("/models/{thing_id}", as_model, methods=["GET"])
    router.add_api_route("/sync/{thing_id}", sync_endpoint, methods=["GET"])
    app.include_router(router)
    return app, router


@pytest.fixture(scope="module")
def clients() -> Iterator[tuple[TestClient, TestClient]]:
    direct, _ = build(DirectRoute)
    general, _ = build(APIRoute)
    with TestClient(direct) as one, TestClient(general) as other:
        yield one, other


def same_answer(
    clients: tuple[TestClient, TestClient], method: str, url: str, **kw: object
) -> None:
    direct, general = clients
    calls.clear()
    mine = direct.request(method, url, **kw)  # type: ignore[arg-type]
    direct_calls = list(calls)
    calls.clear()
    theirs = general.request(method, url, **kw)  # type: ignore[arg-type]
    assert (mine.status_code, mine.content) == (theirs.status_code, theirs.content)
    ignored = {"x-request-id", "date"}
    assert {k: v for k, v in mine.headers.items() if k not in ignored} == {
        k: v for k, v in theirs.headers.items() if k not in ignored
    }
    assert direct_calls == calls


def test_only_endpoints_of_the_simple_shape_run_directly() -> None:
    _, router = build(DirectRoute)
    direct = {r.path: r.direct for r in router.routes if isinstance(r, DirectRoute)}
    assert direct == {
        "/v1/things/{thing_id}/marks/{kind}": True,
        "/v1/pages/{number}": True,
        "/v1/twice/{number}": True,
        "/v1/search": False,
        "/v1/models/{thing_id}": False,
        "/v1/sync/{thing_id}": False,
    }


def test_the_hot_command_routes_run_directly() -> None:
    # The command service's reactions and plays are the routes the benchmark
    # drives; a FastAPI upgrade that quietly sends them back through the
    # general handler must show up here, not only as a slower benchmark.
    from interfaces.http.commands import plays, reactions

    for router in (reactions.router, plays.router):
        app = FastAPI()
        app.include_router(router)
        with TestClient(app):
            pass
        assert all(isinstance(r, DirectRoute) and r.direct for r in router.routes)


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
def test_a_valid_request_gets_the_same_answer(
    clients: tuple[TestClient, TestClient], method: str
) -> None:
    thing = uuid4()
    same_answer(clients, method, f"/v1/things/{thing}/marks/love", headers={"x-who": "ann"})
    direct, _ = clients
    answer = direct.request(method, f"/v1/things/{thing}/marks/love", headers={"x-who": "ann"})
    assert answer.json() == {"thing": str(thing), "kind": "love", "by": "ann", "method": method}


@pytest.mark.parametrize(
    ("url", "headers"),
    [
        ("/v1/things/not-a-uuid/marks/like", {"x-who": "ann"}),
        ("/v1/things/not-a-uuid/marks/meh", {"x-who": "ann"}),
        (f"/v1/things/{uuid4()}/marks/meh", {"x-who": "ann"}),
        (f"/v1/things/{uuid4()}/marks/like", {}),
        ("/v1/things/not-a-uuid/marks/like", {}),
        (f"/v1/things/{UUID(int=0)}/marks/like", {"x-who": "ann"}),
        ("/v1/pages/0", {"x-who": "ann"}),
        ("/v1/pages/11", {"x-who": "ann"}),
        ("/v1/pages/x", {"x-who": "ann"}),
        ("/v1/pages/7", {"x-who": "ann"}),
        ("/v1/twice/7", {"x-who": "ann"}),
        ("/v1/twice/70", {}),
        ("/v1/search?q=a", {}),
        (f"/v1/models/{uuid4()}", {}),
        ("/v1/sync/nope", {}),
    ],
)
def test_refusals_and_other_shapes_get_the_same_answer(
    clients: tuple[TestClient, TestClient], url: str, headers: dict[str, str]
) -> None:
    same_answer(clients, "PUT" if "/marks/" in url else "GET", url, headers=headers)


segment = st.one_of(
    st.uuids().map(str),
    st.uuids().map(lambda u: u.hex.upper()),
    st.sampled_from(["like", "dislike", "love", "LIKE", "0", "-1", "10", "1e1"]),
    st.text(alphabet="abcdefABCDEF0123456789-_.~", min_size=1, max_size=40),
)


@given(first=segment, second=segment, signed_in=st.booleans())
def test_any_path_gets_the_same_answer(
    clients: tuple[TestClient, TestClient], first: str, second: str, signed_in: bool
) -> None:
    headers = {"x-who": "ann"} if signed_in else {}
    same_answer(clients, "PUT", f"/v1/things/{first}/marks/{second}", headers=headers)
    same_answer(clients, "GET", f"/v1/pages/{first}", headers=headers)


def test_dependency_overrides_are_honoured() -> None:
    app, _ = build(DirectRoute)
    app.dependency_overrides[who] = also_who
    with TestClient(app) as client:
        answer = client.put(f"/v1/things/{uuid4()}/marks/like")
    assert answer.status_code == 200
    assert answer.json()["by"] == "someone else"


async def broken(thing_id: UUID) -> Response:
    """Raises what no handler maps: the server-error middleware answers."""
    raise RuntimeError(f"broken {thing_id}")


async def teapot(thing_id: UUID) -> Response:
    """Raises an HTTP exception, mapped by status."""
    raise HTTPException(418, "short and stout")


async def on_teapot(request: Request, error: Exception) -> Response:
    """A handler registered for a status rather than a class."""
    return JSONResponse({"teapot": True}, status_code=418)


def build_lane(*, lane: bool) -> FastAPI:
    """The test router's direct routes, run by the lane or by the router."""
    app = FastAPI()
    install_error_handlers(app)
    app.add_exception_handler(418, on_teapot)
    app.add_middleware(RequestContext, json_limit=1024, multipart_limit=1024)
    router = simple_routes(DirectRoute)
    router.add_api_route("/broken/{thing_id}", broken, methods=["POST"])
    router.add_api_route("/teapots/{thing_id}", teapot, methods=["POST"])
    if lane:
        include_express(app, router)
    else:
        app.include_router(router)
    other = APIRouter(prefix="/v1")
    other.add_api_route("/search", searched, methods=["GET"])
    app.include_router(other)
    return app


@pytest.fixture(scope="module")
def lane_clients() -> Iterator[tuple[TestClient, TestClient]]:
    with (
        TestClient(build_lane(lane=True), raise_server_exceptions=False) as one,
        TestClient(build_lane(lane=False), raise_server_exceptions=False) as other,
    ):
        yield one, other


@pytest.mark.parametrize(
    ("method", "url", "headers"),
    [
        ("PUT", f"/v1/things/{uuid4()}/marks/love", {"x-who": "ann"}),
        ("DELETE", f"/v1/things/{uuid4()}/marks/like", {"x-who": "ann"}),
        ("POST", f"/v1/things/{uuid4()}/marks/like", {"x-who": "ann"}),
        ("PUT", "/v1/things/not-a-uuid/marks/meh", {"x-who": "ann"}),
        ("PUT", f"/v1/things/{UUID(int=0)}/marks/like", {"x-who": "ann"}),
        ("PUT", f"/v1/things/{uuid4()}/marks/like", {}),
        ("PUT", f"/v1/things/{uuid4()}/marks/like/", {"x-who": "ann"}),
        ("GET", "/v1/pages/11", {"x-who": "ann"}),
        ("GET", "/v1/twice/3", {"x-who": "ann"}),
        ("GET", "/v1/twice/3", {}),
        ("POST", f"/v1/broken/{uuid4()}", {}),
        ("POST", f"/v1/teapots/{uuid4()}", {}),
        ("GET", "/v1/search?q=x", {}),
        ("GET", "/v1/nowhere", {}),
    ],
)
def test_the_lane_answers_as_the_router_does(
    lane_clients: tuple[TestClient, TestClient], method: str, url: str, headers: dict[str, str]
) -> None:
    same_answer(lane_clients, method, url, headers=headers)


@given(first=segment, second=segment, signed_in=st.booleans())
def test_the_lane_answers_any_path_as_the_router_does(
    lane_clients: tuple[TestClient, TestClient], first: str, second: str, signed_in: bool
) -> None:
    headers = {"x-who": "ann"} if signed_in else {}
    for method in ("PUT", "DELETE", "PATCH"):
        same_answer(lane_clients, method, f"/v1/things/{first}/marks/{second}", headers=headers)
    same_answer(lane_clients, "GET", f"/v1/pages/{first}", headers=headers)


@pytest.mark.parametrize("lane", [True, False])
def test_what_no_handler_maps_reaches_the_server_as_from_the_router(lane: bool) -> None:
    # The envelope is sent by the server-error middleware, which raises on so
    # that the server logs the trace; the lane must not answer it itself.
    with TestClient(build_lane(lane=lane)) as client, pytest.raises(RuntimeError, match="broken"):
        client.post(f"/v1/broken/{uuid4()}")


def test_the_lane_answers_without_the_router() -> None:
    # Only the lane knows the route: an answer other than 404 can only be its own.
    app = FastAPI()
    install_error_handlers(app)
    router = APIRouter(prefix="/v1", route_class=DirectRoute)
    router.add_api_route("/things/{thing_id}/marks/{kind}", mark, methods=["PUT"])
    app.add_middleware(ExpressLane, routes=[r for r in router.routes if isinstance(r, APIRoute)])
    thing = uuid4()
    with TestClient(app) as client:
        answer = client.put(f"/v1/things/{thing}/marks/like", headers={"x-who": "ann"})
        refused = client.put(f"/v1/things/{UUID(int=0)}/marks/like", headers={"x-who": "ann"})
        elsewhere = client.delete(f"/v1/things/{thing}/marks/like", headers={"x-who": "ann"})
    assert answer.status_code == 200
    assert answer.json() == {"thing": str(thing), "kind": "like", "by": "ann", "method": "PUT"}
    assert refused.status_code == 404
    assert refused.json()["error"]["code"] == "not_found"
    assert elsewhere.status_code == 404  # another method: the router's, which has no route


def test_the_lane_leaves_an_app_with_overrides_to_the_router() -> None:
    app = build_lane(lane=True)
    app.dependency_overrides[who] = also_who
    with TestClient(app) as client:
        answer = client.put(f"/v1/things/{uuid4()}/marks/love")
    assert answer.status_code == 200
    assert answer.json()["by"] == "someone else"


def test_the_lane_takes_only_routes_of_the_direct_shape() -> None:
    router = APIRouter(route_class=DirectRoute)
    router.add_api_route("/search", searched, methods=["GET"])
    with pytest.raises(TypeError, match="direct shape"):
        include_express(FastAPI(), router)


def test_the_lane_refuses_app_wide_dependencies() -> None:
    router = APIRouter(route_class=DirectRoute)
    router.add_api_route("/pages/{number}", page, methods=["GET"])
    with pytest.raises(TypeError, match="app-wide dependencies"):
        include_express(FastAPI(dependencies=[Depends(audited)]), router)


def _layers(app: FastAPI) -> list[Any]:
    """The app's middleware, outermost first, down to its router."""
    layers: list[Any] = []
    layer: Any = app.build_middleware_stack()
    while layer is not None and layer is not app.router:
        layers.append(layer)
        layer = getattr(layer, "app", None)
    return layers


def test_the_command_services_hot_routes_run_in_its_lane(tmp_path: Any) -> None:
    # The command service's reactions and plays are the routes the benchmark
    # drives; a change that quietly sends them back through the router (or a
    # FastAPI upgrade that stops the plan) must show up here, not only as a
    # slower benchmark. Innermost: idempotency must wrap them.
    from starlette.middleware.exceptions import ExceptionMiddleware

    from infrastructure.settings import Settings
    from interfaces.http.commands import plays, reactions
    from interfaces.http.commands.app import create_command_app
    from interfaces.http.idempotency import IdempotencyMiddleware

    settings = Settings.model_validate({"data_dir": tmp_path, "secret_key": "k" * 40})
    app = create_command_app(settings)
    layers = [type(layer) for layer in _layers(app)]
    [lane] = [layer for layer in _layers(app) if isinstance(layer, ExpressLane)]
    hot = [r for r in (*reactions.router.routes, *plays.router.routes) if isinstance(r, APIRoute)]
    assert len(hot) == 6
    assert lane.routes == hot
    assert layers.index(IdempotencyMiddleware) < layers.index(ExpressLane)
    # No middleware of ours inside it: FastAPI's exception middleware comes next.
    assert layers[layers.index(ExpressLane) + 1] is ExceptionMiddleware
