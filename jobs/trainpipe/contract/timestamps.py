"""The one timestamp form of the status, records and plans: UTC, whole seconds, `Z` (what kubectl shows)."""

from __future__ import annotations

from datetime import UTC, datetime

STAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def stamp(moment: datetime | None = None) -> str:
    """`moment` (now when None) as a stamp; a naive moment is taken to be UTC."""
    moment = datetime.now(UTC) if moment is None else moment
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC).strftime(STAMP_FORMAT)


def parse_stamp(text: str | None) -> datetime | None:
    """A stamp as an aware UTC datetime; None for None or an empty string."""
    return datetime.strptime(text, STAMP_FORMAT).replace(tzinfo=UTC) if text else None
