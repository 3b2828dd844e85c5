"""The Gate protocol: a named object with one method that reads the context and adds its
result. `run` may be a coroutine function (gates that call models are)."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Protocol, runtime_checkable

from warden.pipeline.context import DecisionContext


@runtime_checkable
class Gate(Protocol):
    name: str
    #: whether the gate still runs after an earlier gate stopped the flow (commit does)
    runs_after_stop: bool
    # Optional: a gate with `runs_after_review = True` still runs after an earlier gate
    # forced *review* (not after a refusal) so its result is recorded for the reviewer
    # (decide and bands: the score beside the override reason). Absent means False.

    def run(self, ctx: DecisionContext) -> Awaitable[None] | None: ...
