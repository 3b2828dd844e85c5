"""A seeded stream of realistic card-payment decision requests for the demo and benchmarks.

`payment_requests(n, StreamConfig(seed=...))` yields `n` plain, JSON-serialisable request
dicts for the `payment_fraud` decision type. The same seed and `n` give exactly the same
sequence: everything is drawn from one `random.Random(seed)` and a simulated clock, never
from global random state or the wall clock. A longer stream with the same seed starts with
the shorter one.

The simulation
--------------
A population of customers (`CUSTOMERS`), each with a home jurisdiction (EU ≈ 50 %,
US ≈ 35 %, UK ≈ 15 % of the traffic), a home country (EU customers over DE, FR, IT, ES,
NL, PL, SE, IE; UK → GB; US → US), a card in the home currency (EUR, GBP or USD: the demo
keeps to these three, so PL and SE cards are EUR cards), a log-normal spend level, an
activity rate, an account age and a few per-customer traits (some gamble, some travel).
Legitimate payments arrive as a Poisson process: a simulated clock advances by exponential
gaps and each arrival belongs to a customer chosen in proportion to their activity rate.
Amounts are log-normal per merchant category (groceries small, airlines, hotels and
jewellery large), merchants are mostly domestic, some customers are on a trip abroad
(their card-present payments are then in the trip country, far from home), some buy from
foreign web shops, and a few go on short legitimate shopping sprees.

The clock runs for one simulated day before the first request is yielded, so velocity
fields are warm from the start. Velocity fields are per card (customer) and *include the
current payment*: `txn_count_1h` and `txn_count_24h` count this customer's payments
(legitimate and fraudulent) in the hour / day up to and including this one, and
`amount_sum_24h` is their sum converted into this row's `currency` at the demo's fixed
rates. Hence `txn_count_24h >= txn_count_1h >= 1` and `amount_sum_24h >= amount`.
`distance_from_home_km` is the distance between the customer's home and where the payment
happened: the terminal for card-present payments, the device (IP geolocation) for
e-commerce.

Fraud patterns
--------------
About `fraud_share` of all requests belong to a fraud *episode*: a short run of payments on
one victim's card, interleaved in time with the rest of the traffic. An episode starts only
while the fraudulent rows so far (scheduled included) are below `fraud_share` of the
stream, which keeps the share close to target at any length. The first five episodes cover
every pattern once (in a seeded order; a few thousand requests at the default share show
them all), later ones are drawn by weight so that each pattern gets a fair share of the
fraudulent rows. `_truth` names the pattern.
Every signature overlaps with legitimate traffic on purpose, so no rule set is perfect.

account_takeover
    Someone has taken over the customer's online account: 1-3 `ecom` payments minutes
    apart, almost always `is_new_device` (92 %), large amounts (median ≈ 900, mostly
    300-3,000) at electronics 5732, jewellery 5944 or money transfer 4829, merchant mostly
    domestic; the device is either abroad (large distance) or behind a local proxy (tens
    to hundreds of km). Victims skew towards young accounts (30 % have
    `account_age_days` < 60). Overlap: legitimate customers buy a new laptop on a new
    phone; large electronics and jewellery purchases are common.
card_testing
    A stolen card number checked with tiny card-not-present payments: 5-25 `ecom`
    payments about 100 s apart at digital goods 5816, misc e-commerce 5999 or charities
    8398, amounts 0.50-4.99 (some exactly 1.00), 15 % of them 5-12; mostly a new device,
    often a foreign merchant. `txn_count_1h` climbs with every payment of the run, so the
    first few look harmless. Overlap: app-store and game purchases are small 5816 `ecom`
    payments too.
merchant_collusion
    A complicit merchant in a rare category (gambling 7995 mostly, else 5944 or 4829)
    pushes repeated round amounts (500, 1,000, 2,000 ... mostly the same value again)
    through one card: 3-8 payments over several hours, `ecom` or `pos`, merchant at home
    or (gambling) in MT, CY or GI, known device, the cardholder at home. The repetition
    shows in `txn_count_24h` and `amount_sum_24h`. Overlap: legitimate gamblers deposit
    round amounts at 7995 too, occasionally 500 or 1,000.
velocity_burst
    A cloned or stolen card drained fast: 6-14 payments a few minutes apart at resaleable
    goods (5732, 5311, 5999, 5691, 5944; gift cards at 5411/5541), amounts median ≈ 350,
    mostly domestic, `pos` or `ecom` (new device likely). By the end of the run
    `txn_count_1h` is about 5-12 and `amount_sum_24h` a few thousand, far above legitimate
    traffic (medians 1 and ≈ 235), but the first payments of a run look ordinary.
    Overlap: legitimate shopping sprees and very active customers.
geo_mismatch
    The card used far from home: 1-4 payments, `pos` (skimmed card), `ecom` or `atm`, in
    a country far from `card_country` (BR, NG, ID, VN, ... for European cards; RO, UA,
    NG, ... for US cards) with `distance_from_home_km` in the thousands (an e-commerce
    attacker sometimes hides behind a proxy near home), amounts median ≈ 450; some
    destinations are near (RO, UA, TR for Europeans; MX for Americans), so the distance is
    not always large. Overlap: legitimate travellers pay abroad, often on other continents.

Requests that carry no jurisdiction
-----------------------------------
About `unlabeled_share` of the requests (legitimate or not) omit the `jurisdiction` key; the
gateway must refuse them.

`_truth` is ground truth for evaluation only; send `strip_truth(request)`.
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_right
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from random import Random
from typing import Any, Generic, TypeVar

__all__ = ["CUSTOMERS", "PATTERNS", "StreamConfig", "payment_requests", "strip_truth"]

T = TypeVar("T")

CUSTOMERS = 5000
"""Size of the simulated customer population."""

PATTERNS: tuple[str, ...] = (
    "account_takeover",
    "card_testing",
    "merchant_collusion",
    "velocity_burst",
    "geo_mismatch",
)

_HOUR = 3600.0
_DAY = 86400.0
_WARMUP = _DAY  # simulated time before the first yielded request, so velocity is warm

# fmt: off
# Data tables, kept compact by hand.
_JURISDICTION_SHARE: tuple[tuple[str, float], ...] = (("EU", 0.50), ("US", 0.35), ("UK", 0.15))
_EU_COUNTRIES: tuple[tuple[str, float], ...] = (
    ("DE", 25), ("FR", 20), ("IT", 15), ("ES", 13), ("NL", 10), ("PL", 9), ("SE", 5), ("IE", 3),
)
_HOME_CURRENCY = {"EU": "EUR", "UK": "GBP", "US": "USD"}
_HOME_COUNTRY = {"UK": "GB", "US": "US"}
# Units of each currency per EUR: fixed, the demo has no market data.
_FX = {"EUR": 1.0, "USD": 1.08, "GBP": 0.85}
_NON_EURO_CURRENCY = {"GB": "GBP", "US": "USD"}
_EUROZONE = frozenset((
    "AT", "BE", "CY", "DE", "EE", "ES", "FI", "FR", "GR", "HR", "IE", "IT", "LT", "LU", "LV",
    "MT", "NL", "PT", "SI", "SK",
))

# Reference points (population centre or capital), enough for country-to-country distances.
_COORDS: dict[str, tuple[float, float]] = {
    "AE": (25.2, 55.3), "AT": (48.2, 16.4), "BE": (50.8, 4.4), "BR": (-23.5, -46.6),
    "CA": (43.7, -79.4), "CH": (47.4, 8.5), "CN": (31.2, 121.5), "CO": (4.7, -74.1),
    "CY": (35.2, 33.4), "CZ": (50.1, 14.4), "DE": (50.9, 10.0), "DK": (55.7, 12.6),
    "DO": (18.5, -69.9), "ES": (40.4, -3.7), "FR": (47.5, 2.4), "GB": (52.5, -1.5),
    "GI": (36.1, -5.4), "GR": (38.0, 23.7), "HK": (22.3, 114.2), "HR": (45.8, 16.0),
    "ID": (-6.2, 106.8), "IE": (53.3, -6.3), "IN": (19.1, 72.9), "IT": (42.5, 12.5),
    "JP": (35.7, 139.7), "LU": (49.6, 6.1), "MA": (33.6, -7.6), "MT": (35.9, 14.5),
    "MX": (19.4, -99.1), "MY": (3.1, 101.7), "NG": (6.5, 3.4), "NL": (52.2, 5.0),
    "PH": (14.6, 121.0), "PL": (52.1, 19.4), "PT": (39.0, -8.6), "RO": (44.4, 26.1),
    "SE": (59.3, 18.1), "TH": (13.8, 100.5), "TR": (41.0, 28.9), "UA": (50.4, 30.5),
    "US": (39.8, -95.0), "VN": (10.8, 106.7), "ZA": (-26.2, 28.0),
}

# Where legitimate customers travel, by home jurisdiction (the home country is skipped).
_TRAVEL: dict[str, tuple[tuple[str, float], ...]] = {
    "EU": (("ES", 14), ("IT", 12), ("FR", 11), ("PT", 7), ("GR", 7), ("HR", 5), ("AT", 6),
           ("DE", 6), ("NL", 4), ("GB", 6), ("CH", 4), ("DK", 2), ("CZ", 3), ("TR", 4),
           ("US", 6), ("TH", 2), ("AE", 2), ("MX", 1), ("JP", 1), ("MA", 1)),
    "UK": (("ES", 18), ("FR", 12), ("IT", 9), ("PT", 8), ("GR", 7), ("IE", 6), ("NL", 5),
           ("DE", 5), ("US", 10), ("TR", 5), ("AE", 3), ("TH", 2), ("HR", 3)),
    "US": (("CA", 25), ("MX", 25), ("GB", 10), ("FR", 7), ("IT", 7), ("DO", 8), ("JP", 4),
           ("ES", 5), ("DE", 4), ("IE", 3)),
}
# Foreign web shops legitimate customers buy from.
_XB_ECOM: dict[str, tuple[tuple[str, float], ...]] = {
    "EU": (("DE", 5), ("NL", 4), ("IE", 4), ("FR", 3), ("LU", 3), ("GB", 3), ("US", 3),
           ("CN", 3), ("SE", 1)),
    "UK": (("IE", 4), ("US", 4), ("DE", 2), ("NL", 2), ("LU", 2), ("FR", 1), ("CN", 2)),
    "US": (("CN", 4), ("GB", 3), ("CA", 3), ("HK", 1), ("DE", 1), ("JP", 1)),
}
# Where a geo-mismatch fraudster uses the card, by the victim's jurisdiction.
_FRAUD_GEO: dict[str, tuple[tuple[str, float], ...]] = {
    "EU": (("BR", 10), ("NG", 12), ("ID", 10), ("VN", 8), ("PH", 8), ("TH", 8), ("IN", 8),
           ("MY", 6), ("CN", 6), ("CO", 6), ("MX", 6), ("US", 10), ("ZA", 6), ("UA", 8),
           ("RO", 8), ("TR", 5)),
    "US": (("RO", 10), ("UA", 10), ("NG", 12), ("ID", 8), ("BR", 10), ("VN", 8), ("PH", 8),
           ("IN", 8), ("CN", 8), ("GB", 6), ("MX", 10), ("CO", 8), ("TR", 5), ("TH", 6)),
}
_FRAUD_GEO["UK"] = _FRAUD_GEO["EU"]
_CARD_TEST_MERCHANTS: tuple[tuple[str, float], ...] = (
    ("US", 5), ("GB", 3), ("NL", 2), ("IE", 2), ("CY", 1), ("HK", 1), ("LT", 1),
)


@dataclass(frozen=True, slots=True)
class _Mcc:
    code: str
    median: float  # of the amount, in the card's currency, for an average spender
    sigma: float  # of log(amount)
    ecom: float  # share card-not-present (ATM: the channel is always "atm")


# ISO 18245 merchant category codes with amount profiles.
_M = {
    m.code: m
    for m in (
        _Mcc("5411", 38.0, 0.75, 0.08),  # grocery stores, supermarkets
        _Mcc("5812", 32.0, 0.70, 0.05),  # eating places, restaurants
        _Mcc("5814", 11.0, 0.50, 0.15),  # fast food
        _Mcc("5541", 55.0, 0.40, 0.00),  # service stations (fuel)
        _Mcc("5999", 42.0, 0.90, 0.65),  # miscellaneous retail / general e-commerce
        _Mcc("5311", 65.0, 0.80, 0.30),  # department stores
        _Mcc("5691", 60.0, 0.70, 0.40),  # clothing stores
        _Mcc("5732", 160.0, 1.00, 0.55),  # electronics stores
        _Mcc("5912", 22.0, 0.70, 0.10),  # drug stores, pharmacies
        _Mcc("4121", 19.0, 0.60, 0.60),  # taxis, ride-hailing
        _Mcc("4900", 85.0, 0.50, 1.00),  # utilities
        _Mcc("5816", 6.0, 0.90, 1.00),  # digital goods: games
        _Mcc("4511", 330.0, 0.70, 0.92),  # airlines
        _Mcc("7011", 250.0, 0.70, 0.50),  # hotels, lodging
        _Mcc("4829", 220.0, 1.00, 0.80),  # money transfer
        _Mcc("7995", 50.0, 1.00, 0.85),  # betting, casino gambling
        _Mcc("5944", 380.0, 1.00, 0.30),  # jewellery, watches
        _Mcc("8398", 30.0, 0.80, 0.90),  # charitable organisations
        _Mcc("6011", 0.0, 0.00, 0.00),  # ATM cash withdrawal
    )
}
_LEGIT_MIX: dict[str, float] = {
    "5411": 22, "5812": 13, "5814": 8, "5541": 8, "5999": 10, "5311": 5, "5691": 5,
    "5732": 3, "5912": 4, "4121": 4, "4900": 3, "5816": 5, "4511": 1.2, "7011": 1.5,
    "4829": 1.0, "7995": 0.15, "5944": 0.5, "8398": 0.6, "6011": 4,
}
# Gamblers: the same mix with a lot more 7995; travellers abroad: eat out, sleep, fly, ride.
_GAMBLER_MIX = {**_LEGIT_MIX, "7995": 14.0}
_TRAVEL_MIX = {**_LEGIT_MIX, "5812": 26, "7011": 8, "4121": 8, "4511": 3, "4900": 0.2,
               "5411": 14}
_SPREE_MIX = {"5311": 4, "5691": 5, "5732": 2, "5999": 3, "5812": 2, "5944": 0.5, "5411": 1}
# (amount, weight); amounts are floats: they go into the requests as they are.
_GAMBLING_DEPOSITS: tuple[tuple[float, float], ...] = (
    (10.0, 20), (20.0, 22), (25.0, 8), (50.0, 22), (100.0, 14), (200.0, 6), (500.0, 2.5),
    (1000.0, 0.8),
)
_COLLUSION_AMOUNTS: tuple[tuple[float, float], ...] = (
    (300.0, 1), (500.0, 5), (1000.0, 5), (1500.0, 2), (2000.0, 3), (2500.0, 2), (3000.0, 1.5),
    (5000.0, 1),
)
_ATO_MCC: tuple[tuple[str, float], ...] = (("5732", 45), ("5944", 20), ("4829", 35))
_CARD_TEST_MCC: tuple[tuple[str, float], ...] = (("5816", 55), ("5999", 30), ("8398", 15))
_COLLUSION_MCC: tuple[tuple[str, float], ...] = (("7995", 65), ("5944", 15), ("4829", 20))
_VELOCITY_MCC: tuple[tuple[str, float], ...] = (
    ("5732", 25), ("5311", 20), ("5999", 20), ("5691", 10), ("5944", 10), ("5411", 10),
    ("5541", 5),
)
_GEO_POS_MCC: tuple[tuple[str, float], ...] = (
    ("5732", 30), ("5999", 20), ("5311", 15), ("5944", 15), ("7011", 10), ("5812", 10),
)
_GEO_ECOM_MCC: tuple[tuple[str, float], ...] = (
    ("5732", 40), ("5999", 30), ("5816", 10), ("4829", 20),
)
# Share of fraudulent *rows* per pattern, and each pattern's mean episode length.
_PATTERN_ROWS = {
    "account_takeover": 0.22, "card_testing": 0.25, "merchant_collusion": 0.13,
    "velocity_burst": 0.22, "geo_mismatch": 0.18,
}
_PATTERN_MEAN_LEN = {
    "account_takeover": 1.6, "card_testing": 15.0, "merchant_collusion": 5.5,
    "velocity_burst": 10.0, "geo_mismatch": 2.0,
}

_P_TRIP = 0.004  # chance that a legitimate payment at home starts a trip abroad
_TRIP_DAYS = 6.0  # mean trip length
_P_XB_ECOM = 0.12  # legitimate e-commerce at a foreign web shop
_P_DOMESTIC_AWAY = 0.04  # legitimate card-present payment far from home, same country
_P_NEW_DEVICE = 0.03  # legitimate e-commerce from a device never seen for the customer
_P_SPREE = 0.006  # a legitimate card-present payment starts a shopping spree
_P_START = 0.08  # per step, while the fraud share is below target
_MAX_AMOUNT = 250_000.0  # clamp of the log-normal tails (the example policy admits 1,000,000)
# fmt: on


class _Table(Generic[T]):
    """Weighted choice by bisection over cumulative weights (what `Random.choices` does,
    without its per-call overhead)."""

    __slots__ = ("cum", "hi", "items", "total")

    def __init__(self, pairs: Sequence[tuple[T, float]] | dict[T, float]) -> None:
        items = list(pairs.items()) if isinstance(pairs, dict) else list(pairs)
        self.items: list[T] = [item for item, _ in items]
        self.cum: list[float] = []
        total = 0.0
        for _, weight in items:
            total += weight
            self.cum.append(total)
        self.total = total
        self.hi = len(self.items) - 1

    def pick(self, rng: Random) -> T:
        return self.items[bisect_right(self.cum, rng.random() * self.total, 0, self.hi)]


def _km(a: str, b: str) -> float:
    (lat1, lon1), (lat2, lon2) = _COORDS[a], _COORDS[b]
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(h))


def _merchant_currency(country: str) -> str | None:
    """The merchant's local currency if it is one the demo uses, else None."""
    return "EUR" if country in _EUROZONE else _NON_EURO_CURRENCY.get(country)


