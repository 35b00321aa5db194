"""Data steps: initial-sync and final-sync. verify-data lives in cutover/steps/verify.py.

Every full sync, whatever ``database.method``, is never worse for the Convox database
(issue 10, decisions 1-3; cutover/adapters/pgstaging.py):

1. through ``convox resources proxy``: finish a swap an interrupted run left half-done, then the
   guard (the marker in the database's COMMENT: refuse a live database, one with writes since
   the last sync, one holding tables cutover did not put there; ``--force-data`` overrides after a
   gate);
2. ``<db>__cutover_next`` created fresh; the data goes there: ``backup`` (capture, download,
   pg_restore), ``direct`` (cutover/adapters/pgcopy.py) or ``in-rack`` (cutover/steps/inrack.py);
3. the source's database and role settings applied to it, the ``cutover:synced`` marker written;
4. the swap. A failure before it leaves ``<db>`` as it was; the step stays resumable.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, ClassVar

from cutover.steps import datarows, datatables, datatarget
from cutover.steps.base import Context, Progress, Step, StepOutputs, cmd

if TYPE_CHECKING:
    from cutover.adapters.pgcopy import CopyProgress
    from cutover.adapters.pgstaging import Setting
    from cutover.adapters.postgres import ConnInfo


def _skip_without_db(model: Any) -> str | None:
    return None if model.database else "no database section in the playbook"


# How long a Convox postgres resource may take to accept connections after the promote that
# created it (its pod pulls postgres:<version> and initialises an empty cluster).
RESOURCE_START_WAIT = 600.0
FORCE_QUESTION = (
    "--force-data: sync into the Convox database even if it is live, has taken writes since the "
    "last sync, or holds tables cutover did not put there? Its data is replaced by Heroku's."
)


def force_gate_question(
    ctx: Context, base: str | None, question: str = FORCE_QUESTION
) -> str | None:
    """A gate's question, preceded by ``question`` when the run has ``--force-data`` (the data
    steps of Postgres, MySQL and Redis share it)."""
    if ctx.extras.get("force_data"):
        return question + (f" {base}" if base else "")
    return base


def wait_for_resource(ctx: Context, conn: ConnInfo) -> None:
    db = ctx.model.database
    assert db
    ctx.postgres.wait_accepting(
        conn,
        RESOURCE_START_WAIT,
        f"the Convox {db.resource} resource (through convox resources proxy)",
        sleep=ctx.sleep,
    )


def app_settings(ctx: Context, settings: list[Setting]) -> list[Setting]:
    """Heroku's database settings as the app set them: while freeze-writes holds the database
    read-only, its ``default_transaction_read_only`` is cutover's and is replaced by the value
    from before the freeze (left out when there was none), so the copy accepts writes.

    A database-level ``default_transaction_read_only = on`` that is not this run's freeze is
    left out too, with a finding: one the state does not know of, or the "previous" value
    freeze-writes recorded when Heroku was already read-only. After a finished cutover Heroku
    stays frozen, and a run whose state was moved aside sees that freeze as the app's own;
    carried, it would make the live Convox database refuse every write of the app. The rare app
    that wants a read-only default sets it again by hand (the finding says how)."""
    from cutover.adapters.pgfreeze import reads_on  # noqa: PLC0415
    from cutover.adapters.pgstaging import Setting  # noqa: PLC0415
    from cutover.steps.freeze import FROZEN_SETTING, settings_before_freeze  # noqa: PLC0415 - freeze imports data

    before = settings_before_freeze(ctx.state)
    out = []
    for setting in settings:
        value: str | None = setting.value
        if setting.scope == "database" and setting.name in before:
            value = before[setting.name]  # the app's, from before this run's freeze
        if value is None:
            continue
        if setting.scope == "database" and setting.name == FROZEN_SETTING and reads_on(value):
            ctx.note(
                f"finding: Heroku's database defaults to {FROZEN_SETTING} = {value}, not set "
                "by this run's freeze-writes (an earlier run's freeze, whose state was moved "
                "aside, or the app's own): not carried, so the Convox database accepts writes. "
                f"If the app wants it: ALTER DATABASE <db> SET {FROZEN_SETTING} = on, on Convox"
            )
            continue
        out.append(Setting(setting.scope, setting.name, value))
    return out


def reads_beside(*reads: Callable[[], str]) -> list[Future[str]]:
    """Each read started in its own thread; their futures (the caller goes on meanwhile)."""
    pool = ThreadPoolExecutor(max_workers=len(reads), thread_name_prefix="sync-reads")
    futures = [pool.submit(read) for read in reads]
    pool.shutdown(wait=False)
    return futures


def heroku_source(ctx: Context, url: str | None = None) -> ConnInfo:
    """Heroku's database (``pg:credentials:url``, or ``url`` already read), over TLS unless the
    URL says otherwise."""
    from cutover.adapters.postgres import ConnInfo  # noqa: PLC0415 - adapters load when a step runs

    db = ctx.model.database
    assert db
    if url is None:
        url = ctx.heroku.credentials_url(db.heroku_attachment)
    ctx.masker.add(url)
    source = ConnInfo.from_url(url)
    ctx.masker.add(source.password)
    if source.sslmode is None:
        source = ConnInfo(
            source.host, source.port, source.user, source.dbname, source.password, "require"
        )
    return source


def _progress(ctx: Context, p: CopyProgress) -> None:
    """Tables done of total and bytes, drawn and recorded by ``ctx.progress`` (rate, elapsed and
    ETA; ``status --json`` shows them)."""
    ctx.progress(
        p.tables_done,
        p.tables_total,
        unit="tables",
        bytes_done=p.bytes_done,
        bytes_total=p.bytes_total or None,
    )


class SyncProgress(Progress):
    backup: str | None = None  # the Heroku backup id, saved when the capture ends
    # changed-tables: Heroku's statistics (pgchanges.StatsSnapshot as JSON), read before the
    # copy started, so a resumed initial-sync keeps the earlier (more conservative) baseline
    stats: dict[str, Any] | None = None


class SyncOutputs(StepOutputs):
    method: str = "backup"
    backup: str | None = None  # backup method: the Heroku backup restored
    sha256: str | None = None  # backup method: of the downloaded dump
    bytes: int
    objects: int  # dump entries (backup) or tables (direct)
    seconds: float | None = None
    marker: str | None = None  # the cutover:synced comment written on the database
    tables_copied: list[str] | None = None  # changed-tables: the tables replaced in place
    # changed-rows (steps/datarows.py): the capture position the copy or the apply reached
    position: str | None = None


class InitialSyncOutputs(SyncOutputs):
    step_id = "initial-sync"
    # changed-tables: Heroku's statistics before the copy (pgchanges.StatsSnapshot as JSON),
    # the baseline final-sync compares against. Kept a dict: steps import no adapter at load.
    stats: dict[str, Any] | None = None
    capture_position: str | None = None  # changed-rows: read before the copy started


class FinalSyncOutputs(SyncOutputs):
    step_id = "final-sync"
    # changed-rows: log entries applied, rows written and deleted, tables copied whole
    entries: int | None = None
    upserted: int | None = None
    deleted: int | None = None
    whole: list[str] | None = None
    schema_changed: list[str] | None = None  # changed-rows: tables Heroku's DDL affected


_DATA_FIELDS = ("heroku.app", "convox.app", "convox.rack", "database")


class _Sync(Step):
    label = "sync"
    outputs: ClassVar[type[SyncOutputs]] = SyncOutputs
    fields = _DATA_FIELDS
    overwrites_target_data = True

    def applies(self, model: Any) -> str | None:
        return _skip_without_db(model)

    def gate_question(self, ctx: Context) -> str | None:
        return force_gate_question(ctx, super().gate_question(ctx))

    def describe(self, ctx: Context) -> list[str]:
        from cutover.adapters.pgrestore import restore_argv  # noqa: PLC0415 - adapters load when a step runs

        db = ctx.model.database
        assert db
        dump = ctx.work_dir / f"{self.id}.dump"
        staging = "<db>__cutover_next"
        lines = [
            cmd(ctx.heroku.argv("pg:credentials:url", db.heroku_attachment))
            + "   (PGSSLMODE=require unless the URL says otherwise)",
            cmd(ctx.convox.argv("resources", "url", db.resource)),
            cmd(ctx.convox.proxy_argv(db.resource, "<free port>")),
            f"psql (postgres database) and psql (<db>) at once, through the proxy until "
            f"{db.resource} accepts connections (up to {RESOURCE_START_WAIT:g}s): its version, "
            "the <db>/staging/previous databases, <db>'s COMMENT marker, its row writes and "
            "tables (cutover/adapters/pglook.py)",
            "psql (postgres database): finish an interrupted swap, if one is left; the guard "
            "judges the marker (live / writes since the last sync / foreign tables -> refuse)",
            f"psql (postgres database): DROP DATABASE IF EXISTS {staging}; CREATE DATABASE "
            f"{staging} TEMPLATE template0",
        ]
        if db.method == "backup":
            lines += [
                cmd(ctx.heroku.argv("pg:backups:capture", db.heroku_attachment)),
                cmd(ctx.heroku.argv("pg:backups:url", "<backup id>")),
                f"GET <backup url>  -> {dump} (0600; HTTP status and size checked)",
                cmd(["pg_restore", "--list", str(dump)])
                + f"   (filtered: {', '.join(db.skip_extensions) or 'nothing'} left out when "
                "the target role cannot create it)",
                cmd(restore_argv(dump, dump.with_suffix(".list"), staging, db.restore_jobs))
                + "   (PGHOST=127.0.0.1 PGPORT=<proxy port> PGPASSWORD=****)",
            ]
        elif db.method == "direct":
            lines += [
                "psql (Heroku): BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT "
                "pg_export_snapshot(); LOCK TABLE <every table> IN ACCESS SHARE MODE  (held "
                "open for the whole copy: a schema change on Heroku waits for it)",
                "pg_dump --schema-only -Fc --snapshot=<id> -f <0600 file>; pg_restore "
                f"--section=pre-data --no-owner --no-acl --use-list <filtered> into {staging}",
                f"per table, largest first, {db.restore_jobs} at once: psql -c 'COPY t TO "
                "STDOUT' (Heroku, in the snapshot) | psql -c 'COPY t FROM STDIN' (Convox); "
                "binary format when both run one major version and t has built-in types only",
                "pg_dump -Fc --data-only -b --snapshot=<id> | pg_restore --data-only (large "
                "objects); setval for every sequence",
                f"pg_restore --section=post-data --jobs {db.restore_jobs} (indexes, constraints, "
                "triggers)",
            ]
        else:
            from cutover.steps import inrack  # noqa: PLC0415 - loads the convox adapter's types

            lines += inrack.describe(ctx, staging)
        lines += datarows.describe(ctx, self.id)
        lines += [
            f"psql: ALTER DATABASE {staging} SET / ALTER ROLE CURRENT_USER IN DATABASE "
            f"{staging} SET (Heroku's database and role settings)",
            f"psql: COMMENT ON DATABASE {staging} IS 'cutover:synced <time> writes=<N>'",
            f"psql (postgres database): swap {staging} in as <db>, drop <db>__cutover_prev",
        ]
        return lines

    def apply(self, ctx: Context) -> SyncOutputs:
        from cutover.adapters import pgstaging  # noqa: PLC0415 - adapters load when a step runs
        from cutover.adapters.postgres import ConnInfo  # noqa: PLC0415

        db = ctx.model.database
        assert db
        # Heroku's credentials (a heroku CLI start: 1.5 s idle, 7 s measured on a loaded 2-core
        # machine) are read while the Convox side is prepared and guarded, which needs none of
        # them: the two were the larger part of a small final sync's fixed cost. Nothing is
        # written before both are known (the swap recovery only finishes an earlier swap).
        # The resource's URL (a convox CLI call) is read while the proxy starts, too.
        credentials, resource_url = reads_beside(
            lambda: ctx.heroku.credentials_url(db.heroku_attachment),
            lambda: ctx.convox.resource_url(db.resource, reuse=True),
        )
        self._read_early(ctx, credentials)
        pg = ctx.postgres
        with ctx.convox.proxy(db.resource, speaks="postgres") as port:
            target = ConnInfo.from_url(resource_url.result())
            ctx.masker.add(target.password)
            conn = target.via("127.0.0.1", port)
            forced = datatarget.prepare(ctx, conn)
            if forced:
                ctx.note(f"--force-data: syncing although {forced}")
            source_url = credentials.result()
            source = heroku_source(ctx, source_url)
            in_place = self._in_place(ctx, source, conn)
            if in_place is not None:
                return in_place
            if db.method == "in-rack":
                from cutover.steps.inrack import prepare_in_rack  # noqa: PLC0415

                # Before the staging database is recreated: a copy whose CLI was killed may
                # still be restoring into it from its pod.
                prepare_in_rack(ctx, source_url)
            baseline = self._baseline(ctx, source)
            position = self._capture_position(ctx, source)  # changed-rows: before the copy
            staging = pgstaging.create_staging(pg, conn)
            try:
                ctx.note(
                    f"copying ({db.method}) into {staging.dbname} on {db.resource} through "
                    f"convox resources proxy on 127.0.0.1:{port}; {conn.dbname} is untouched "
                    "until the swap"
                )
                # Heroku's settings are read while the copy runs (one psql start less after it).
                reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="heroku-settings")
                source_settings = reader.submit(pgstaging.read_settings, pg, source)
                reader.shutdown(wait=False)
                out = self._fill(ctx, source_url, source, staging)
                settings = app_settings(ctx, source_settings.result())
                for refused in pgstaging.apply_settings(pg, conn, staging.dbname, settings):
                    ctx.note(f"finding: the target refused a setting: {refused}")
                marker = datarows.mark_synced(pg, staging, position)
            except BaseException:
                with contextlib.suppress(Exception):
                    pgstaging.drop_staging(pg, conn)
                raise
            pgstaging.swap(pg, conn, timeout=db.timeout)
            ctx.note(f"swapped the new copy in as {conn.dbname} ({marker})")
        if baseline is not None:
            out["stats"] = baseline
        if position is not None:
            out["capture_position"] = position
        return self.outputs(**{**out, "marker": marker})

    def _baseline(self, ctx: Context, source: ConnInfo) -> dict[str, Any] | None:
        """changed-tables: Heroku's statistics, read before anything is copied (initial-sync)."""
        return None

    def _capture_position(self, ctx: Context, source: ConnInfo) -> str | None:
        """changed-rows: the capture position, read before anything is copied (initial-sync)."""
        return None

    def _read_early(self, ctx: Context, credentials: Future[str]) -> None:
        """Start reads of Heroku that only need its URL, while the Convox side is prepared."""

    def _in_place(self, ctx: Context, source: ConnInfo, conn: ConnInfo) -> SyncOutputs | None:
        """A sync that is not a full copy into staging (final-sync's changed-tables), run after
        the guard; None for a full sync."""
        return None

    def _fill(
        self, ctx: Context, source_url: str, source: ConnInfo, staging: ConnInfo
    ) -> dict[str, Any]:
        db = ctx.model.database
        assert db
        if db.method == "in-rack":
            from cutover.steps.inrack import sync_in_rack  # noqa: PLC0415

            moved = sync_in_rack(ctx, source_url, staging.dbname, db.skip_extensions)
            return {
                "method": "in-rack",
                "bytes": moved.bytes,
                "objects": moved.objects,
                "seconds": round(moved.seconds, 3),
            }
        if db.method == "direct":
            from cutover.adapters.pgcopy import copy_database  # noqa: PLC0415

            result = copy_database(
                ctx.runner,
                ctx.masker,
                source,
                staging,
                jobs=db.restore_jobs,
                skip_extensions=db.skip_extensions,
                timeout=db.timeout,
                progress=lambda p: _progress(ctx, p),
            )
            self._note_skipped(ctx, result.skipped_extensions)
            ctx.note(
                f"copied {result.tables} tables, {result.binary_tables} of them in COPY's binary "
                "format (same major version, built-in column types), the rest in text"
            )
            return {
                "method": "direct",
                "bytes": result.bytes,
                "objects": result.tables,
                "seconds": round(result.seconds, 3),
            }
        return self._from_backup(ctx, source, staging)

    def _note_skipped(self, ctx: Context, skipped: tuple[str, ...] | list[str]) -> None:
        for name in skipped:
            ctx.note(
                f"finding: extension {name} left out: the Convox role may not create it "
                "(database.skip_extensions); ask the resource's admin to create it if the app "
                "needs it"
            )

    def _from_backup(self, ctx: Context, source: ConnInfo, staging: ConnInfo) -> dict[str, Any]:
        # The capture names the playbook's attachment (without one, heroku backs up
        # DATABASE_URL's database) and its id is saved before anything else: a sync interrupted
        # after the capture restores that same backup on resume (never "the newest backup",
        # which a scheduled backup can be); the staging database is created fresh each time.
        # Interrupted during the capture, it captures afresh: the id cannot be saved sooner,
        # since the CLI completes the line naming it only when the backup ends (oclif's non-TTY
        # action: "Backing up X to b042..." then " done\n").
        from cutover.adapters.pgrestore import extensions_to_skip, restore_dump  # noqa: PLC0415
        from cutover.steps.dataretry import download_retrying, restore_retrying  # noqa: PLC0415

        db = ctx.model.database
        assert db
        started = time.monotonic()
        backup = self.saved(ctx, SyncProgress).backup  # this attempt only (not --from)
        if backup:
            ctx.note(
                f"resuming with Heroku backup {backup}, captured by this step before "
                "the interruption"
            )
        else:
            backup = ctx.heroku.backup_capture(db.heroku_attachment, timeout=db.timeout)
            ctx.save(SyncProgress(backup=backup))
            ctx.note(f"captured Heroku backup {backup} of {db.heroku_attachment}")
        url = ctx.heroku.backup_url(str(backup))
        dump = ctx.work_dir / f"{self.id}.dump"
        size, sha256 = download_retrying(ctx, url, dump)  # a 5xx or reset: downloaded again
        try:
            skipped = extensions_to_skip(ctx.postgres, source, staging, db.skip_extensions)
            self._note_skipped(ctx, skipped)
            entries = restore_retrying(  # a lost connection: staging recreated, restored again
                ctx,
                staging,
                lambda: restore_dump(
                    ctx.runner,
                    ctx.masker,
                    dump,
                    staging,
                    jobs=db.restore_jobs,
                    skipped=skipped,
                    timeout=db.timeout,
                ),
            )
            ctx.note(f"downloaded {size} bytes, restored {entries} objects")
        finally:
            with contextlib.suppress(FileNotFoundError):
                dump.unlink()  # the data stays on Heroku; no copy lingers on this machine
        return {
            "method": "backup",
            "backup": str(backup),
            "bytes": size,
            "sha256": sha256,
            "objects": entries,
            "seconds": round(time.monotonic() - started, 3),
        }


