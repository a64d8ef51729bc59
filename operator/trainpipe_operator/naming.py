"""Deterministic names of everything the operator creates: the same inputs always give the same name.

Creating a child is therefore idempotent ("already exists" is success) and a restarted operator finds
what its predecessor made, without random suffixes or in-process bookkeeping.
"""

from __future__ import annotations

from trainpipe.contract.units import dns_label

# A Job's pods are named and host-named `<job>-<index>-<suffix>`; keeping Job names this short leaves
# room for the index of any realistic Indexed Job inside the 63-character label and hostname limits.
MAX_JOB_NAME = 52

# A stage ranked in target groups (spec.stages.rank.targetGroups > 1) is two Jobs, named apart as a
# training stage's families are: an Indexed Job of one unit per group, then the step merging their parts.
GROUPS, AGGREGATE = "groups", "aggregate"


def family_slug(family: str) -> str:
    """A family name as a name part: catalogue names use '_', which Kubernetes names refuse."""
    return family.replace("_", "-")


def job_name(pipeline: str, run: str, stage: str, family: str | None, attempt: int) -> str:
    """`<pipeline>-<run>-<stage>[-<family>]-<attempt>`, hashed when longer than MAX_JOB_NAME."""
    parts = [pipeline, run, stage] + ([family_slug(family)] if family else []) + [str(attempt)]
    # Every part is DNS-safe already, so dns_label only cuts and hashes names over the limit.
    return dns_label("-".join(parts), MAX_JOB_NAME)


def plan_configmap(pipeline: str) -> str:
    return f"{pipeline}-plan"


def spec_configmap(pipeline: str, run: str) -> str:
    """The run's spec, mounted into its pods: a run id is a digest of the spec, so one name, one content."""
    return f"{pipeline}-{run}-spec"


def artifacts_claim(pipeline: str) -> str:
    return f"{pipeline}-artifacts"
