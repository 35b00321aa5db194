"""Steps that prepare the Convox side: create-app, set-env, deploy, smoke-test, add-domain
(preflight is in steps/preflight.py, shipping in steps/ship.py)."""

from __future__ import annotations

import fnmatch
import re
import stat
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from cutover.catalog import resource_addon, resource_config_vars
from cutover.errors import CutoverError, InvalidInput
from cutover.fsutil import atomic_write
from cutover.playbook import SmokeCheck, SmokeSection, TlsSection
from cutover.steps.base import Context, Progress, Step, StepOutputs, cmd
from cutover.steps.holding import staged_name
from cutover.steps.manifests import (
    held_services,
    load_manifest,
    manifest_path,
    stage_held,
    staging_line,
    web_service,
)
from cutover.steps.ship import (
    ShipOutputs,
    ShipProgress,
    build_marker,
    find_marked_release,
    hold_services,
    ship,
    ship_commands,
)

if TYPE_CHECKING:
    from cutover.adapters.http import HttpClient

# Variables Convox sets itself (reference §17: RACK, APP, RELEASE, BUILD*, SERVICE, PORT).
CONVOX_MANAGED = {
    "RACK",
    "RACK_URL",
    "APP",
    "RELEASE",
    "BUILD",
    "BUILD_DESCRIPTION",
    "BUILD_GIT_SHA",
    "SERVICE",
    "PORT",
}


def smoke_checks(ctx: Context) -> tuple[list[SmokeCheck], int]:
    """The HTTP checks and their retry time (defaults when the playbook has no smoke)."""
    smoke = ctx.model.smoke or SmokeSection()
    return list(smoke.checks), smoke.timeout


def env_plan(
    config: dict[str, str], addons: list[dict[str, Any]], ctx: Context
) -> tuple[dict[str, str], dict[str, str]]:
    """(values to set, excluded name -> reason). Values stay in memory only.

    The config vars of every add-on that a Convox resource replaces (the one add-on table,
    cutover/catalog/addons.json, that translate also maps with) are not copied: the resource
    injects its own, and a copied URL would point the app back at the Heroku add-on."""
    resource_vars: dict[str, str] = {}
    for addon in addons:
        service = str((addon.get("addon_service") or {}).get("name", ""))
        kind = resource_addon(service)
        if kind is None:
            continue
        names = [str(var) for var in addon.get("config_vars") or []]
        for var in resource_config_vars(service, names):
            resource_vars[var] = f"injected by the Convox {kind} resource ({service})"
    excluded: dict[str, str] = {}
    values: dict[str, str] = {}
    rules = ctx.model.env
    for name, value in sorted(config.items()):
        if name in ("DATABASE_URL", "REDIS_URL") or name in resource_vars:
            excluded[name] = resource_vars.get(name, "injected by a Convox resource")
        elif name.startswith("HEROKU_"):
            excluded[name] = "managed by Heroku"
        elif name in CONVOX_MANAGED:
            excluded[name] = "set by Convox"
        elif any(fnmatch.fnmatchcase(name, pattern) for pattern in rules.exclude):
            excluded[name] = "excluded by the playbook (env.exclude)"
        else:
            values[name] = value
    for name, value in rules.override.items():
        values[name] = value
        excluded.pop(name, None)
    return values, excluded


class CreateAppProgress(Progress):
    creating: bool | None = None  # saved just before `convox apps create`


class CreateAppOutputs(StepOutputs):
    """``created``: this run created the app (rollback may delete it); ``adopted``: it existed
    and the playbook said ``convox.adopt: true``."""

    step_id = "create-app"
    app: str
    created: bool = False
    adopted: bool = False


