"""Answering a query from the answers kept until the read models change.

See :mod:`projections.queries.answers` for when a kept answer is still the
answer. Keys hold the viewer: what a signed-in caller sees (their own
reactions, their private playlists) is never served to anyone else. A request
with ``X-Min-Position`` reads the read models themselves, as it does for the
other kept reads, and only answers of 200 are kept.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from uuid import UUID

from fastapi import Request, Response

from infrastructure.bootstrap import Container
from interfaces.http.queries.consistency import MIN_POSITION_HEADER
from interfaces.http.queries.threads import in_query_thread
from projections.queries.answers import AnswerKey, CurrentAnswers, Rendered


class KeptResponse(Response):
    """An answer sent again, byte for byte, headers included."""

    def __init__(self, rendered: Rendered) -> None:
        self.status_code = 200
        self.body = rendered[0]
        self.raw_headers = list(rendered[1])
        self.background = None


async def answer(
    request: Request,
    container: Container,
    viewer: UUID | None,
    render: Callable[[], Response],
    lifetime: Callable[[], float | None] = lambda: None,
) -> Response:
    """The kept answer to this request for ``viewer``, else ``render()`` in a query thread.

    ``lifetime()``, asked after ``render()``, may bound how long its answer is
    kept (None: until the read models change, or the default maximum age).
    """
    answers = container.answers
    if answers is None or MIN_POSITION_HEADER in request.headers:
        return await in_query_thread(render)
    key: AnswerKey = (request.scope["path"], request.scope["query_string"], viewer)
    if answers.changes.blocking:
        return await in_query_thread(_kept_or_rendered, answers, key, render, lifetime)
    # The stamp is a counter in memory: a kept answer costs no thread and no I/O.
    stamp = answers.changes.current()
    kept = answers.get(key, stamp)
    if kept is not None:
        return KeptResponse(kept)
    response = await in_query_thread(render)
    _keep(answers, key, stamp, response, lifetime())
    return response


def _kept_or_rendered(
    answers: CurrentAnswers[AnswerKey, Rendered],
    key: AnswerKey,
    render: Callable[[], Response],
    lifetime: Callable[[], float | None],
) -> Response:
    stamp = answers.changes.current()
    kept = answers.get(key, stamp)
    if kept is not None:
        return KeptResponse(kept)
    response = render()
    _keep(answers, key, stamp, response, lifetime())
    return response


def _keep(
    answers: CurrentAnswers[AnswerKey, Rendered],
    key: AnswerKey,
    stamp: Hashable | None,
    response: Response,
    max_age: float | None,
) -> None:
    if response.status_code == 200:
        body = bytes(response.body)
        answers.put(key, stamp, (body, tuple(response.raw_headers)), len(body), max_age)
