"""How far each projection has got: for read-your-writes and for operators."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Engine, select

from projections.schema import projection_positions


class PositionQueries:
    """Reads ``projection_positions``."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def positions(self) -> dict[str, int]:
        """Every projection's position."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(projection_positions.c.name, projection_positions.c.position)
            ).all()
        return {r.name: int(r.position) for r in rows}

    def lowest(self, names: Iterable[str]) -> int:
        """The lowest position among these projections (0 for one not started)."""
        positions = self.positions()
        return min((positions.get(name, 0) for name in names), default=0)