class _Customer:
    __slots__ = (
        "age0",
        "country",
        "currency",
        "gambler",
        "id",
        "jurisdiction",
        "spend",
        "sum_24h",
        "times",
        "trip_country",
        "trip_km",
        "trip_until",
        "values",
    )

    def __init__(
        self, index: int, jurisdiction: str, country: str, spend: float, age0: int, gambler: bool
    ) -> None:
        self.id = f"c-{index:06d}"
        self.jurisdiction = jurisdiction
        self.country = country
        self.currency = _HOME_CURRENCY[jurisdiction]
        self.spend = spend
        self.age0 = age0
        self.gambler = gambler
        # Times and amounts (in the card's currency) of this card's payments in the last 24 h;
        # two deques of floats rather than one of tuples: floats are not tracked by the GC.
        self.times: deque[float] = deque()
        self.values: deque[float] = deque()
        self.sum_24h = 0.0  # running sum of `values`
        self.trip_until = -1.0
        self.trip_country = country
        self.trip_km = 0.0


class _Episode:
    """One fraud run on one card; its rows share these episode-level choices."""

    __slots__ = ("amount", "channel", "country", "customer", "km", "mcc", "new_device", "pattern")

    def __init__(self, pattern: str, customer: _Customer) -> None:
        self.pattern = pattern
        self.customer = customer
        self.country = customer.country
        self.km = 0.0
        self.mcc = ""
        self.channel = "ecom"
        self.amount = 0.0
        self.new_device = False


