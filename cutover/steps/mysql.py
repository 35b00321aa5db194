"""MySQL steps (issue 14): check-mysql, initial-sync-mysql, final-sync-mysql, verify-mysql.

A Heroku app on ClearDB or JawsDB (catalog/addons.json: resource mysql or mariadb) gets its data
copied to the Convox mysql resource with the Postgres steps' rules: the add-on's URL read from its
config var through the heroku adapter (never argv), the Convox side through ``convox resources
proxy``, a copy into staging swapped in atomically, the guard (live / writes since the last sync /
tables cutover did not put there: refused unless ``--force-data``), verification per table
(cutover/adapters/mysql.py, mysqlstaging.py, mysqlverify.py).

The steps act only when preflight found such an add-on; with ``mysql.copy: false`` the syncs are
skipped and check-mysql says that the Convox database stays empty.

freeze-writes holds only Postgres read-only. For MySQL the window's freeze is Heroku's maintenance
mode plus scale-down (no dyno of the app runs); the final sync's gate says so.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from cutover.errors import CutoverError, InvalidInput
from cutover.steps.base import Context, Progress, Step, StepOutputs, cmd
from cutover.steps.data import force_gate_question
from cutover.steps.mysqladdons import first_by_service, needs_values, not_copied_warning, which
from cutover.steps.preflight import PreflightOutputs

if TYPE_CHECKING:
    from cutover.adapters.mysql import MyConn, MysqlAdapter

RESOURCE_START_WAIT = 600.0
_FIELDS = ("heroku.app", "convox.app", "convox.rack", "mysql")
FREEZE_NOTE = (
    "freeze-writes does not cover MySQL: maintenance mode and scale-down are the freeze (no dyno "
    "runs); stop anything else that writes to the add-on (another app sharing it, a one-off)."
)
FORCE_QUESTION = (
    "--force-data: copy into the Convox MySQL database even if it is live, has taken writes since "
    "the last copy, or holds tables cutover did not put there? Its data is replaced by Heroku's."
)


# provider/k8s/template/resource/{mysql,mariadb,rds-mysql,rds-mariadb}.yml.tmpl
MYSQL_RESOURCE_TYPES = ("mysql", "mariadb", "rds-mysql", "rds-mariadb")


def resource_name(ctx: Context) -> str:
    """mysql.resource, else the manifest's only MySQL-family resource."""
    if ctx.model.mysql.resource:
        return ctx.model.mysql.resource
    from cutover.steps.manifests import load_manifest, manifest_path  # noqa: PLC0415

    path = manifest_path(ctx)
    resources = load_manifest(path).get("resources") or {}
    found = [
        str(name)
        for name, spec in resources.items()
        if isinstance(spec, dict) and spec.get("type") in MYSQL_RESOURCE_TYPES
    ]
    if len(found) == 1:
        return found[0]
    raise InvalidInput(
        f"{path}: "
        + (
            f"several MySQL resources ({', '.join(found)}); the playbook's mysql.resource "
            "must name the one to copy into"
            if found
            else "no resource of type " + ", ".join(MYSQL_RESOURCE_TYPES) + " to copy the "
            "MySQL add-on into"
        ),
        resolution="Declare it in the manifest (resources: {mysql: {type: mysql}} and the "
        "service's resources) or set mysql.resource in the playbook",
    )


def planned_resource(ctx: Context) -> str:
    try:
        return resource_name(ctx)
    except CutoverError:
        return "<the manifest's mysql resource>"


class CheckMysqlOutputs(StepOutputs):
    step_id = "check-mysql"
    addon: str | None = None  # the Heroku add-on service, None when the app has none
    config_var: str | None = None
    copied: bool = False  # whether the sync steps copy it (mysql.copy)
    heroku_version: str | None = None
    convox_version: str | None = None
    tables: int = 0
    bytes: int = 0
    utf8mb3: list[str] = Field(default_factory=list)  # table.column in utf8mb3 ("utf8")
    non_transactional: list[str] = Field(default_factory=list)  # "t (MyISAM)": no snapshot
    definers: list[str] = Field(default_factory=list)  # "trigger t (b1@%)": made the Convox user
    findings: list[str] = Field(default_factory=list)
    not_copied: list[str] = Field(default_factory=list)  # "jawsdb (JAWSDB_URL)": another add-on


