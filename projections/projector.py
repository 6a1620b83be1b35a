"""The projector base: a table from event classes to short handlers.

Handlers are looked up by the stored event's topic before it is decoded, so
events a projector does not handle cost nothing but a dictionary lookup; the
runner still advances the position over them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar, TypeVar

from eventsourcing.domain import DomainEventProtocol
from eventsourcing.utils import get_topic
from sqlalchemy import Connection, Engine, Table

E = TypeVar("E")
Handler = Callable[[Any, Connection, Any], None]


def on(*event_classes: type[Any]) -> Callable[[Handler], Handler]:
    """Mark a projector method as the handler of these event classes."""

    def mark(method: Handler) -> Handler:
        method.__dict__.setdefault("_handles", []).extend(event_classes)
        return method

    return mark


class Projector:
    """Builds one read model from the event log.

    Subclasses set ``name``, ``version`` (bump it when the handlers change: the
    read model is then rebuilt) and ``tables``, and mark handlers with :func:`on`.
    """

    name: ClassVar[str]
    version: ClassVar[int] = 1
    tables: ClassVar[Sequence[Table]] = ()
    # True for a policy rather than a read model. Its work outside the database
    # (storage calls) may be slow, so it follows the log in a thread of its own
    # and never holds the read models back (projections.worker); no query waits
    # for its position, so that may lag a little (projections.runner.PolicyRunner).
    policy: ClassVar[bool] = False
    _handlers: ClassVar[dict[str, Handler]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._handlers = {}
        for base in reversed(cls.__mro__):
            for attribute in vars(base).values():
                for event_class in getattr(attribute, "_handles", ()):
                    cls._handlers[get_topic(event_class)] = attribute

    def handles(self, topic: str) -> bool:
        """True when some handler wants events of this topic."""
        return topic in self._handlers

    def committed(self, engine: Engine, events: Sequence[DomainEventProtocol[Any]]) -> None:
        """Called after a batch of these events committed; for work outside transactions.

        Nothing by default. Must be idempotent and quick: it runs in the
        projector's thread, and a crash right before it skips it for that batch.
        """

    def apply(self, conn: Connection, events: Sequence[DomainEventProtocol[Any]]) -> None:
        """Apply a batch of events, in log order, inside the batch's transaction."""
        for domain_event in events:
            self._handlers[get_topic(type(domain_event))](self, conn, domain_event)