@dataclass(frozen=True)
class StreamConfig:
    """How to generate the stream; the defaults are the demo's."""

    seed: int = 7
    # share of requests that carry no jurisdiction (the gateway must refuse them)
    unlabeled_share: float = 0.005
    # share of requests following a fraud pattern
    fraud_share: float = 0.012

    def __post_init__(self) -> None:
        for name in ("unlabeled_share", "fraud_share"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value!r}")


def strip_truth(req: dict[str, Any]) -> dict[str, Any]:
    """A copy of `req` without the `_truth` key, ready to send to the gateway."""
    out = {key: value for key, value in req.items() if key != "_truth"}
    if isinstance(out.get("inputs"), dict):
        out["inputs"] = dict(out["inputs"])
    return out


def payment_requests(n: int, config: StreamConfig = StreamConfig()) -> Iterator[dict[str, Any]]:
    """Yield `n` payment-fraud decision requests, deterministic in `config.seed`."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return _Simulation(config).run(n)


class _Simulation:
    def __init__(self, config: StreamConfig) -> None:
        self.config = config
        self.rng = rng = Random(config.seed)
        self.now = 0.0
        self.customers: list[_Customer] = []
        self.young: list[_Customer] = []
        eu_country = _Table(_EU_COUNTRIES)
        rates: list[float] = []
        jurisdictions: list[str] = []
        for jurisdiction, quota in _JURISDICTION_SHARE:  # exact quotas, then shuffled
            jurisdictions += [jurisdiction] * round(quota * CUSTOMERS)
        rng.shuffle(jurisdictions)
        for index, jurisdiction in enumerate(jurisdictions):
            country = eu_country.pick(rng) if jurisdiction == "EU" else _HOME_COUNTRY[jurisdiction]
            if rng.random() < 0.05:  # recently opened accounts
                age0 = rng.randrange(60)
            else:
                age0 = min(12000, 60 + int(math.exp(rng.gauss(math.log(900), 0.9))))
            spend = math.exp(rng.gauss(0.0, 0.55))
            customer = _Customer(index, jurisdiction, country, spend, age0, rng.random() < 0.04)
            self.customers.append(customer)
            if age0 < 60:
                self.young.append(customer)
            rates.append(min(40.0, math.exp(rng.gauss(math.log(1.6), 0.75))))  # per day
        # Scale activity per jurisdiction so each one's share of the traffic is exact in
        # expectation, whatever the draw of individual rates.
        totals = {j: 0.0 for j, _ in _JURISDICTION_SHARE}
        for customer, rate in zip(self.customers, rates, strict=True):
            totals[customer.jurisdiction] += rate
        total_rate = sum(rates)
        share = dict(_JURISDICTION_SHARE)
        self.pick_customer = _Table(
            [
                (c, r * share[c.jurisdiction] * total_rate / totals[c.jurisdiction])
                for c, r in zip(self.customers, rates, strict=True)
            ]
        )
        self.arrival_rate = total_rate / _DAY  # per simulated second

        self.mix = _Table(_LEGIT_MIX)
        self.gambler_mix = _Table(_GAMBLER_MIX)
        self.travel_mix = _Table(_TRAVEL_MIX)
        self.spree_mix = _Table(_SPREE_MIX)
        self.deposits = _Table(_GAMBLING_DEPOSITS)
        self.collusion_amounts = _Table(_COLLUSION_AMOUNTS)
        self.ato_mcc = _Table(_ATO_MCC)
        self.card_test_mcc = _Table(_CARD_TEST_MCC)
        self.card_test_country = _Table(_CARD_TEST_MERCHANTS)
        self.collusion_mcc = _Table(_COLLUSION_MCC)
        self.velocity_mcc = _Table(_VELOCITY_MCC)
        self.geo_pos_mcc = _Table(_GEO_POS_MCC)
        self.geo_ecom_mcc = _Table(_GEO_ECOM_MCC)
        self.travel = {j: _Table(t) for j, t in _TRAVEL.items()}
        self.xb_ecom = {j: _Table(t) for j, t in _XB_ECOM.items()}
        self.fraud_geo = {j: _Table(t) for j, t in _FRAUD_GEO.items()}
        self.patterns = _Table([(p, _PATTERN_ROWS[p] / _PATTERN_MEAN_LEN[p]) for p in PATTERNS])
        self.first_patterns = list(PATTERNS)
        rng.shuffle(self.first_patterns)
        self.km_cache: dict[tuple[str, str], float] = {}
        # Pending scheduled rows: (time, sequence, customer, episode or None for a spree).
        self.pending: list[tuple[float, int, _Customer, _Episode | None]] = []
        self.sequence = 0
        self.fraud_rows = 0  # fraudulent rows emitted or scheduled
        self.episodes = 0

    # --- the clock and the event loop -----------------------------------------------------

    def run(self, n: int) -> Iterator[dict[str, Any]]:
        rng = self.rng
        config = self.config
        pending = self.pending
        random = rng.random
        pick_customer = self.pick_customer.pick
        mean_gap = 1.0 / self.arrival_rate
        next_arrival = -math.log(1.0 - random()) * mean_gap  # exponential gaps
        while next_arrival < _WARMUP:  # warm the velocity state, yield nothing, no fraud
            self.now = next_arrival
            self._legit(pick_customer(rng), spree_ok=False)
            next_arrival -= math.log(1.0 - random()) * mean_gap
        prefix = f"demo-{config.seed}-"
        unlabeled = config.unlabeled_share
        target = config.fraud_share
        for index in range(n):
            if pending and pending[0][0] <= next_arrival:
                self.now, _, customer, episode = heapq.heappop(pending)
                if episode is None:
                    inputs = self._spree_row(customer)
                    truth: dict[str, Any] = {"fraud": False, "pattern": None}
                else:
                    inputs = self._fraud_row(episode)
                    truth = {"fraud": True, "pattern": episode.pattern}
            else:
                self.now = next_arrival
                next_arrival -= math.log(1.0 - random()) * mean_gap
                customer = pick_customer(rng)
                inputs = self._legit(customer, spree_ok=True)
                truth = {"fraud": False, "pattern": None}
                if self.fraud_rows < target * (index + 1) and random() < _P_START:
                    self._start_episode()
            request: dict[str, Any] = {"decision_type": "payment_fraud"}
            if random() >= unlabeled:
                request["jurisdiction"] = customer.jurisdiction
            request["idempotency_key"] = prefix + str(index)
            request["inputs"] = inputs
            request["_truth"] = truth
            yield request

    def _schedule(self, at: float, customer: _Customer, episode: _Episode | None) -> None:
        self.sequence += 1
        heapq.heappush(self.pending, (at, self.sequence, customer, episode))

    def _distance(self, a: str, b: str) -> float:
        key = (a, b)
        km = self.km_cache.get(key)
        if km is None:
            km = self.km_cache[key] = _km(a, b)
        return km

    # --- building one row -------------------------------------------------------------------

    def _row(
        self,
        customer: _Customer,
        mcc: str,
        channel: str,
        merchant_country: str,
        amount: float,
        currency: str,
        new_device: bool,
        km: float,
    ) -> dict[str, Any]:
        """Record the payment on the card's history and build the request inputs.

        `amount` is in `currency`; velocity is kept in the card's currency and reported in
        the row's currency, floored at the row's own amount against rounding."""
        amount = round(amount, 2)
        if amount < 0.01:
            amount = 0.01
        elif amount > _MAX_AMOUNT:
            amount = _MAX_AMOUNT
        now = self.now
        times = customer.times
        values = customer.values
        total = customer.sum_24h
        cutoff = now - _DAY
        while times and times[0] <= cutoff:
            times.popleft()
            total -= values.popleft()
        if not times:
            total = 0.0  # no drift carried over from the subtractions
        times.append(now)
        if currency == customer.currency:
            values.append(amount)
            total += amount
            sum_24h = round(total, 2)
        else:
            rate = _FX[currency] / _FX[customer.currency]
            values.append(amount / rate)
            total += amount / rate
            sum_24h = round(total * rate, 2)
        customer.sum_24h = total
        hour_ago = now - _HOUR
        count_1h = 0
        for at in reversed(times):
            if at <= hour_ago:
                break
            count_1h += 1
        return {
            "amount": amount,
            "currency": currency,
            "merchant_category": mcc,
            "merchant_country": merchant_country,
            "card_country": customer.country,
            "channel": channel,
            "customer_id": customer.id,
            "account_age_days": customer.age0 + int(now / _DAY),
            "txn_count_1h": count_1h,
            "txn_count_24h": len(times),
            "amount_sum_24h": sum_24h if sum_24h >= amount else amount,
            "is_new_device": new_device,
            "distance_from_home_km": round(km, 1),
        }

    def _charge_currency(self, customer: _Customer, merchant_country: str) -> str:
        """The card's currency, or for 70 % of payments at a foreign merchant whose local
        currency is one of ours, that one (the rest chose dynamic currency conversion)."""
        local = _merchant_currency(merchant_country)
        if local is None or local == customer.currency or self.rng.random() < 0.3:
            return customer.currency
        return local

    def _amount(self, mcc: str, scale: float) -> float:
        profile = _M[mcc]
        return profile.median * scale * math.exp(self.rng.gauss(0.0, profile.sigma))

    def _convert(self, customer: _Customer, currency: str, amount: float) -> float:
        """`amount` in the card's currency, expressed in `currency`."""
        return amount * _FX[currency] / _FX[customer.currency]

    def _near_home_km(self, median: float) -> float:
        """Log-logistic around `median` (log-sd ≈ 1): mostly close, a long tail; cheaper to
        draw than a log-normal."""
        return median * math.pow(1.0 / (1.0 - self.rng.random()) - 1.0, 0.55)

    # --- legitimate traffic ----------------------------------------------------------------

    def _legit(self, customer: _Customer, *, spree_ok: bool) -> dict[str, Any]:
        # The hot path of the generator: local names and few calls on purpose.
        rng = self.rng
        random = rng.random
        now = self.now
        travelling = now < customer.trip_until
        if travelling:
            table = self.travel_mix
        else:
            table = self.gambler_mix if customer.gambler else self.mix
        mcc = table.items[bisect_right(table.cum, random() * table.total, 0, table.hi)]
        profile = _M[mcc]
        channel = "atm" if mcc == "6011" else "ecom" if random() < profile.ecom else "pos"
        home = customer.country
        currency = customer.currency
        if travelling:
            km = customer.trip_km * (0.85 + 0.3 * random())
            merchant = home if channel == "ecom" and random() < 0.7 else customer.trip_country
            currency = self._charge_currency(customer, merchant)
        elif channel == "ecom":
            km = 3.0 * math.pow(1.0 / (1.0 - random()) - 1.0, 0.55)  # as in _near_home_km
            merchant = home
            if random() < _P_XB_ECOM:
                merchant = self.xb_ecom[customer.jurisdiction].pick(rng)
                if merchant == home:
                    merchant = "US" if home != "US" else "CN"
                currency = self._charge_currency(customer, merchant)
        else:
            merchant = home
            if random() < _P_DOMESTIC_AWAY:
                km = rng.uniform(300.0, 4000.0) if home == "US" else rng.uniform(60.0, 700.0)
            else:
                km = 4.0 * math.pow(1.0 / (1.0 - random()) - 1.0, 0.55)
        if mcc == "6011":
            amount = 20.0 * rng.choice((1, 1, 2, 2, 2, 3, 4, 5, 5, 10, 10, 15, 20, 25))
        elif mcc == "7995" and random() < 0.75:
            amount = self.deposits.pick(rng)
        else:
            amount = profile.median * customer.spend * math.exp(rng.gauss(0.0, profile.sigma))
            if currency != customer.currency:
                amount *= _FX[currency] / _FX[customer.currency]
        new_device = channel == "ecom" and random() < _P_NEW_DEVICE
        row = self._row(customer, mcc, channel, merchant, amount, currency, new_device, km)
        if not travelling and random() < _P_TRIP:
            destination = self.travel[customer.jurisdiction].pick(rng)
            if destination == home:
                destination = "GB" if home != "GB" else "ES"
            customer.trip_country = destination
            customer.trip_km = self._distance(home, destination)
            customer.trip_until = now + rng.expovariate(1.0 / (_TRIP_DAYS * _DAY))
        if spree_ok and channel == "pos" and random() < _P_SPREE:
            at = now
            for _ in range(rng.randint(3, 8)):
                at += rng.expovariate(1.0 / (12 * 60.0))
                self._schedule(at, customer, None)
        return row

    def _spree_row(self, customer: _Customer) -> dict[str, Any]:
        """A legitimate shopping spree: several card-present payments within an hour or two."""
        rng = self.rng
        mcc = self.spree_mix.pick(rng)
        if self.now < customer.trip_until:
            merchant, km = customer.trip_country, customer.trip_km * rng.uniform(0.9, 1.1)
        else:
            merchant, km = customer.country, self._near_home_km(8.0)
        currency = self._charge_currency(customer, merchant)
        amount = self._convert(customer, currency, self._amount(mcc, customer.spend * 1.5))
        return self._row(customer, mcc, "pos", merchant, amount, currency, False, km)

    # --- fraud ---------------------------------------------------------------------------

    def _start_episode(self) -> None:
        rng = self.rng
        if self.episodes < len(self.first_patterns):
            pattern = self.first_patterns[self.episodes]
        else:
            pattern = self.patterns.pick(rng)
        self.episodes += 1
        if pattern == "account_takeover" and self.young and rng.random() < 0.3:
            customer = rng.choice(self.young)
        else:
            customer = rng.choice(self.customers)
        episode = _Episode(pattern, customer)
        home = customer.country
        if pattern == "account_takeover":
            rows, gap = rng.choices((1, 2, 3), (55, 30, 15))[0], 8 * 60.0
            episode.new_device = rng.random() < 0.92
            if rng.random() < 0.45:
                episode.km = self._distance(home, self.fraud_geo[customer.jurisdiction].pick(rng))
            else:
                episode.km = self._near_home_km(80.0)
        elif pattern == "card_testing":
            rows, gap = rng.randint(5, 25), 100.0
            episode.mcc = self.card_test_mcc.pick(rng)
            if rng.random() < 0.6:
                episode.country = self.card_test_country.pick(rng)
            episode.new_device = rng.random() < 0.8
            if rng.random() < 0.5:
                episode.km = self._distance(home, self.fraud_geo[customer.jurisdiction].pick(rng))
            else:
                episode.km = self._near_home_km(50.0)
        elif pattern == "merchant_collusion":
            rows, gap = rng.randint(3, 8), 90 * 60.0
            episode.mcc = self.collusion_mcc.pick(rng)
            if episode.mcc == "7995":
                episode.channel = "ecom" if rng.random() < 0.8 else "pos"
                if rng.random() < 0.5:
                    episode.country = rng.choice(("MT", "MT", "CY", "GI"))
            else:
                episode.channel = "pos" if rng.random() < 0.7 else "ecom"
            episode.amount = self.collusion_amounts.pick(rng)
            episode.new_device = episode.channel == "ecom" and rng.random() < 0.1
        elif pattern == "velocity_burst":
            rows, gap = rng.randint(6, 14), 6 * 60.0
            episode.new_device = rng.random() < 0.6
            episode.km = self._near_home_km(300.0 if home == "US" else 25.0)
            if rng.random() < 0.15:
                episode.country = self.xb_ecom[customer.jurisdiction].pick(rng)
        else:  # geo_mismatch
            rows, gap = rng.choices((1, 2, 3, 4), (40, 30, 20, 10))[0], 40 * 60.0
            episode.country = self.fraud_geo[customer.jurisdiction].pick(rng)
            if episode.country == home:
                episode.country = "NG"
            episode.channel = rng.choices(("pos", "ecom", "atm"), (55, 35, 10))[0]
            episode.new_device = episode.channel == "ecom" and rng.random() < 0.75
            if episode.channel == "ecom" and rng.random() < 0.3:
                episode.km = self._near_home_km(60.0)  # behind a proxy near the victim
            else:
                episode.km = self._distance(home, episode.country)
        at = self.now
        for _ in range(rows):
            at += rng.expovariate(1.0 / gap)
            self._schedule(at, customer, episode)
        self.fraud_rows += rows

    def _fraud_row(self, episode: _Episode) -> dict[str, Any]:
        rng = self.rng
        customer = episode.customer
        home = customer.country
        pattern = episode.pattern
        if pattern == "account_takeover":
            mcc = self.ato_mcc.pick(rng)
            merchant = home
            if rng.random() < 0.25:
                merchant = self.xb_ecom[customer.jurisdiction].pick(rng)
            currency = self._charge_currency(customer, merchant)
            amount = self._convert(customer, currency, 900.0 * math.exp(rng.gauss(0.0, 0.6)))
            km = episode.km * rng.uniform(0.9, 1.1)
            return self._row(
                customer, mcc, "ecom", merchant, amount, currency, episode.new_device, km
            )
        if pattern == "card_testing":
            mcc = episode.mcc if rng.random() < 0.8 else self.card_test_mcc.pick(rng)
            merchant = episode.country
            currency = _merchant_currency(merchant) or customer.currency
            r = rng.random()
            if r < 0.2:
                amount = 1.0
            elif r < 0.85:
                amount = rng.uniform(0.5, 4.99)
            else:
                amount = rng.uniform(5.0, 12.0)
            km = episode.km * rng.uniform(0.9, 1.1)
            return self._row(
                customer, mcc, "ecom", merchant, amount, currency, episode.new_device, km
            )
        if pattern == "merchant_collusion":
            merchant = episode.country
            currency = _merchant_currency(merchant) or customer.currency
            amount = episode.amount if rng.random() < 0.7 else self.collusion_amounts.pick(rng)
            return self._row(
                customer,
                episode.mcc,
                episode.channel,
                merchant,
                amount,
                currency,
                episode.new_device,
                self._near_home_km(4.0),
            )
        if pattern == "velocity_burst":
            mcc = self.velocity_mcc.pick(rng)
            channel = "ecom" if rng.random() < 0.4 else "pos"
            merchant = episode.country if channel == "ecom" else home
            currency = self._charge_currency(customer, merchant)
            median = 150.0 if mcc in ("5411", "5541") else 350.0
            amount = self._convert(customer, currency, median * math.exp(rng.gauss(0.0, 0.7)))
            new_device = channel == "ecom" and episode.new_device
            km = episode.km * rng.uniform(0.7, 1.3)
            return self._row(customer, mcc, channel, merchant, amount, currency, new_device, km)
        # geo_mismatch
        channel = episode.channel
        merchant = episode.country
        currency = self._charge_currency(customer, merchant)
        if channel == "atm":
            mcc = "6011"
            amount = 100.0 * rng.randint(1, 5)
        else:
            mcc = (self.geo_ecom_mcc if channel == "ecom" else self.geo_pos_mcc).pick(rng)
            amount = self._convert(customer, currency, 450.0 * math.exp(rng.gauss(0.0, 0.8)))
        km = episode.km * rng.uniform(0.9, 1.1)
        return self._row(customer, mcc, channel, merchant, amount, currency, episode.new_device, km)
