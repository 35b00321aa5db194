"""DNS records as the state keeps them, and lower-ttl's contract (read by confirm-window in
steps/window.py and by rollback, so it lives below both)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel

from cutover.steps.base import Progress, StepOutputs

if TYPE_CHECKING:
    from cutover.adapters.dns import Record


class DnsRecord(BaseModel):
    """A record as it was (saved as JSON: name, type, ttl, values); rollback restores it."""

    name: str
    type: str
    ttl: int
    values: list[str]

    @classmethod
    def of(cls, record: Record) -> DnsRecord:
        return cls(name=record.name, type=record.rtype, ttl=record.ttl, values=list(record.values))


class LowerTtlProgress(Progress):
    original: DnsRecord | None = None  # saved before the change
    lowered_at: float | None = None


class LowerTtlOutputs(StepOutputs):
    """The record before cutover touched it (what a rollback restores, TTL included)."""

    step_id = "lower-ttl"
    original: DnsRecord
    lowered_at: float
    ttl: int
