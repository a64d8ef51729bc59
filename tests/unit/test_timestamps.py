"""One timestamp form for the status, records, plans and Events: UTC, whole seconds, Z."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from trainpipe.contract.timestamps import parse_stamp, stamp


@pytest.mark.parametrize(("moment", "text"), [
    (datetime(2026, 12, 1, 12, 0, 5, 999_000, tzinfo=UTC), "2026-12-01T12:00:05Z"),  # whole seconds
    (datetime(2026, 12, 1, 13, 0, 5, tzinfo=timezone(timedelta(hours=1))), "2026-12-01T12:00:05Z"),  # in UTC
    (datetime(2026, 12, 1, 12, 0, 5), "2026-12-01T12:00:05Z"),  # a naive moment is UTC
])
def test_a_moment_is_written_in_utc_to_the_second(moment: datetime, text: str):
    assert stamp(moment) == text
    parsed = parse_stamp(text)
    assert parsed == moment.replace(microsecond=0, tzinfo=moment.tzinfo or UTC) and parsed.tzinfo is UTC


def test_nothing_parses_to_nothing_and_a_malformed_stamp_is_an_error():
    assert parse_stamp(None) is None and parse_stamp("") is None
    with pytest.raises(ValueError):
        parse_stamp("2026-12-01 12:00:05")
