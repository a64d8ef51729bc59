"""A run's identity: a digest of the spec fields that change its outputs, plus the user's rerun token.

Scheduling fields (resources, selectors, images, suspend, TTL, queue, parallelism) are not part of it,
so editing them never starts a new run. The operator names Jobs and the output folder after it.
"""

from __future__ import annotations

import hashlib
import json

from trainpipe.contract.pipeline import PipelineSpec

# The spec sections whose change changes what a run computes.
IDENTITY_FIELDS: tuple[str, ...] = ("data", "targets", "features", "ranking", "selection", "routing", "training", "seed")
RUN_ID_LENGTH = 10


def run_id(spec: PipelineSpec, rerun_token: str | None = None) -> str:
    """`r<10 hex>`: equal for equal outputs-relevant spec and token; a Kubernetes label value and name part."""
    wire = spec.to_wire()
    payload = {name: wire[name] for name in IDENTITY_FIELDS}
    payload["rerun"] = rerun_token or ""
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return "r" + digest[:RUN_ID_LENGTH]
