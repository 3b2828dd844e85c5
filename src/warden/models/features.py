"""Online features: computed from a decision's validated inputs, the same code at training
time and at decision time, so what the model saw in training is what it sees live.

A feature set has a versioned id (recorded in every decision and with every trained model)
and a fixed, named column order. Categorical columns (merchant category, channel) are small
integer codes; an unseen category maps to -1, which LightGBM treats as "other"."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from warden.errors import PolicyError

#: merchant categories with a code of their own (ISO 18245); any other → -1
_MCC = (
    "5411", "5812", "5814", "5541", "5999", "5311", "5691", "5732", "5944", "4829", "5816",
    "8398", "7995", "7011", "4121", "4511", "4900", "6011", "5912", "5942",
)  # fmt: skip
_MCC_CODE = {code: float(i) for i, code in enumerate(_MCC)}
_CHANNEL_CODE = {"pos": 0.0, "ecom": 1.0, "atm": 2.0}
#: units per EUR (the demo's fixed rates; unknown currencies count as EUR)
_FX = {"EUR": 1.0, "USD": 1.08, "GBP": 0.85}


@dataclass(frozen=True)
class FeatureSet:
    id: str
    names: tuple[str, ...]
    categorical: tuple[str, ...]
    compute: Callable[[Mapping[str, Any]], list[float]]

    def values(self, inputs: Mapping[str, Any]) -> list[float]:
        return self.compute(inputs)

    def as_record(self, values: list[float]) -> dict[str, float]:
        return {name: round(v, 6) for name, v in zip(self.names, values, strict=True)}


def _payment_v1(x: Mapping[str, Any]) -> list[float]:
    amount = float(x["amount"])
    eur = amount / _FX.get(str(x.get("currency")), 1.0)
    sum_24h = float(x["amount_sum_24h"])
    count_1h = float(x["txn_count_1h"])
    count_24h = float(x["txn_count_24h"])
    return [
        math.log1p(eur),
        _MCC_CODE.get(str(x["merchant_category"]), -1.0),
        _CHANNEL_CODE.get(str(x["channel"]), -1.0),
        1.0 if x["merchant_country"] != x["card_country"] else 0.0,
        math.log1p(float(x["distance_from_home_km"])),
        float(x["account_age_days"]),
        count_1h,
        count_24h,
        math.log1p(sum_24h / _FX.get(str(x.get("currency")), 1.0)),
        amount / sum_24h if sum_24h > 0 else 1.0,
        1.0 if x["is_new_device"] else 0.0,
        1.0 if amount >= 100 and amount % 100 == 0 else 0.0,
        1.0 if amount < 5 else 0.0,
        count_1h / count_24h if count_24h > 0 else 1.0,
    ]


PAYMENT_V1 = FeatureSet(
    id="payment/v1",
    names=(
        "log_amount_eur",
        "merchant_category",
        "channel",
        "cross_border",
        "log_distance_km",
        "account_age_days",
        "txn_count_1h",
        "txn_count_24h",
        "log_amount_sum_24h_eur",
        "amount_share_of_24h",
        "is_new_device",
        "round_amount",
        "tiny_amount",
        "share_of_day_in_last_hour",
    ),
    categorical=("merchant_category", "channel"),
    compute=_payment_v1,
)

FEATURE_SETS: dict[str, FeatureSet] = {PAYMENT_V1.id: PAYMENT_V1}


def feature_set(feature_set_id: str) -> FeatureSet:
    try:
        return FEATURE_SETS[feature_set_id]
    except KeyError:
        known = ", ".join(sorted(FEATURE_SETS))
        raise PolicyError(f"unknown feature set {feature_set_id!r} (known: {known})") from None
