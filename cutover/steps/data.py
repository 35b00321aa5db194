"""Data steps: initial-sync and final-sync (capture, download, restore through a proxy).
verify-data lives in cutover/steps/verify.py."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, ClassVar

from cutover.steps.base import Context, Progress, Step, StepOutputs, cmd

if TYPE_CHECKING:
    from cutover.adapters.postgres import ConnInfo


def _skip_without_db(model: Any) -> str | None:
    return None if model.database else "no database section in the playbook"


# How long a Convox postgres resource may take to accept connections after the promote that
# created it (its pod pulls postgres:<version> and initialises an empty cluster).
RESOURCE_START_WAIT = 600.0


def wait_for_resource(ctx: Context, conn: ConnInfo) -> None:
    db = ctx.model.database
    assert db
    ctx.postgres.wait_accepting(
        conn,
        RESOURCE_START_WAIT,
        f"the Convox {db.resource} resource (through convox resources proxy)",
        sleep=ctx.sleep,
    )


class SyncProgress(Progress):
    backup: str | None = None  # the Heroku backup id, saved when the capture ends


class SyncOutputs(StepOutputs):
    backup: str
    bytes: int
    sha256: str
    objects: int


class InitialSyncOutputs(SyncOutputs):
    step_id = "initial-sync"


class FinalSyncOutputs(SyncOutputs):
    step_id = "final-sync"


_DATA_FIELDS = ("heroku.app", "convox.app", "convox.rack", "database")


class _Sync(Step):
    label = "sync"
    outputs: ClassVar[type[SyncOutputs]] = SyncOutputs
    fields = _DATA_FIELDS
    overwrites_target_data = True

    def applies(self, model: Any) -> str | None:
        return _skip_without_db(model)

    def describe(self, ctx: Context) -> list[str]:
        from cutover.adapters.postgres import ConnInfo  # noqa: PLC0415 - adapters load when a step runs (start-up time)

        db = ctx.model.database
        assert db
        dump = ctx.work_dir / f"{self.id}.dump"
        return [
            cmd(ctx.heroku.argv("pg:backups:capture", db.heroku_attachment)),
            cmd(ctx.heroku.argv("pg:backups:url", "<backup id>")),
            f"GET <backup url>  -> {dump} (0600; HTTP status and size checked)",
            cmd(["pg_restore", "--list", str(dump)]),
            cmd(ctx.convox.argv("resources", "url", db.resource)),
            cmd(ctx.convox.proxy_argv(db.resource, "<free port>")),
            f"psql 'SHOW server_version_num' through the proxy until {db.resource} accepts "
            f"connections (up to {RESOURCE_START_WAIT:g}s)",
            cmd(
                ctx.postgres.restore_argv(
                    dump, ConnInfo("127.0.0.1", 0, "<user>", "<db>"), db.restore_jobs
                )
            )
            + "   (PGHOST=127.0.0.1 PGPORT=<proxy port> PGPASSWORD=****)",
        ]

    def apply(self, ctx: Context) -> SyncOutputs:
        from cutover.adapters.postgres import ConnInfo  # noqa: PLC0415 - adapters load when a step runs (start-up time)

        # The capture names the playbook's attachment (without one, heroku backs up
        # DATABASE_URL's database) and its id is saved before anything else: a sync interrupted
        # after the capture restores that same backup on resume (never "the newest backup",
        # which a scheduled backup can be); pg_restore --clean --if-exists makes a second
        # restore over the first one safe. Interrupted during the capture, it captures afresh:
        # the id cannot be saved sooner, since the CLI completes the line naming it only when
        # the backup ends (oclif's non-TTY action: "Backing up X to b042..." then " done\n").
        db = ctx.model.database
        assert db
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
        size, sha256 = ctx.http.download(url, dump)
        try:
            entries = ctx.postgres.list_dump(dump)
            ctx.note(f"downloaded {size} bytes, {entries} objects in the dump")
            target = ConnInfo.from_url(ctx.convox.resource_url(db.resource))
            with ctx.convox.proxy(db.resource) as port:
                conn = target.via("127.0.0.1", port)
                wait_for_resource(ctx, conn)
                ctx.note(
                    f"restoring into {db.resource} through convox resources proxy "
                    f"on 127.0.0.1:{port}"
                )
                ctx.postgres.restore(dump, conn, db.restore_jobs, timeout=db.timeout)
        finally:
            with contextlib.suppress(FileNotFoundError):
                dump.unlink()  # the data stays on Heroku; no copy lingers on this machine
        return self.outputs(backup=str(backup), bytes=size, sha256=sha256, objects=entries)


class InitialSync(_Sync):
    id = "initial-sync"
    title = "Copy the database (first pass, Heroku still live)"
    outputs = InitialSyncOutputs


class FinalSync(_Sync):
    id = "final-sync"
    title = "Final data sync (Heroku in maintenance)"
    in_window = True
    outputs = FinalSyncOutputs
    gate = "Run the final data sync now? It replaces the Convox database with Heroku's."
