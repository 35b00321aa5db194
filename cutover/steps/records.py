"""DNS records as the state keeps them, and lower-ttl's contract (read by wait-ttl, restore-ttl
and by rollback, so it lives below them)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, SerializerFunctionWrapHandler, model_serializer

from cutover.steps.base import Progress, StepOutputs

if TYPE_CHECKING:
    from cutover.adapters.dns import Record


# The playbook fields that decide which record is written where (a change re-runs the steps
# that read them). Not the whole dns section: changing dns.soak_seconds or dns.resolvers
# after the switch must not re-run lower-ttl, which would save the router record as the
# "original" that rollback restores.
DNS_RECORD_FIELDS = (
    "dns.provider",
    "dns.zone",
    "dns.record",
    "dns.ttl",
    "dns.server",
    "dns.key_name",
    "dns.nameservers",
    "dns.route53",
    "dns.cloudflare",
)


class DnsRecord(BaseModel):
    """A record as it was (saved as JSON: name, type, ttl, values, and Cloudflare's
    ``proxied`` flag where the provider has one); rollback restores it."""

    name: str
    type: str
    ttl: int
    values: list[str]
    proxied: bool | None = None

    @model_serializer(mode="wrap")
    def _drop_unknown_proxy(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict) and data.get("proxied") is None:
            data.pop("proxied", None)  # providers without a proxy: the record as before
        return data

    @classmethod
    def of(cls, record: Record) -> DnsRecord:
        return cls(
            name=record.name,
            type=record.rtype,
            ttl=record.ttl,
            values=list(record.values),
            proxied=record.proxied,
        )


class LowerTtlProgress(Progress):
    original: DnsRecord | None = None  # saved before the change
    lowered_at: float | None = None
    verified: dict[str, float] | None = None  # name server -> when it served the lowered TTL


class LowerTtlOutputs(StepOutputs):
    """The record before cutover touched it (what a rollback restores, TTL included); when the
    lowered TTL was set, and when every authoritative name server served it (``verified``: per
    server; ``verified_at``: the last of them, from which wait-ttl counts the old TTL; None in
    states written before issue 12, where ``lowered_at`` stands in)."""

    step_id = "lower-ttl"
    original: DnsRecord
    lowered_at: float
    ttl: int
    verified_at: float | None = None
    verified: dict[str, float] = Field(default_factory=dict)

    @property
    def caches_clear_at(self) -> float:
        """When no resolver can still hold the record with its original TTL."""
        return (self.verified_at or self.lowered_at) + self.original.ttl
