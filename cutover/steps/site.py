"""verify-site: the smoke paths answer over HTTPS on the production name, through the router,
with a valid certificate, and the answer comes from Convox (``tls.marker``: a header or body
text only the Convox side sends).

Under ``tls.mode: http01`` the certificate is issued only after switch-dns (steps/tls.py): the
step first waits (within smoke.timeout) until the router serves a valid certificate for the
name, and records the certificate gap: seconds from switch-dns until then."""

from __future__ import annotations

import time
from typing import Any

from cutover.errors import CutoverError
from cutover.steps.app import run_http_checks, smoke_checks
from cutover.steps.base import Context, Step, StepOutputs
from cutover.steps.dns import SwitchDnsOutputs, _router, _skip_without_dns
from cutover.steps.preflight import PreflightOutputs
from cutover.steps.tls import ca_files, check_certificate, check_paths
from cutover.steps.window import MaintenanceOnOutputs


class VerifySiteOutputs(StepOutputs):
    step_id = "verify-site"
    checks: list[str]
    downtime_seconds: float | None  # maintenance on to site verified
    # tls.mode http01: seconds from switch-dns until the router served a valid certificate
    certificate_gap_seconds: float | None = None


class VerifySite(Step):
    id = "verify-site"
    title = "Verify the site serves from Convox"
    in_window = True
    outputs = VerifySiteOutputs
    reads = (PreflightOutputs, MaintenanceOnOutputs, SwitchDnsOutputs)
    fields = ("dns.record", "smoke", "tls")

    def applies(self, model: Any) -> str | None:
        return _skip_without_dns(model)

    def describe(self, ctx: Context) -> list[str]:
        dns = ctx.model.dns
        assert dns
        lines = [
            f"GET https://{dns.record}{c.path}  expect {c.status}" for c in smoke_checks(ctx)[0]
        ]
        if ctx.model.tls.marker:
            lines.append("each answer carries tls.marker (it comes from Convox)")
        if ctx.model.tls.mode == "http01":
            lines.insert(0, f"wait for a valid certificate for {dns.record}: the certificate gap")
        return lines

    def _certificate_gap(self, ctx: Context, router: str) -> float | None:
        """http01: wait within smoke.timeout until the router serves a valid certificate for
        the name; the seconds since switch-dns (None when switch-dns is not recorded)."""
        assert ctx.model.dns
        _, timeout = smoke_checks(ctx)
        deadline = time.monotonic() + timeout
        first = True
        while True:
            try:
                check = check_certificate(ctx, router)
                problems = check.problems
            except CutoverError as exc:
                problems = [exc.brief]
            if not problems:
                break
            first = False
            if time.monotonic() >= deadline:
                raise CutoverError(
                    f"the certificate served for {ctx.model.dns.record} was still not valid for "
                    f"it after {timeout:g}s",
                    details="\n".join(problems),
                    resolution="The router gets a certificate for a custom domain only once DNS "
                    "points at it (tls.mode http01); check `convox certs` and the record, wait a "
                    "few minutes, then run `cutover run` again.",
                )
            ctx.sleep(min(2.0, max(0.2, timeout / 60)))
        switched = self.read(ctx, SwitchDnsOutputs)
        if switched is None:
            return None
        gap = round(max(0.0, ctx.clock() - switched.at), 1)
        # Valid at the first look (a resumed run, a fast issuance): the gap ended earlier.
        about = "at most" if first else "about"
        ctx.note(
            f"certificate gap: {ctx.model.dns.record} served a certificate error for {about} "
            f"{gap:g}s after switch-dns, until its certificate was issued (tls.mode http01)"
        )
        return gap

    def apply(self, ctx: Context) -> VerifySiteOutputs:
        assert ctx.model.dns
        record = ctx.model.dns.record
        router = _router(self, ctx)
        # Follow the CNAME to the router explicitly: where the router has a rehearsal address
        # (the sandbox), connect there while verifying the certificate for the real name. A
        # client of its own: the shared one is left as it is.
        target = ctx.http.resolve.get(router)
        http = ctx.http
        if target or ctx.model.tls.ca_file:
            from cutover.adapters.http import HttpClient  # noqa: PLC0415 - adapters load when a step runs (start-up time)
            from cutover.adapters.tls import trust_context  # noqa: PLC0415

            http = HttpClient(
                ctx.masker,
                resolve={**ctx.http.resolve, **({record: target} if target else {})},
                ca_file=ctx.http.ca_file,
            )
            # The roots tls-ready trusted (system store, tls.ca_file, the sandbox CA): with
            # fewer, a certificate tls-ready accepted before the flip would fail here, after it.
            http.verify = trust_context(ca_files(ctx), check_hostname=True)
        gap = self._certificate_gap(ctx, router) if ctx.model.tls.mode == "http01" else None
        checks, timeout = smoke_checks(ctx)
        results = run_http_checks(ctx, http, record, checks, timeout)
        if ctx.model.tls.marker:
            # The same paths with the response headers read: the answer must come from Convox.
            from cutover.steps.tls import router_address  # noqa: PLC0415

            check_paths(ctx, target or router_address(ctx, router), verify=True)
        maintenance = self.read(ctx, MaintenanceOnOutputs)
        downtime = round(ctx.clock() - maintenance.at, 1) if maintenance else None
        return VerifySiteOutputs(
            checks=results, downtime_seconds=downtime, certificate_gap_seconds=gap
        )
