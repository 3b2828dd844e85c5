"""The scored variant of the bundled example policy: the same file with a `model:` line for
`payment_fraud` (the demo and the benchmarks run it; the tests check the two stay in step)."""

from __future__ import annotations

from pathlib import Path

SCORED_POLICY = Path(__file__).parent.parent / "demo" / "policy-scored.yaml"
ANCHOR = "    costs: {false_approve: 500, false_decline: 25, review: 4}\n"
MODEL_LINES = (
    "    # The scoring model (MLflow registry in the data directory; `warden model train`).\n"
    "    # Its score joins the rules' (noisy-OR); `warden calibrate` fits the bands to it.\n"
    "    model: fraud-lgbm@champion\n"
)


def scored_policy_text(example: str) -> str:
    if example.count(ANCHOR) != 1:
        raise ValueError("the example policy's payment_fraud costs line has changed")
    return example.replace(ANCHOR, ANCHOR + MODEL_LINES)