class CreateApp(Step):
    id = "create-app"
    title = "Create the Convox app"
    outputs = CreateAppOutputs
    fields = ("convox.app", "convox.rack", "convox.adopt")

    def describe(self, ctx: Context) -> list[str]:
        return [
            cmd(ctx.convox.argv("apps", "info")),
            cmd(ctx.convox.create_app_argv())
            + (
                "   (an existing app is adopted: convox.adopt)"
                if ctx.model.convox.adopt
                else "   (an existing app is refused unless convox.adopt: true)"
            ),
        ]

    def check(self, ctx: Context) -> CreateAppOutputs | None:
        if not ctx.convox.app_exists():
            return None
        app = ctx.model.convox.app
        if self.remembered(ctx, CreateAppProgress).creating:
            return CreateAppOutputs(app=app, created=True)  # created before an interruption
        if ctx.model.convox.adopt:
            ctx.note(f"the Convox app {app} already exists: adopting it (convox.adopt: true)")
            return CreateAppOutputs(app=app, adopted=True)
        rack = f" on rack {ctx.convox.rack}" if ctx.convox.rack else ""
        raise InvalidInput(
            f"the Convox app {app} already exists{rack} and this run did not create it",
            details="cutover would overwrite its environment and deploy over it.",
            resolution="If this app is meant to receive the migration, set `convox.adopt: "
            "true` in the playbook (set-env then shows which variables it would overwrite "
            "and asks first); otherwise name a new app in convox.app.",
        )

    def apply(self, ctx: Context) -> CreateAppOutputs:
        ctx.save(CreateAppProgress(creating=True))
        ctx.convox.create_app()
        return CreateAppOutputs(app=ctx.model.convox.app, created=True)


class SetEnvProgress(Progress):
    release: str | None = None


class SetEnvOutputs(StepOutputs):
    """Names only (values never leave memory); ``release``: the release the env change made."""

    step_id = "set-env"
    copied: list[str]
    excluded: dict[str, str]
    release: str | None


class SetEnv(Step):
    id = "set-env"
    title = "Copy config vars to Convox"
    outputs = SetEnvOutputs
    reads = (CreateAppOutputs,)
    fields = ("heroku.app", "convox.app", "convox.rack", "env", "database.resource")

    def describe(self, ctx: Context) -> list[str]:
        return [
            cmd(ctx.heroku.argv("config", "--json")),
            cmd(ctx.heroku.argv("addons", "--json")),
            cmd(ctx.convox.argv("env")),
            "gate (adopted app only): the names of the variables it would overwrite",
            cmd(ctx.convox.argv("env", "set", "--id")) + "   < KEY=VALUE lines on stdin",
        ]

    def _desired(self, ctx: Context) -> tuple[dict[str, str], dict[str, str]]:
        return env_plan(ctx.heroku.config(), ctx.heroku.addons(), ctx)

    def check(self, ctx: Context) -> SetEnvOutputs | None:
        desired, excluded = self._desired(ctx)
        current = ctx.convox.env()
        if "DATABASE_URL" in current and ctx.model.database:
            raise CutoverError(
                "the Convox app env holds DATABASE_URL: the rack will not create the "
                f"{ctx.model.database.resource} resource while it is set",
                resolution=f"Remove it: convox env unset DATABASE_URL -a {ctx.model.convox.app}",
            )
        if all(current.get(k) == v for k, v in desired.items()):
            saved = self.saved(ctx, SetEnvProgress).release  # an earlier attempt's
            return self._outputs(desired, excluded, saved or ctx.convox.latest_release())
        overwritten = sorted(k for k, v in desired.items() if k in current and current[k] != v)
        ctx.extras[self.id] = (desired, excluded, overwritten)
        return None

    def gate_question(self, ctx: Context) -> str | None:
        """Only for an adopted app whose env holds other values: names, never values."""
        created = self.read(ctx, CreateAppOutputs)
        pending = ctx.extras.get(self.id)
        if created is None or not created.adopted or not pending or not pending[2]:
            return None
        names = pending[2]
        return (
            f"The adopted Convox app {ctx.model.convox.app} has other values for "
            f"{len(names)} variable(s): {', '.join(names)}. Overwrite them with Heroku's?"
        )

    def apply(self, ctx: Context) -> SetEnvOutputs:
        pending = ctx.extras.pop(self.id, None)
        desired, excluded = (pending[0], pending[1]) if pending else self._desired(ctx)
        ctx.note(
            f"setting {len(desired)} variables; leaving out {len(excluded)}: "
            + ", ".join(sorted(excluded))
        )
        release = ctx.convox.env_set(desired)
        return self._outputs(desired, excluded, release)

    @staticmethod
    def _outputs(
        desired: dict[str, str], excluded: dict[str, str], release: str | None
    ) -> SetEnvOutputs:
        return SetEnvOutputs(copied=sorted(desired), excluded=excluded, release=release)


