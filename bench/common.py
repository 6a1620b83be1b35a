"""What every scenario shares: figures paired with baselines, repetitions, and the reports.

A scenario measures its subject and its baseline in the same run, several
times, alternating them so that drift on a shared machine hits both alike,
and keeps the median of each. The reports (JSON, a Markdown table, a PNG
chart, and the table copied into docs/benchmarks.md) state every ratio.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from tests.support.postgres import PostgresCluster

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
# The files that show the table, between the two markers.
DOCS = (ROOT / "docs" / "benchmarks.md", ROOT / "README.md")
DOC_BEGIN = "<!-- bench:table:begin -->"
DOC_END = "<!-- bench:table:end -->"
TIMES = "\N{MULTIPLICATION SIGN}"

# Cheap hashing in the benchmark's setup (registrations, logins); no measured
# request hashes a password.
FAST_HASHING = {
    "THEPLAYLIST_ARGON2_TIME_COST": "1",
    "THEPLAYLIST_ARGON2_MEMORY_COST_KIB": "1024",
    "THEPLAYLIST_ARGON2_PARALLELISM": "1",
}


@dataclass
class Figure:
    """One measured figure and its baseline, from the same run."""

    scenario: str
    subject: str
    unit: str
    value: float
    baseline: str
    baseline_value: float
    higher_is_better: bool = True
    target: float | None = None
    limit: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        """How many times better than the baseline (above 1 is better)."""
        if self.higher_is_better:
            return self.value / self.baseline_value if self.baseline_value else float("nan")
        return self.baseline_value / self.value if self.value else float("nan")

    @property
    def met(self) -> bool | None:
        """Whether the target ratio (or the absolute limit) is reached; None without one."""
        if self.limit is not None:
            return self.value <= self.limit
        return None if self.target is None else self.ratio >= self.target

    @property
    def target_text(self) -> str:
        """The target as the table shows it."""
        if self.limit is not None:
            return f"\N{LESS-THAN OR EQUAL TO} {self.limit:g} {self.unit}"
        if self.target is not None:
            return f"\N{GREATER-THAN OR EQUAL TO} {self.target:.2g}{TIMES}"
        return ""


@dataclass
class Context:
    """What a scenario gets: the mode, the database, a scratch dir and a time budget."""

    quick: bool
    cluster: PostgresCluster
    scratch: Path
    reps: int
    log: Path
    # Worker processes of the command and query services (and of their baselines).
    workers: int = 1
    # Figures a later scenario builds on (the maximum command rate...).
    shared: dict[str, float] = field(default_factory=dict)

    def schema(self) -> str:
        """A new empty PostgreSQL schema."""
        name = f"bench_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.cluster.url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        return name

    def env(self, backend: str, **overrides: str) -> dict[str, str]:
        """THEPLAYLIST_* settings for a fresh store on ``backend`` (``postgres``/``sqlite``)."""
        data = self.scratch / uuid.uuid4().hex[:12]
        values = {
            "THEPLAYLIST_DATA_DIR": str(data),
            "THEPLAYLIST_SECRET_KEY": "bench-" + uuid.uuid4().hex + uuid.uuid4().hex,
            "THEPLAYLIST_LOG_LEVEL": "WARNING",
            "THEPLAYLIST_LOG_FORMAT": "text",
            "THEPLAYLIST_COOKIE_SECURE": "false",
            "THEPLAYLIST_ACCESS_TOKEN_TTL_SECONDS": "86400",
            **FAST_HASHING,
        }
        if backend == "postgres":
            values["THEPLAYLIST_DATABASE_URL"] = self.cluster.url
            values["THEPLAYLIST_DATABASE_SCHEMA"] = self.schema()
        values.update(overrides)
        return values


def alternate(reps: int, measures: dict[str, Callable[[], float]]) -> dict[str, list[float]]:
    """Run each measure ``reps`` times, interleaved; every sample by name."""
    samples: dict[str, list[float]] = {name: [] for name in measures}
    for _ in range(reps):
        for name, measure in measures.items():
            samples[name].append(measure())
    return samples


def median(values: list[float]) -> float:
    """The median (NaN when empty)."""
    return statistics.median(values) if values else float("nan")


def timed(action: Callable[[], Any]) -> float:
    """Seconds taken by ``action``."""
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def _number(value: float, unit: str) -> str:
    if value != value:  # NaN
        return "n/a"
    if value >= 100:
        return f"{value:,.0f} {unit}"
    return f"{value:,.1f} {unit}"


def markdown(
    figures: list[Figure],
    quick: bool,
    measured_at: datetime | None = None,
    remeasured: dict[str, str] | None = None,
) -> str:
    """The results table, with ratios and targets (``remeasured``: scenario -> when)."""
    when = measured_at or datetime.now(UTC)
    later = "".join(
        f"; {name} measured again at {datetime.fromisoformat(at):%Y-%m-%d %H:%M} UTC"
        for name, at in (remeasured or {}).items()
    )
    lines = [
        f"Measured {when:%Y-%m-%d %H:%M} UTC on {platform.node() or 'this machine'}"
        f" ({'quick' if quick else 'full'} mode; median of repetitions; subject and baseline"
        f" measured in the same run{later}).",
        "",
        "| scenario | subject | value | baseline | baseline value | ratio | target | met |",
        "| --- | --- | ---: | --- | ---: | ---: | ---: | :---: |",
    ]
    for f in figures:
        target = f.target_text
        met = "" if f.met is None else ("yes" if f.met else "no")
        lines.append(
            f"| {f.scenario} | {f.subject} | {_number(f.value, f.unit)} | {f.baseline} | "
            f"{_number(f.baseline_value, f.unit)} | {f.ratio:.2f}{TIMES} | {target} | {met} |"
        )
    notes = [f for f in figures if f.detail.get("note")]
    if notes:
        lines.append("")
        lines += [f"- {f.scenario}, {f.subject}: {f.detail['note']}" for f in notes]
    return "\n".join(lines) + "\n"


def chart(figures: list[Figure], path: Path) -> None:
    """A bar chart of every ratio, with its target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{f.scenario}: {f.subject}\nvs {f.baseline}" for f in figures]
    rows = list(range(len(figures)))
    height = max(2.5, 0.6 * len(figures) + 1)
    fig, ax = plt.subplots(figsize=(11, height))
    colours = ["#4c72b0" if f.met is None else ("#55a868" if f.met else "#c44e52") for f in figures]
    ax.barh(rows, [f.ratio for f in figures], color=colours)
    for row, f in zip(rows, figures, strict=True):
        if f.target is not None and f.limit is None:
            ax.plot([f.target, f.target], [row - 0.4, row + 0.4], color="black", lw=2)
    ax.set_yticks(rows, labels, fontsize=8)
    ax.axvline(1.0, color="grey", lw=1, ls="--")
    ax.set_xscale("log")
    ax.set_xlabel(
        "ratio to the baseline measured in the same run (log; above 1 is better;"
        " black: target; green met, red not)"
    )
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def load_figures(path: Path) -> list[Figure]:
    """The figures of a results file (to render the reports again)."""
    names = {f.name for f in fields(Figure)}
    return [
        Figure(**{k: v for k, v in item.items() if k in names})
        for item in json.loads(path.read_text())["figures"]
    ]


def write_reports(
    figures: list[Figure], quick: bool, extra: dict[str, Any], measured_at: str | None = None
) -> str:
    """Write latest.json, latest.md, latest.png and the table in the docs (``DOCS``)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    when = datetime.fromisoformat(measured_at) if measured_at else datetime.now(UTC)
    table = markdown(figures, quick, when, extra.get("remeasured"))
    payload = {
        "measured_at": when.isoformat(),
        "mode": "quick" if quick else "full",
        "figures": [{**asdict(f), "ratio": f.ratio, "met": f.met} for f in figures],
        **extra,
    }
    (RESULTS / "latest.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    (RESULTS / "latest.md").write_text(table)
    if figures:
        chart(figures, RESULTS / "latest.png")
    for doc in DOCS:
        text = doc.read_text() if doc.exists() else ""
        if DOC_BEGIN in text and DOC_END in text:
            head, rest = text.split(DOC_BEGIN, 1)
            _, tail = rest.split(DOC_END, 1)
            doc.write_text(f"{head}{DOC_BEGIN}\n{table}{DOC_END}{tail}")
    return table
