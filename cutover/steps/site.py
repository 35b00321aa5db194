"""verify-site: the smoke paths answer over HTTPS on the production name, through the router."""

from __future__ import annotations

from typing import Any

from cutover.steps.app import run_http_checks, smoke_checks
from cutover.steps.base import Context, Step, StepOutputs
from cutover.steps.dns import _router, _skip_without_dns
from cutover.steps.preflight import PreflightOutputs
from cutover.steps.window import MaintenanceOnOutputs


class VerifySiteOutputs(StepOutputs):
    step_id = "verify-site"
    checks: list[str]
    downtime_seconds: float | None  # maintenance on to site verified


class VerifySite(Step):
    id = "verify-site"
    title = "Verify the site serves from Convox"
    in_window = True
    outputs = VerifySiteOutputs
    reads = (PreflightOutputs, MaintenanceOnOutputs)
    fields = ("dns.record", "smoke")

    def applies(self, model: Any) -> str | None:
        return _skip_without_dns(model)

    def describe(self, ctx: Context) -> list[str]:
        dns = ctx.model.dns
        assert dns
        return [
            f"GET https://{dns.record}{c.path}  expect {c.status}" for c in smoke_checks(ctx)[0]
        ]

    def apply(self, ctx: Context) -> VerifySiteOutputs:
        assert ctx.model.dns
        record = ctx.model.dns.record
        router = _router(self, ctx)
        # Follow the CNAME to the router explicitly: where the router has a rehearsal address
        # (the sandbox), connect there while verifying the certificate for the real name. A
        # client of its own: the shared one is left as it is.
        target = ctx.http.resolve.get(router)
        http = ctx.http
        if target:
            from cutover.adapters.http import HttpClient  # noqa: PLC0415 - adapters load when a step runs (start-up time)

            http = HttpClient(
                ctx.masker, resolve={**ctx.http.resolve, record: target}, ca_file=ctx.http.ca_file
            )
        checks, timeout = smoke_checks(ctx)
        results = run_http_checks(ctx, http, record, checks, timeout)
        maintenance = self.read(ctx, MaintenanceOnOutputs)
        downtime = round(ctx.clock() - maintenance.at, 1) if maintenance else None
        return VerifySiteOutputs(checks=results, downtime_seconds=downtime)