class MysqlSyncOutputs(StepOutputs):
    skipped: str | None = None
    tables: int = 0
    bytes: int = 0
    definers: int = 0
    marker: str | None = None
    seconds: float | None = None


class InitialSyncMysqlOutputs(MysqlSyncOutputs):
    step_id = "initial-sync-mysql"


class FinalSyncMysqlOutputs(MysqlSyncOutputs):
    step_id = "final-sync-mysql"


class VerifyMysqlOutputs(StepOutputs):
    step_id = "verify-mysql"
    skipped: str | None = None
    mode: str = "checksums"
    tables: int = 0
    rows: int = 0


class MysqlProgress(Progress):
    attempts: int = 0  # copies started by this step (a resume starts a fresh one)


def _adapter(ctx: Context) -> MysqlAdapter:
    from cutover.adapters.mysql import MysqlAdapter  # noqa: PLC0415 - adapters load when run

    return MysqlAdapter(ctx.runner, ctx.masker)


def _addon(ctx: Context, step: Step) -> CheckMysqlOutputs | None:
    found = step.read(ctx, CheckMysqlOutputs)
    return found if found is not None and found.addon else None


def _var(ctx: Context, default: str | None) -> str | None:
    return ctx.model.mysql.config_var or default


def source_conn(ctx: Context, var: str, config: dict[str, str] | None = None) -> MyConn:
    from cutover.adapters.mysql import MyConn  # noqa: PLC0415

    if config is None:
        config = ctx.heroku.config()  # registers every value with the masker
    url = config.get(var)
    if not url:
        raise CutoverError(
            f"the Heroku app has no config var {var} (mysql.config_var in the playbook)",
            resolution="Set mysql.config_var to the var holding the MySQL add-on's URL",
        )
    ctx.masker.add(url)
    conn = MyConn.from_url(url, f"config var {var}")
    ctx.masker.add(conn.password)
    return conn


@contextmanager
def convox_conn(ctx: Context, my: MysqlAdapter) -> Iterator[MyConn]:
    """The Convox resource's database through ``convox resources proxy``, accepting logins.

    A resource the rack is still starting refuses the proxy's connections, and the proxy then
    reports ``ERROR: dial tcp ...: connection refused`` (the stand-in, like the rack, when the
    resource's pod has no endpoint yet): the proxy is started again until the resource accepts
    logins, up to RESOURCE_START_WAIT. A proxy that answered such refusals before the resource
    came up would fail when closed after use (ConvoxAdapter.proxy: "reported an error while in
    use"), so it is replaced by a fresh one before use."""
    from cutover.adapters.mysql import MyConn  # noqa: PLC0415

    resource = resource_name(ctx)
    target = MyConn.from_url(ctx.convox.resource_url(resource), "the resource URL")
    ctx.masker.add(target.password)
    what = f"the Convox {resource} resource (through convox resources proxy)"
    deadline = time.monotonic() + RESOURCE_START_WAIT
    while True:
        stack = ExitStack()
        try:
            port = stack.enter_context(ctx.convox.proxy(resource))
            conn = target.via("127.0.0.1", port)
            waited: list[float] = []

            def pause(seconds: float, waited: list[float] = waited) -> None:
                waited.append(seconds)
                ctx.sleep(seconds)

            my.wait_accepting(conn, max(deadline - time.monotonic(), 1), what, sleep=pause)
            if not waited:
                break
            with contextlib.suppress(CutoverError):  # its refusals, from before the start
                stack.close()
            ctx.note(f"{what} accepts connections now; opening a fresh proxy")
            continue
        except CutoverError as exc:
            stack.close()
            if "connection refused" not in str(exc) or time.monotonic() > deadline:
                raise
            ctx.note(f"{what} is not accepting connections yet; trying again")
            ctx.sleep(2.0)
        except BaseException:
            stack.close()
            raise
    with stack:
        yield conn