class InitialSync(_Sync):
    id = "initial-sync"
    title = "Copy the database (first pass, Heroku still live)"
    outputs = InitialSyncOutputs

    def _baseline(self, ctx: Context, source: ConnInfo) -> dict[str, Any] | None:
        # Read before the capture or the snapshot: a write during the copy then counts as a
        # change (copied again), never as already copied (cutover/adapters/pgchanges.py).
        from cutover.adapters.pgchanges import take_stats  # noqa: PLC0415

        db = ctx.model.database
        assert db
        if db.final_sync != "changed-tables":
            return None
        saved = self.saved(ctx, SyncProgress)
        if saved.stats is not None:
            return saved.stats
        stats = take_stats(ctx.postgres, source).model_dump(mode="json", by_alias=True)
        ctx.save(SyncProgress(stats=stats))
        return stats

    def _capture_position(self, ctx: Context, source: ConnInfo) -> str | None:
        return datarows.initial_position(ctx, source)


class FinalSync(_Sync):
    id = "final-sync"
    title = "Final data sync (Heroku in maintenance)"
    in_window = True
    outputs = FinalSyncOutputs
    gate = "Run the final data sync now? It replaces the Convox database with Heroku's."

    def gate_text(self, ctx: Context) -> str:
        db = ctx.model.database
        if db is not None and db.final_sync != "full":
            return (
                f"Run the final data sync now ({db.final_sync}: the changes since the last sync "
                "are applied to the Convox database in place"
                + (
                    "; tables whose definition changed on Heroku since the capture are copied whole"
                    if db.final_sync == "changed-rows"
                    else ""
                )
                + "; a full copy replaces it if they cannot be trusted)?"
            )
        return super().gate_text(ctx)

    reads = (InitialSyncOutputs,)

    def _read_early(self, ctx: Context, credentials: Future[str]) -> None:
        # Heroku's capture, read while Convox is guarded (not when the sync will be full).
        if datarows.wanted(ctx) and datarows.installed_after_copy(ctx.state) is None:
            datarows.read_capture_early(ctx, credentials)

    def _in_place(self, ctx: Context, source: ConnInfo, conn: ConnInfo) -> SyncOutputs | None:
        """changed-tables: compare Heroku's statistics with initial-sync's baseline and replace
        only the changed tables in place (each atomically; then every sequence). None (a full
        sync into staging) when the baseline is missing or the comparison says everything."""
        db = ctx.model.database
        assert db
        initial = self.read(ctx, InitialSyncOutputs)
        if db.final_sync == "changed-rows":
            position = initial.capture_position if initial else None
            done = datarows.final_sync(ctx, source, conn, position)
        elif db.final_sync == "changed-tables":
            done = datatables.final_sync(ctx, source, conn, initial.stats if initial else None)
        else:
            return None
        return None if done is None else self.outputs(**done)
