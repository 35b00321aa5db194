"""An apex record (the zone's own name, where DNS allows no CNAME) is refused by lower-ttl, a
day ahead, and again by switch-dns when the provider has no alias or flattening (apex() None:
rfc2136 and manual, adapters/dns.py); with an alias the router record is marked ``alias``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cutover.adapters.dns import Record
from cutover.engine.plan import new_state
from cutover.errors import CutoverError
from cutover.playbook import LoadedPlaybook, Playbook
from cutover.playbook_dns import DnsSection
from cutover.runner import Runner
from cutover.secrets import SecretMasker
from cutover.steps.base import Context
from cutover.steps.dns import SwitchDns, _router_record, apex_problem
from cutover.steps.dnswait import nameserver_overrides, resolver_list
from cutover.steps.ttl import LowerTtl


class Provider:
    synced_by_provider = False

    def __init__(self, apex: str | None) -> None:
        self._apex = apex
        self.asked: list[tuple[str, str]] = []

    def apex(self) -> str | None:
        return self._apex

    def nameservers(self) -> list[str]:
        return []

    def get(self, name: str, rtype: str) -> Record | None:
        self.asked.append((name, rtype))
        return None

    def set(self, record: Record) -> None:
        raise AssertionError("no update expected")

    def describe_set(self, record: Record) -> str:
        return ""


class Notes:
    def note(self, message: str) -> None:
        pass


def _context(tmp_path: Path, provider: Any, record: str) -> Context:
    base = Playbook.model_validate(
        {"version": 1, "heroku": {"app": "myapp"}, "convox": {"app": "myapp", "rack": "test"}}
    )
    # The playbook check for apex records is the providers' (dnsp): built here around it.
    dns = DnsSection.model_construct(
        **{
            **DnsSection(
                provider="rfc2136", zone="example.test", record="www.example.test"
            ).__dict__,
            "record": record,
        }
    )
    model = base.model_copy(update={"dns": dns})
    playbook = LoadedPlaybook(tmp_path / "cutover.yml", model, {})
    masker = SecretMasker()
    return Context(
        playbook=playbook,
        state=new_state(playbook),
        runner=Runner(masker, None),
        masker=masker,
        heroku=None,  # type: ignore[arg-type]
        convox=None,  # type: ignore[arg-type]
        postgres=None,  # type: ignore[arg-type]
        http=None,  # type: ignore[arg-type]
        dns=provider,
        reporter=Notes(),
        work_dir=tmp_path,
    )


def test_an_apex_record_without_alias_is_refused_a_day_ahead_and_at_switch(tmp_path: Path) -> None:
    provider = Provider(None)
    ctx = _context(tmp_path, provider, "example.test")
    for step in (LowerTtl(), SwitchDns()):
        with pytest.raises(CutoverError) as err:
            step.check(ctx)
        assert "example.test is the zone apex, where DNS allows no CNAME" in err.value.brief
        assert "the rfc2136 provider has no alias or CNAME flattening" in err.value.brief
        assert "route53" in err.value.resolution and "cloudflare" in err.value.resolution
    assert provider.asked == []  # refused before any query


def test_an_alias_provider_gets_an_alias_record_at_the_apex(tmp_path: Path) -> None:
    ctx = _context(tmp_path, Provider("alias"), "example.test")
    assert apex_problem(ctx) is None
    record = _router_record(ctx, 60, "router.convox.test")
    assert (record.rtype, record.values, record.alias) == ("CNAME", ["router.convox.test."], True)
    below = _context(tmp_path, Provider(None), "www.example.test")
    assert apex_problem(below) is None
    assert _router_record(below, 60, "router.convox.test").alias is False


def test_resolvers_default_to_the_documented_public_ones_and_the_sandbox_overrides(
    tmp_path: Path,
) -> None:
    ctx = _context(tmp_path, Provider(None), "www.example.test")
    assert resolver_list(ctx) == ["1.1.1.1", "8.8.8.8", "9.9.9.9"]
    provider = Provider(None)
    provider.sandbox_resolvers = ["127.0.0.1:5353"]  # type: ignore[attr-defined]
    provider.sandbox_nameservers = ["127.0.0.1:5300"]  # type: ignore[attr-defined]
    boxed = _context(tmp_path, provider, "www.example.test")
    assert resolver_list(boxed) == ["127.0.0.1:5353"]
    assert nameserver_overrides(boxed) == ["127.0.0.1:5300"]
    with pytest.raises(ValueError, match="must be host, host:port"):
        DnsSection(zone="example.test", record="www.example.test", resolvers=["a b"])