class DeployOutputs(ShipOutputs):
    step_id = "deploy"


class Deploy(Step):
    id = "deploy"
    title = "Build and promote on Convox"
    outputs = DeployOutputs
    reads = (CreateAppOutputs,)
    fields = ("convox.app", "convox.rack", "convox.manifest", "convox.source", "release")

    def describe(self, ctx: Context) -> list[str]:
        return [
            staging_line(ctx),
            *ship_commands(ctx, self.id, staged_name(ctx.model.convox.manifest)),
            cmd(ctx.convox.argv("scale"))
            + "   (read back: every held service wants 0; one that does not is scaled to 0)",
        ]

    def recover(self, ctx: Context) -> DeployOutputs | None:
        """The build this step started before an interruption: wait for it, finish it."""
        marker = build_marker(ctx, self.id)
        found = find_marked_release(ctx, self.id, marker) if marker else None
        if found is None:
            return None
        hold_services(ctx, held_services(ctx))
        return DeployOutputs(**found.model_dump(exclude_unset=True))

    def apply(self, ctx: Context) -> DeployOutputs:
        created = self.read(ctx, CreateAppOutputs)
        adopted = created is not None and created.adopted
        shipped = ship(ctx, self.id, stage_held(ctx), adopted=adopted)
        hold_services(ctx, held_services(ctx))
        return DeployOutputs(**shipped.model_dump(exclude_unset=True))


class SmokeTestOutputs(StepOutputs):
    step_id = "smoke-test"
    domain: str
    checks: list[str]


class SmokeTest(Step):
    id = "smoke-test"
    title = "Smoke-test the Convox service"
    outputs = SmokeTestOutputs
    fields = ("convox.app", "convox.rack", "smoke")

    def applies(self, model: Any) -> str | None:
        return None if model.smoke else "no smoke section in the playbook"

    def describe(self, ctx: Context) -> list[str]:
        smoke = ctx.model.smoke
        assert smoke
        return [cmd(ctx.convox.argv("services"))] + [
            f"GET https://<{smoke.service} domain>{c.path}  expect {c.status}" for c in smoke.checks
        ]

    def apply(self, ctx: Context) -> SmokeTestOutputs:
        assert ctx.model.smoke
        domain = ctx.convox.service_domain(ctx.model.smoke.service)
        results = run_http_checks(
            ctx, ctx.http, domain, ctx.model.smoke.checks, ctx.model.smoke.timeout
        )
        return SmokeTestOutputs(domain=domain, checks=results)


