"""Liveness that notices a stalled watch: a fresh LIST shows a pipeline version the watch never delivered.

A quiet watch is normal (nothing changed), so silence alone proves nothing. But every write to a
pipeline, the operator's own status writes included, reaches a healthy watch within seconds; when a
periodic LIST keeps showing a resourceVersion that no watch event brought for longer than the grace
period, the watch is stuck and the process should be restarted. Pure: time is passed in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

Key = tuple[str, str]


@dataclass
class WatchHealth:
    grace_seconds: float = 120.0
    _seen: dict[Key, str] = field(default_factory=dict)  # last resourceVersion a watch event brought
    _lagging_since: dict[Key, float] = field(default_factory=dict)

    def saw(self, key: Key, resource_version: str) -> None:
        self._seen[key] = resource_version
        self._lagging_since.pop(key, None)

    def forget(self, key: Key) -> None:
        self._seen.pop(key, None)
        self._lagging_since.pop(key, None)

    def listed(self, versions: Mapping[Key, str], now: float) -> None:
        """Compare a LIST with what the watch delivered; start or clear each pipeline's lag clock."""
        for key, version in versions.items():
            if self._seen.get(key) == version:
                self._lagging_since.pop(key, None)
            else:
                self._lagging_since.setdefault(key, now)
        for key in list(self._lagging_since):
            if key not in versions:
                self._lagging_since.pop(key, None)

    def stalled(self, now: float) -> list[Key]:
        return sorted(k for k, since in self._lagging_since.items() if now - since > self.grace_seconds)
