"""kstatus conditions: set one, keeping its lastTransitionTime unless its status really changed (pure)."""

from __future__ import annotations

from trainpipe.contract.status import Condition, ConditionStatus, ConditionType

# The order conditions are written in; kstatus readers look them up by type.
CONDITION_ORDER: tuple[ConditionType, ...] = (ConditionType.READY, ConditionType.RECONCILING, ConditionType.STALLED, ConditionType.SUSPENDED)


def set_condition(previous: list[Condition], ctype: ConditionType, status: ConditionStatus, reason: str, message: str,
                  generation: int, now: str) -> Condition:
    """The condition to write: a changed status moves lastTransitionTime to now; a new reason or message does not."""
    old = next((c for c in previous if c.type == ctype.value), None)
    since = old.last_transition_time if old is not None and old.status == status else now
    return Condition(type=ctype.value, status=status, reason=reason, message=message, last_transition_time=since, observed_generation=generation)