def run_http_checks(
    ctx: Context, http: HttpClient, host: str, checks: list[SmokeCheck], timeout: float
) -> list[str]:
    """GET every check's path on ``host`` until each passes or ``timeout`` runs out.

    Failures are retried until then, certificate failures included: for a custom domain the
    router serves a certificate covering the name only once DNS points at it and the
    certificate was issued, so verify-site meets them first. Giving up on one says so."""
    from cutover.adapters.http import CertificateNotValid  # noqa: PLC0415 - adapters load when a step runs (start-up time)

    results = []
    for check in checks:
        url = f"https://{host}{check.path}"
        deadline = time.monotonic() + timeout
        last = ""
        certificate = False
        while True:
            try:
                resp = http.get(url)
                ok = resp.status == check.status and (
                    check.contains is None or check.contains in resp.text
                )
                last, certificate = f"HTTP {resp.status}", False
                if ok:
                    break
                if check.contains and check.contains not in resp.text:
                    last += f", body lacks {check.contains!r}"
            except CertificateNotValid as exc:
                last, certificate = exc.brief, True
            except CutoverError as exc:
                last, certificate = exc.brief, False
            if time.monotonic() >= deadline:
                if certificate:
                    raise CutoverError(
                        f"the certificate served for {host} was still not valid for it after "
                        f"{timeout:g}s: GET {url}",
                        details=last,
                        resolution="The router gets a certificate for a custom domain only "
                        "once DNS points at it; check `convox certs` and the record, wait a few "
                        "minutes, then run `cutover run` again.",
                    )
                raise CutoverError(
                    f"smoke check failed: GET {url}: {last} (expected {check.status})",
                    resolution="Look at `convox logs -a APP` and `convox ps -a APP`; "
                    "fix and run again.",
                )
            ctx.sleep(min(3.0, max(0.2, timeout / 30)))
        ctx.note(f"GET {url}: {last}")
        results.append(f"{check.path}: {last}")
    return results


class AddDomainProgress(ShipProgress):
    manifest_edited: bool | None = None  # saved before the deploy
    certificate: str | None = None  # tls.mode import/dns01: the id obtained, saved at once
    certificate_source: str | None = None  # what it was obtained from (steps/tls.py)


class AddDomainOutputs(ShipOutputs):
    """``manifest_edited``: this step added the domain to convox.yml (rollback may undo it);
    ``certificate``: the certificate the web service names (tls.mode import or dns01)."""

    step_id = "add-domain"
    manifest_edited: bool
    certificate: str | None = None
    certificate_source: str | None = None


class AddDomain(Step):
    id = "add-domain"
    title = "Add the production domain and redeploy"
    outputs = AddDomainOutputs
    fields = (
        "convox.app",
        "convox.rack",
        "convox.manifest",
        "convox.source",
        "release",
        "dns.record",
        "smoke.service",
        *TlsSection.OBTAIN_FIELDS,
    )

    def applies(self, model: Any) -> str | None:
        return None if model.dns else "no dns section in the playbook"

    def describe(self, ctx: Context) -> list[str]:
        from cutover.steps.tls import obtain_describe  # noqa: PLC0415 - steps.tls imports this module

        assert ctx.model.dns
        return [
            *obtain_describe(ctx),
            f"edit {manifest_path(ctx)}: services.{web_service(ctx)}.domain += "
            f"{ctx.model.dns.record}  (only if missing)",
            staging_line(ctx),
            *ship_commands(ctx, self.id, staged_name(ctx.model.convox.manifest)),
            cmd(ctx.convox.argv("scale")) + "   (read back: every held service wants 0)",
        ]

    def check(self, ctx: Context) -> AddDomainOutputs | None:
        assert ctx.model.dns
        active = ctx.convox.active_release()
        if active:
            try:
                deployed = yaml.safe_load(ctx.convox.release_manifest(active)) or {}
            except yaml.YAMLError:
                deployed = {}
            edited = bool(self.saved(ctx, AddDomainProgress).manifest_edited)
            web = web_service(ctx)
            if ctx.model.dns.record in service_domains(deployed, web):
                from cutover.steps.tls import deployed_certificate  # noqa: PLC0415 - a cycle

                source = self.remembered(ctx, AddDomainProgress).certificate_source
                certificate = deployed_certificate(ctx, deployed, web, source)
                if ctx.model.tls.mode == "http01" or certificate:
                    return AddDomainOutputs(
                        release=active,
                        manifest_edited=edited,
                        certificate=certificate,
                        certificate_source=source,
                    )
        return None

    def recover(self, ctx: Context) -> AddDomainOutputs | None:
        """The build this step started before an interruption: wait for it, finish it."""
        marker = build_marker(ctx, self.id)
        found = find_marked_release(ctx, self.id, marker) if marker else None
        if found is None:
            return None
        edited = bool(self.saved(ctx, AddDomainProgress).manifest_edited)
        hold_services(ctx, held_services(ctx))
        return AddDomainOutputs(release=found.release, marker=found.marker, manifest_edited=edited)

    def apply(self, ctx: Context) -> AddDomainOutputs:
        from cutover.steps.tls import (  # noqa: PLC0415 - steps.tls imports this module
            obtain_certificate,
            set_certificate_in_manifest,
        )

        assert ctx.model.dns
        path = manifest_path(ctx)
        progress = self.saved(ctx, AddDomainProgress)
        saved = bool(progress.manifest_edited)
        remembered = self.remembered(ctx, AddDomainProgress)
        certificate, source = obtain_certificate(
            ctx, remembered.certificate, remembered.certificate_source
        )
        if certificate:
            ctx.save(AddDomainProgress(certificate=certificate, certificate_source=source))
        edited = add_domain_to_manifest(path, web_service(ctx), ctx.model.dns.record)
        if certificate and set_certificate_in_manifest(path, web_service(ctx), certificate):
            ctx.note(f"services.{web_service(ctx)} in {path} now names certificate {certificate}")
            edited = True
        # Saved before the deploy: a crash after the edit still says this step made it.
        edited = edited or saved
        ctx.save(AddDomainProgress(manifest_edited=edited))
        if edited:
            ctx.note(
                f"added domain {ctx.model.dns.record} to services.{web_service(ctx)} "
                f"in {path} (commit this change)"
            )
        shipped = ship(ctx, self.id, stage_held(ctx))
        hold_services(ctx, held_services(ctx))
        return AddDomainOutputs(
            release=shipped.release,
            marker=shipped.marker,
            manifest_edited=edited,
            certificate=certificate,
            certificate_source=source,
        )