def _common_describe(ctx: Context, var: str) -> list[str]:
    resource = planned_resource(ctx)
    return [
        cmd(ctx.heroku.argv("config", "--json")) + f"   ({var}: the add-on's URL, masked)",
        cmd(ctx.convox.argv("resources", "url", resource)),
        cmd(ctx.convox.proxy_argv(resource, "<free port>")),
        f"mariadb 'SELECT VERSION()' through the proxy until {resource} accepts logins "
        f"(up to {RESOURCE_START_WAIT:g}s; MYSQL_PWD in the client's environment)",
    ]


def _proxy_port(argv: list[str]) -> list[str]:
    """A planned argv with ``-P <proxy port>`` (the free port is chosen when the step runs)."""
    return [
        "<proxy port>" if prev == "-P" else a
        for prev, a in zip(["", *argv[:-1]], argv, strict=True)
    ]


class CheckMysql(Step):
    id = "check-mysql"
    title = "Check the MySQL add-on's data and the Convox mysql resource (no writes)"
    outputs = CheckMysqlOutputs
    reads = (PreflightOutputs,)
    fields = _FIELDS

    def describe(self, ctx: Context) -> list[str]:
        var = _var(ctx, "<the MySQL add-on's config var>") or ""
        return [
            "when preflight found a MySQL add-on (ClearDB, JawsDB):",
            *_common_describe(ctx, var),
            "mariadb (Heroku, Convox): versions; columns in utf8mb3; collations the Convox "
            "server lacks; triggers, views, routines and events with their DEFINER; size; with "
            "triggers or functions, the Convox server's @@log_bin, "
            "@@log_bin_trust_function_creators and the user's SUPER (error 1419); functions "
            "declared none of DETERMINISTIC, NO SQL, READS SQL DATA (error 1418, any user)",
            "several MySQL add-ons: the one whose var is mysql.config_var (else the first "
            "`heroku addons` lists) is copied, each other one named as NOT copied (WARNING); a "
            "mysql.config_var no add-on sets: its value (the config above) compared with each "
            "add-on's own var's to name the add-on copied (none equal: unknown, all NOT copied)",
        ]

    def apply(self, ctx: Context) -> CheckMysqlOutputs:
        pre = self.read(ctx, PreflightOutputs)
        var = ctx.model.mysql.config_var
        first = first_by_service(pre.heroku_addons) if pre else None
        known = (pre.mysql_addons if pre else []) or ([first] if first else [])
        # values compared, never printed (mysqladdons.choose); read once, for source_conn too
        config = ctx.heroku.config() if needs_values(known, var) else None
        found = which(pre.mysql_addons, pre.heroku_addons, var, config) if pre else None
        if found is None:
            ctx.note("no MySQL add-on (ClearDB, JawsDB) on the Heroku app: no MySQL data to copy")
            return CheckMysqlOutputs()
        chosen, others = found
        service, var = chosen.service, chosen.config_var
        left = [a.label() for a in others]
        if not ctx.model.mysql.copy_data:
            finding = (
                f"finding: the Heroku app has {', '.join([chosen.label(), *left])} but "
                "mysql.copy is false: the data is NOT copied; the Convox "
                f"{planned_resource(ctx)} resource stays empty"
            )
            ctx.note(finding)
            return CheckMysqlOutputs(
                addon=service, config_var=var, copied=False, findings=[finding], not_copied=left
            )
        warning = not_copied_warning(chosen, others, planned_resource(ctx)) if others else None
        if warning:
            ctx.note(warning)
        from cutover.adapters import mysqlcheck  # noqa: PLC0415

        my = _adapter(ctx)
        source = source_conn(ctx, var, config)
        with convox_conn(ctx, my) as target:
            report = mysqlcheck.inspect(my, source, target)
        for line in report.findings:
            ctx.note(f"finding: {line}")
        if report.blockers:
            raise CutoverError(
                "the Convox MySQL server cannot take Heroku's data: " + "; ".join(report.blockers),
                resolution=" ".join(report.resolutions),
            )
        ctx.note(
            f"{service}: MySQL {report.heroku_version} -> Convox {report.convox_version}, "
            f"{report.tables} tables, {report.bytes} bytes"
        )
        return CheckMysqlOutputs(
            addon=service,
            config_var=var,
            copied=True,
            heroku_version=report.heroku_version,
            convox_version=report.convox_version,
            tables=report.tables,
            bytes=report.bytes,
            utf8mb3=report.utf8mb3,
            non_transactional=report.non_transactional,
            definers=report.definers,
            findings=[*([warning] if warning else []), *report.findings],
            not_copied=left,
        )


