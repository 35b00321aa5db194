"""Steps that prepare the Convox side: create-app, set-env, deploy, smoke-test (preflight is in
steps/preflight.py, shipping in steps/ship.py, add-domain in steps/domain.py)."""

from __future__ import annotations

import fnmatch
import time
from typing import TYPE_CHECKING, Any

from cutover.catalog import resource_addon, resource_config_vars
from cutover.errors import CutoverError, InvalidInput
from cutover.playbook import SmokeCheck, SmokeSection
from cutover.steps.base import Context, Progress, Step, StepOutputs, cmd
from cutover.steps.holding import staged_name
from cutover.steps.manifests import (
    held_services,
    stage_held,
    staging_line,
)
from cutover.steps.ship import (
    ShipOutputs,
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
