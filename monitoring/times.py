"""Times as the monitor compares them: aware, in UTC (naive values are taken as UTC)."""

from __future__ import annotations

from datetime import UTC, datetime


def utc(value: datetime) -> datetime:
    """``value`` in UTC; a naive one is taken to be UTC already."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def parse_utc(text: str) -> datetime:
    """An ISO 8601 time in UTC, whatever offset it was written with.

    Raises:
        ValueError: ``text`` is not an ISO 8601 time.
    """
    return utc(datetime.fromisoformat(text))
