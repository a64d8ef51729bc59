"""Settings of one operator process (flags and environment), passed to `decide` as plain data."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

DEFAULT_ARTIFACTS_SIZE = "10Gi"
_TOLERATION_KEYS = {"key", "operator", "value", "effect", "tolerationSeconds"}


@dataclass(frozen=True)
class OperatorConfig:
    """Environment-wide defaults (the chart's values); a pipeline's own spec always wins over them."""

    cpu_image: str | None = None  # default image of rank/select/plan/cpu/report Jobs
    gpu_image: str | None = None  # default image of GPU Jobs; none and none in the spec = GPU work is an error
    artifacts_size: str = DEFAULT_ARTIFACTS_SIZE
    resync_seconds: float = 30.0
    # Used when a stage's spec sets no nodeSelector: the CPU pool for every stage but gpu, the GPU pool for gpu.
    cpu_node_selector: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    gpu_node_selector: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    cpu_tolerations: tuple[Mapping[str, Any], ...] = ()  # added to every Job but GPU ones (a tainted CPU pool)
    gpu_tolerations: tuple[Mapping[str, Any], ...] = ()  # added to every GPU Job (the cluster's GPU taints)
    job_service_account: str | None = None  # when a pipeline names no serviceAccountName


class ConfigError(ValueError):
    """An operator flag that cannot be used; the message names the flag."""


def parse_selector(flag: str, items: list[str]) -> Mapping[str, str]:
    """`KEY=VALUE` flags into a node selector."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{flag} {item!r}: expected KEY=VALUE, e.g. {flag} trainpipe.io/pool=cpu")
        out[key] = value
    return MappingProxyType(out)


def parse_toleration(flag: str, text: str) -> Mapping[str, Any]:
    """One core/v1 Toleration as JSON, e.g. {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{flag} {text!r}: not JSON ({exc})") from None
    if not isinstance(value, dict) or not set(value) <= _TOLERATION_KEYS:
        raise ConfigError(f"{flag} {text!r}: expected an object with keys among {sorted(_TOLERATION_KEYS)}")
    return MappingProxyType(value)
