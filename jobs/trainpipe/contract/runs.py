"""A run's identity: a digest of the spec fields that change its outputs, plus the user's rerun token.

Scheduling fields (resources, selectors, images, suspend, TTL, queue, parallelism) are not part of it,
so editing them never starts a new run. The operator names Jobs and the output folder after it.
"""

from __future__ import annotations

import hashlib
import json

from trainpipe.contract.pipeline import PipelineSpec

# The spec sections whose change changes what a run computes.
IDENTITY_FIELDS: tuple[str, ...] = ("data", "targets", "features", "ranking", "selection", "routing", "training", "evidence", "seed")
RUN_ID_LENGTH = 10


def run_id(spec: PipelineSpec, rerun_token: str | None = None, slot: str | None = None) -> str:
    """`r<10 hex>`: equal for equal outputs-relevant spec, rerun token and schedule slot; a label value and name part.

    `slot` is the cron fire time a scheduled run belongs to: the same spec run again on a later night
    (its data may have grown) is a new run, whose unchanged stages are then reused.
    """
    wire = spec.to_wire()
    payload = {name: wire[name] for name in IDENTITY_FIELDS}
    payload["rerun"] = rerun_token or ""
    if slot:
        payload["slot"] = slot
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return "r" + digest[:RUN_ID_LENGTH]
