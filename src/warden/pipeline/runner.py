"""Runs gates in order. It knows nothing about any particular gate."""

from __future__ import annotations

import inspect
from collections.abc import Sequence

from warden.pipeline.context import DecisionContext
from warden.pipeline.gate import Gate


class Pipeline:
    def __init__(self, gates: Sequence[Gate]) -> None:
        names = [g.name for g in gates]
        if len(set(names)) != len(names):
            raise ValueError(f"gate names must be unique: {names}")
        self.gates = tuple(gates)

    @property
    def names(self) -> list[str]:
        return [g.name for g in self.gates]

    async def run(self, ctx: DecisionContext) -> DecisionContext:
        for gate in self.gates:
            # a gate may still add its result after a forced *review* (never a refusal)
            if (
                ctx.stop is not None
                and not gate.runs_after_stop
                and (
                    ctx.stop.disposition != "review"
                    or not getattr(gate, "runs_after_review", False)
                )
            ):
                continue
            result = gate.run(ctx)
            # most gates are synchronous and return None: skip the ABC check for them
            # (inspect.isawaitable of None costs an isinstance against an ABC)
            if result is not None and inspect.isawaitable(result):
                await result
        return ctx