class _SyncMysql(Step):
    outputs: ClassVar[type[MysqlSyncOutputs]] = MysqlSyncOutputs
    reads = (CheckMysqlOutputs,)
    fields = _FIELDS
    overwrites_target_data = True

    def applies(self, model: Any) -> str | None:
        return None if model.mysql.copy_data else "mysql.copy is false"

    def gate_question(self, ctx: Context) -> str | None:
        return force_gate_question(ctx, super().gate_question(ctx), FORCE_QUESTION)

    def describe(self, ctx: Context) -> list[str]:
        from cutover.adapters.mysql import MyConn  # noqa: PLC0415

        section = ctx.model.mysql
        my = _adapter(ctx)
        heroku = MyConn("<heroku host>", 3306, "<user>", "<db>", "")
        convox = MyConn("127.0.0.1", 0, "<user>", "<db>__cutover_next", "")
        data = ctx.work_dir / "mysql-data.sql"
        return [
            "when check-mysql found a MySQL add-on:",
            *_common_describe(ctx, "<config var>"),
            "mariadb (Convox): the guard reads <db>._cutover_sync (live / CHECKSUM TABLE changed "
            "since the last copy / tables and no marker -> refuse unless --force-data)",
            "mariadb (Convox): DROP DATABASE IF EXISTS <db>__cutover_next; CREATE DATABASE "
            "<db>__cutover_next (Heroku's default character set and collation)",
            cmd(my.data_dump_argv(heroku, ["<base tables>"], data))
            + "   (MYSQL_PWD=****; 0600 file; DEFINER clauses -> CURRENT_USER)",
            cmd(_proxy_port(my.load_argv(convox, data))) + "   (MYSQL_PWD=****)",
            cmd(my.objects_dump_argv(heroku, ctx.work_dir / "mysql-objects.sql"))
            + "   (then the views by name)",
            "mariadb (Convox): the _cutover_sync marker in <db>__cutover_next (state, time, "
            "CHECKSUM TABLE of every table)",
            "mariadb (Convox): <db>'s triggers/views/routines/events saved and dropped; RENAME "
            "TABLE <db>.* TO <db>__cutover_prev.*, <db>__cutover_next.* TO <db>.* (one atomic "
            "statement; a failure puts the old objects back); Heroku's objects loaded; "
            f"<db>__cutover_prev and <db>__cutover_next dropped (timeout {section.timeout}s each)",
        ]

    def check(self, ctx: Context) -> MysqlSyncOutputs | None:
        if _addon(ctx, self) is None:
            return self.outputs(skipped="no MySQL add-on on the Heroku app")
        return None

    def apply(self, ctx: Context) -> MysqlSyncOutputs:
        from cutover.adapters import mysqlstaging  # noqa: PLC0415

        found = _addon(ctx, self)
        assert found is not None and found.config_var
        section = ctx.model.mysql
        my = _adapter(ctx)
        attempts = self.saved(ctx, MysqlProgress).attempts
        ctx.save(MysqlProgress(attempts=attempts + 1))
        source = source_conn(ctx, found.config_var)
        with convox_conn(ctx, my) as target:
            forced = mysqlstaging.guard(my, target, force=bool(ctx.extras.get("force_data")))
            if forced:
                ctx.note(f"--force-data: copying although {forced}")
            ctx.note(
                f"copying {found.addon} into {target.database}{mysqlstaging.NEXT_SUFFIX} on "
                f"{resource_name(ctx)} through convox resources proxy; {target.database} is "
                "untouched until the swap"
            )
            done = mysqlstaging.sync(
                my, source, target, ctx.work_dir, section.timeout, note=ctx.note
            )
        if done.definers:
            ctx.note(
                f"{done.definers} DEFINER clause(s) rewritten to the Convox user (Heroku's add-on "
                "user does not exist there)"
            )
        ctx.note(f"swapped the new copy in as {target.database} ({done.marker})")
        return self.outputs(
            tables=done.tables,
            bytes=done.bytes,
            definers=done.definers,
            marker=done.marker,
            seconds=round(done.seconds, 3),
        )


