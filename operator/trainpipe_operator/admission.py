"""What of a Job the API server's admission judges: its shape, the manifest without the names of one pipeline run.

A stage of several Jobs is dry-run whole before any of them is created, so a spec that makes one of
them invalid creates none (act.py). Most pipelines of a namespace share a spec, and a run of one
differs from another's only in names: the pipeline's, the run's, the owner's uid, the plan digest.
Those are replaced by their lengths (a longer name can break a length limit, so the length stays
part of the shape); two Jobs of the same shape get the same verdict from validation, and a dry run
of one stands for the other for a while (ADMITTED_SECONDS). At 50 pipelines at once the dry runs
were 6 of a run's 16 Job creates (BENCHMARKS.md, "Scale").
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from trainpipe.contract.names import ANNOTATION_PLAN_DIGEST, LABEL_PIPELINE, LABEL_RUN

# How long a passed dry run stands for Jobs of its shape. Admission also reads the namespace (quotas,
# LimitRanges, policy webhooks), which can change; a refused real create forgets every shape of the
# namespace at once (act.py), and this bounds how long a change that refuses nothing goes unseen.
ADMITTED_SECONDS = 600.0


def job_shape(manifest: dict[str, Any]) -> str:
    """A digest of `manifest` with the run's names (namespace, pipeline, run, owner uid, plan digest) replaced by their lengths."""
    meta = manifest.get("metadata") or {}
    labels = meta.get("labels") or {}
    owners = meta.get("ownerReferences") or [{}]
    names = [meta.get("namespace"), owners[0].get("uid"), (meta.get("annotations") or {}).get(ANNOTATION_PLAN_DIGEST),
             labels.get(LABEL_RUN), labels.get(LABEL_PIPELINE)]
    text = json.dumps(manifest, sort_keys=True, separators=(",", ":"))
    # Longest first, so a name inside another (a pipeline called "r1" in run "r1abc") cannot split it.
    for i, name in sorted(((i, n) for i, n in enumerate(names) if n), key=lambda item: -len(item[1])):
        text = text.replace(name, f"\u0000{i}:{len(name)}\u0000")
    return hashlib.sha256(text.encode()).hexdigest()
