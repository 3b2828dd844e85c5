"""Per-surface guard statistics computed from the audit log itself (so the figures are as
trustworthy as the log): how many inputs each surface checked, how many hit, what the
hits were, and where those decisions went. Red-team exercises (decisions asked for with a
`redteam` key) are counted apart: a red-team run must not inflate the hit rates."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from rich.table import Table

from warden.audit.entry import StoredEntry
from warden.audit.record import is_exercise

SURFACES = ("text", "document", "tool_args", "output")


@dataclass
class SurfaceStats:
    checked: int = 0
    hits: int = 0
    codes: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)

    @property
    def hit_rate(self) -> float:
        return self.hits / self.checked if self.checked else 0.0


@dataclass
class GuardStats:
    surfaces: dict[str, SurfaceStats]
    #: red-team exercise decisions seen and left out of `surfaces`
    exercises: int = 0


def guard_stats(entries: Iterable[StoredEntry]) -> GuardStats:
    stats = {surface: SurfaceStats() for surface in SURFACES}
    result = GuardStats(stats)
    for entry in entries:
        if entry.kind not in ("decision", "refusal"):
            continue
        body = entry.body()
        if is_exercise(body):
            result.exercises += 1
            continue
        outcome = str(body.get("outcome"))
        for gate in body.get("gates", []):
            if gate.get("gate") not in ("inputs", "outputs"):
                continue
            for finding in gate["result"].get("findings", []):
                surface = finding.get("surface")
                if surface not in stats:
                    continue
                s = stats[surface]
                s.checked += 1
                if finding.get("hit"):
                    s.hits += 1
                    s.codes[str(finding.get("code"))] += 1
                    s.outcomes[outcome] += 1
            error = gate["result"].get("error")
            if error:
                s = stats["document"]
                s.checked += 1
                s.hits += 1
                s.codes[str(error.get("code"))] += 1
                s.outcomes[outcome] += 1
    return result


def stats_table(stats: GuardStats) -> Table:
    table = Table(
        "surface",
        "checked",
        "hits",
        "hit rate",
        "top reasons",
        "flagged went to",
        title="Guard hits per surface",
        title_justify="left",
    )
    for surface, s in stats.surfaces.items():
        reasons = ", ".join(f"{c} {n}" for c, n in s.codes.most_common(3)) or "-"
        went = ", ".join(f"{o} {n}" for o, n in s.outcomes.most_common()) or "-"
        table.add_row(surface, str(s.checked), str(s.hits), f"{s.hit_rate:.1%}", reasons, went)
    return table