def service_domains(manifest: dict[str, Any], service: str) -> list[str]:
    svc = (manifest.get("services") or {}).get(service) or {}
    domain = svc.get("domain") if isinstance(svc, dict) else None
    if isinstance(domain, list):
        return [str(d).strip() for d in domain]
    if isinstance(domain, str):
        return [d.strip() for d in domain.split(",") if d.strip()]
    return []


def add_domain_to_manifest(path: Path, service: str, domain: str) -> bool:
    """Add ``domain`` to a service in convox.yml, keeping comments and layout. False if there."""
    manifest = load_manifest(path)
    if domain in service_domains(manifest, service):
        return False
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    in_services = False
    for i, line in enumerate(lines):
        if re.match(r"^services:\s*(#.*)?$", line):
            in_services = True
            continue
        if in_services and re.match(r"^\S", line):
            break
        match = re.match(rf"^(\s+){re.escape(service)}:\s*(#.*)?$", line)
        if in_services and match:
            indent = match.group(1)
            child = _child_indent(lines[i + 1 :], indent) or indent * 2
            existing = service_domains(manifest, service)
            replaced = False
            for j in range(i + 1, len(lines)):
                depth = len(lines[j]) - len(lines[j].lstrip())
                if lines[j].strip() and depth <= len(indent):
                    break  # the next service or section
                if lines[j].startswith(f"{child}domain:"):
                    lines[j] = f"{child}domain: {', '.join([*existing, domain])}\n"
                    replaced = True
                    break
            if not replaced:
                lines.insert(i + 1, f"{child}domain: {domain}\n")
            text = "".join(lines)
            check = yaml.safe_load(text)
            if domain not in service_domains(check, service):
                raise CutoverError(
                    f"could not add the domain to {path}; add "
                    f"`domain: {domain}` under services.{service} by hand"
                )
            # Atomic like every file cutover writes, keeping the file's mode.
            atomic_write(path, text, mode=stat.S_IMODE(path.stat().st_mode))
            return True
    raise CutoverError(f"{path}: service {service!r} not found under services:")


def _child_indent(rest: list[str], parent: str) -> str | None:
    for line in rest:
        if line.strip() and not line.lstrip().startswith("#"):
            indent = line[: len(line) - len(line.lstrip())]
            return indent if len(indent) > len(parent) else None
    return None