class InitialSyncMysql(_SyncMysql):
    id = "initial-sync-mysql"
    title = "Copy the MySQL add-on's data (first pass, Heroku still live)"
    outputs = InitialSyncMysqlOutputs


class FinalSyncMysql(_SyncMysql):
    id = "final-sync-mysql"
    title = "Final MySQL copy (Heroku in maintenance)"
    in_window = True
    outputs = FinalSyncMysqlOutputs
    gate = "Run the final MySQL copy now? It replaces the Convox MySQL database with Heroku's."

    def gate_text(self, ctx: Context) -> str:
        return f"{super().gate_text(ctx)} {FREEZE_NOTE}"


class VerifyMysql(Step):
    id = "verify-mysql"
    title = "Verify the MySQL data (row counts, row hashes, schema per table)"
    outputs = VerifyMysqlOutputs
    reads = (CheckMysqlOutputs,)
    fields = _FIELDS
    in_window = True

    def applies(self, model: Any) -> str | None:
        return None if model.mysql.copy_data else "mysql.copy is false"

    def describe(self, ctx: Context) -> list[str]:
        mode = ctx.model.mysql.verify
        return [
            "when check-mysql found a MySQL add-on:",
            *_common_describe(ctx, "<config var>"),
            "mariadb (both, 2 at once): per base table COUNT(*)"
            + (
                " and SUM(CONV(LEFT(MD5(CONCAT_WS(',', <each column as length:bytes or N>)), 15), "
                "16, 10))"
                if mode == "checksums"
                else ""
            )
            + "; information_schema columns and indexes; every trigger, view, routine and event "
            "by name",
        ]

    def check(self, ctx: Context) -> VerifyMysqlOutputs | None:
        if _addon(ctx, self) is None:
            return VerifyMysqlOutputs(skipped="no MySQL add-on on the Heroku app")
        return None

    def apply(self, ctx: Context) -> VerifyMysqlOutputs:
        from cutover.adapters import mysqlverify  # noqa: PLC0415

        found = _addon(ctx, self)
        assert found is not None and found.config_var
        section = ctx.model.mysql
        my = _adapter(ctx)
        source = source_conn(ctx, found.config_var)
        with convox_conn(ctx, my) as target:
            result = mysqlverify.verify(
                my,
                source,
                target,
                checksums=section.verify == "checksums",
                progress=ctx.progress,
            )
        if result.mismatches:
            raise CutoverError(
                f"the Convox MySQL data differs from Heroku's in {len(result.mismatches)} "
                "table(s): " + "; ".join(result.mismatches[:10]),
                resolution="Copy again: cutover run --from final-sync-mysql",
            )
        rows = sum(c.rows[0] for c in result.tables)
        ctx.note(f"verified {len(result.tables)} MySQL tables, {rows} rows ({section.verify})")
        return VerifyMysqlOutputs(mode=section.verify, tables=len(result.tables), rows=rows)


def mark_live(ctx: Context) -> None:
    """switch-dns, before DNS changes: the Convox MySQL database's marker says ``live``, so no
    copy overwrites it afterwards (mysqlstaging.guard). Nothing when no MySQL data was copied."""
    from cutover.adapters import mysqlstaging  # noqa: PLC0415
    from cutover.steps.base import read_outputs  # noqa: PLC0415

    found = read_outputs(ctx.state, CheckMysqlOutputs)
    if found is None or not found.addon or not found.copied:
        return
    my = _adapter(ctx)
    with convox_conn(ctx, my) as target:
        ctx.note(
            f"marked {target.database} on {resource_name(ctx)} live: "
            f"{mysqlstaging.mark_live(my, target)}"
        )
