"""Names the pipeline needs that objects it does not control hold: the pass creates nothing and the pipeline stalls, naming the object."""

from __future__ import annotations

from trainpipe.contract.status import ConditionType, Reason
from trainpipe_operator.naming import plan_configmap, spec_configmap
from trainpipe_operator.observed import ForeignChild
from trainpipe_operator.policies.passes import Pass

# How soon a stalled pipeline looks again: a ConfigMap without the pipeline's label is not watched, so
# its deletion brings no event; a GET of the name that often is all a stalled pipeline costs.
NAME_TAKEN_RECHECK_SECONDS = 10.0


def refuse_taken_names(p: Pass) -> bool:
    """Stall when an object the pipeline does not control holds a name it needs: its plan ConfigMap, the run's
    spec ConfigMap, or a Job it is about to create. That object is left as it is (never replaced, deleted or
    counted) and so is everything else: the pass creates and replaces nothing. Returns whether it stalled."""
    taken = {(f.kind, f.name): f for f in p.observed.foreign}
    if not taken:
        return False
    needed = [("ConfigMap", plan_configmap(p.view.name)), ("ConfigMap", spec_configmap(p.view.name, p.run))]
    needed += [(m["kind"], m["metadata"]["name"]) for m in [*p.create, *p.upsert]]
    held = [taken[n] for n in dict.fromkeys(needed) if n in taken]
    if not held:
        return False
    p.create.clear()
    p.upsert.clear()
    message = taken_message(p, held)
    was = p.view.status.condition(ConditionType.STALLED)
    if was is None or was.status != "True" or was.reason != Reason.NAME_TAKEN.value or was.message != message:
        p.event("Warning", Reason.NAME_TAKEN, message)
    p.stop("invalid", Reason.NAME_TAKEN, message)
    p.requeue.append(NAME_TAKEN_RECHECK_SECONDS)
    return True


def taken_message(p: Pass, held: list[ForeignChild]) -> str:
    first = held[0]
    more = f" (and {len(held) - 1} more: {', '.join(f'{f.kind} {f.name}' for f in held[1:])})" if len(held) > 1 else ""
    return (f"{first.kind} {p.view.namespace}/{first.name} is not this pipeline's ({first.whose()}), and the pipeline needs its name{more}; "
            f"it was left unchanged. Delete or rename it (kubectl delete {first.kind.lower()} {first.name} -n {p.view.namespace}) "
            "if it is not in use, or rename this pipeline; the run then goes on by itself")
