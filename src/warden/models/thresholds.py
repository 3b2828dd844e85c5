"""Thresholds versions: a calibration map and two band thresholds for one decision type,
stored content-addressed (the version is the SHA-256 of the document's canonical JSON), and
their maker-checker activation in the audit log.

* `propose` stores the document as a blob and appends a `thresholds` entry
  `{action: "proposed", ...}` naming the proposing admin.
* `approve` appends `{action: "activated", ...}` — only a different admin may approve a
  proposal (the proposer cannot approve their own).
* `active_thresholds` reads the log: the latest activation per decision type wins.

A decision records the thresholds version it used; the bands gate falls back to the policy's
static bands when no version is active (or the active one was fitted for another model or
rule set: it is then stale and not applied)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from warden.audit.entry import NewEntry
from warden.audit.sqlite_store import utc_now
from warden.audit.store import AuditStore
from warden.auth import Permission, Principal
from warden.canonical import canonical_json, content_id
from warden.errors import ConflictError, ForbiddenError, NotFoundError, RequestError, echo
from warden.models.calibration import CalibrationMap, apply_map

THRESHOLDS_FORMAT = 1
BLOB_KIND = "thresholds"


@dataclass(frozen=True)
class ThresholdsVersion:
    version: str
    decision_type: str
    calibration: CalibrationMap | None
    approve_at_or_below: float
    decline_at_or_above: float
    #: what the calibration was fitted for: a model (name, version, sha256) and rules version
    fitted_for: dict[str, Any]
    document: dict[str, Any]

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> ThresholdsVersion:
        cal = doc.get("calibration")
        return cls(
            version=content_id(canonical_json(doc)),
            decision_type=str(doc["decision_type"]),
            calibration=CalibrationMap.from_dict(cal) if cal else None,
            approve_at_or_below=float(doc["bands"]["approve_at_or_below"]),
            decline_at_or_above=float(doc["bands"]["decline_at_or_above"]),
            fitted_for=dict(doc.get("fitted_for", {})),
            document=doc,
        )

    def calibrate(self, raw: float) -> float:
        return raw if self.calibration is None else apply_map(self.calibration, raw)

    @property
    def bands(self) -> dict[str, float]:
        return {
            "approve_at_or_below": self.approve_at_or_below,
            "decline_at_or_above": self.decline_at_or_above,
        }


def thresholds_document(
    decision_type: str,
    calibration: CalibrationMap,
    approve_at_or_below: float,
    decline_at_or_above: float,
    *,
    fitted_for: dict[str, Any],
    costs: dict[str, float],
    review_capacity: float | None,
    fitted_on: dict[str, Any],
) -> dict[str, Any]:
    if not 0 <= approve_at_or_below < decline_at_or_above <= 1:
        raise RequestError(
            f"bands: approve_at_or_below {approve_at_or_below} must be below "
            f"decline_at_or_above {decline_at_or_above}, both within [0, 1]",
            field="bands",
        )
    return {
        "thresholds_format": THRESHOLDS_FORMAT,
        "decision_type": decision_type,
        "score": "calibrated",
        "calibration": calibration.as_dict(),
        "bands": {
            "approve_at_or_below": round(approve_at_or_below, 6),
            "decline_at_or_above": round(decline_at_or_above, 6),
        },
        "fitted_for": fitted_for,
        "costs": costs,
        "review_capacity": review_capacity,
        "fitted_on": fitted_on,
    }


def load_version(store: AuditStore, version: str) -> ThresholdsVersion:
    found = store.get_blob(version)
    if found is None or found[0] != BLOB_KIND:
        raise NotFoundError(f"no stored thresholds version {echo(version)}")
    return ThresholdsVersion.from_document(json.loads(found[1]))


async def propose(
    store: AuditStore, caller: Principal, document: dict[str, Any], report: dict[str, Any]
) -> dict[str, Any]:
    caller.require(Permission.ADMIN)
    data = canonical_json(document)
    version = store.put_blob(BLOB_KIND, data)
    body = {
        "action": "proposed",
        "decision_type": document["decision_type"],
        "thresholds_version": version,
        "proposed_by": caller.as_record(),
        "proposed_at": utc_now(),
        "bands": document["bands"],
        "fitted_for": document["fitted_for"],
        "report": report,
    }
    entry = NewEntry.of("thresholds", None, body, unique_key=f"thresholds-proposal:{version}")
    result = await store.submit_async(entry)
    held = result.conflict
    seq = held.seq if held is not None else result.seq
    return {"thresholds_version": version, "proposal_seq": seq, "already_proposed": bool(held)}


async def approve(store: AuditStore, caller: Principal, version: str) -> dict[str, Any]:
    caller.require(Permission.ADMIN)
    proposal = store.by_unique_key(f"thresholds-proposal:{version}")
    if proposal is None:
        raise NotFoundError(f"no proposed thresholds version {echo(version)}")
    body = proposal.body()
    proposer = body["proposed_by"]["name"]
    if proposer == caller.name:
        raise ForbiddenError(
            f"thresholds {version}: proposed by {proposer}; a second admin must approve "
            "(maker-checker)",
            code="thresholds.same_admin",
        )
    decision_type = body["decision_type"]
    current = active_versions(store).get(decision_type)
    if current == version:
        raise ConflictError(
            f"thresholds {version} are already active for {decision_type}",
            code="thresholds.already_active",
        )
    activation = {
        "action": "activated",
        "decision_type": decision_type,
        "thresholds_version": version,
        "proposal": {"seq": proposal.seq, "leaf_hash": proposal.leaf_hash.hex()},
        "proposed_by": body["proposed_by"],
        "approved_by": caller.as_record(),
        "activated_at": utc_now(),
        "replaces": current,
    }
    result = await store.submit_async(NewEntry.of("thresholds", None, activation))
    return {
        "thresholds_version": version,
        "decision_type": decision_type,
        "activation_seq": result.seq,
        "replaces": current,
    }


def active_versions(store: AuditStore) -> dict[str, str]:
    """decision type → the thresholds version activated last."""
    active: dict[str, str] = {}
    for entry in store.entries_of_kind("thresholds"):
        body = entry.body()
        if body.get("action") == "activated":
            active[body["decision_type"]] = body["thresholds_version"]
    return active


def proposals(store: AuditStore) -> list[dict[str, Any]]:
    out = []
    active = active_versions(store)
    for entry in store.entries_of_kind("thresholds"):
        body = entry.body()
        if body.get("action") == "proposed":
            version = body["thresholds_version"]
            out.append(
                {
                    "seq": entry.seq,
                    "decision_type": body["decision_type"],
                    "thresholds_version": version,
                    "proposed_by": body["proposed_by"]["name"],
                    "bands": body["bands"],
                    "active": active.get(body["decision_type"]) == version,
                }
            )
    return out


def active_thresholds(store: AuditStore) -> dict[str, ThresholdsVersion]:
    return {dt: load_version(store, v) for dt, v in active_versions(store).items()}
