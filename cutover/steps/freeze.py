"""freeze-writes: Heroku's database refuses writes from every client but cutover, reversibly.

Maintenance mode stops web traffic only: workers cutover does not know of, Scheduler jobs,
one-off dynos and other apps attached to the same database keep writing, and a write landing
after the final sync starts is lost. After scale-down this step (cutover/adapters/pgfreeze.py):

1. records the database's previous ``default_transaction_read_only`` default (progress, before
   any change);
2. sets it ``on`` for the database and ends the client sessions that predate it;
3. proves it: a write attempted from a fresh session, in a transaction rolled back, must fail
   with SQLSTATE 25006;
4. waits until the write statistics stand still for ``window.freeze_quiet_seconds`` (bounded by
   ``window.freeze_timeout``);
5. names the other apps attached to the database (``heroku addons --json``: each add-on's
   attachments): they are frozen too.

Undo (rollback): the previous default back (RESET when there was none), read back.
"""

from __future__ import annotations

import importlib
import threading
import time
from typing import Any

from pydantic import Field

from cutover.errors import CutoverError
from cutover.state import RunState, Status
from cutover.steps.base import Context, Progress, Step, StepOutputs, cmd
from cutover.steps.data import _skip_without_db, heroku_source
from cutover.steps.window import together

# Polling interval of the write statistics (PostgreSQL flushes a backend's counters at most
# once a second: PGSTAT_MIN_INTERVAL in src/backend/utils/activity/pgstat.c).
POLL_SECONDS = 1.0


class FreezeProgress(Progress):
    # Saved BEFORE the ALTER DATABASE: the undo restores ``previous`` (None: there was none).
    recorded: bool | None = None
    previous: str | None = None


class FreezeWritesOutputs(StepOutputs):
    """What freeze-writes did; ``previous`` is the database default the undo restores."""

    step_id = "freeze-writes"
    database: str
    previous: str | None = None
    sessions_ended: int = 0
    sessions_kept: list[str] = Field(default_factory=list)
    probe_sqlstate: str
    quiet_seconds: float = 0.0
    other_apps: list[str] = Field(default_factory=list)


def other_apps(addons: list[dict[str, Any]], app: str, attachment: str) -> list[str]:
    """``other-app::ATTACHMENT`` for each attachment of the add-on that ``app`` attaches as
    ``attachment`` (addons --json: commands/addons/index.js joins /addon-attachments)."""
    for addon in addons:
        atts = addon.get("attachments") or []
        mine = [
            a
            for a in atts
            if (a.get("app") or {}).get("name") == app and a.get("name") == attachment
        ]
        if mine:
            return sorted(
                f"{(a.get('app') or {}).get('name')}::{a.get('name')}"
                for a in atts
                if (a.get("app") or {}).get("name") != app
            )
    return []


PREFETCH = "freeze-writes:prefetch"


# The adapters the window's data steps load when they run (each step imports its adapters
# then, for the CLI's start-up time): loaded by prefetch, before the window, instead. Measured:
# pgapply and pgcapture_ddl alone took 85 ms to import inside final-sync.
WINDOW_MODULES = (
    "cutover.adapters.pgapply",
    "cutover.adapters.pgcapture_ddl",
    "cutover.adapters.pgreplace",
    "cutover.adapters.pgcopy",
    "cutover.adapters.pgtables",
    "cutover.adapters.pgrestore",
    "cutover.adapters.pgverify",
    "cutover.adapters.pgschema",
)


def prefetch(ctx: Context) -> None:
    """Before the window (disable-scheduler): read what the window's steps need from Heroku (the
    credentials URL, and the add-ons for freeze-writes, at once), kept in memory for this run only
    (the URL is a secret: never in the state; the heroku adapter reuses it, CREDENTIALS_MAX_AGE),
    so neither freeze-writes, final-sync nor verify-data pays for a CLI start in the window unless
    the gates between took longer than that. Read afresh here: an earlier step's copy may be old.
    The window's data adapters are loaded too (:data:`WINDOW_MODULES`), and on the Convox side
    the resource's URL is read and its proxy started and held for the run (:func:`hold_convox`)
    while the Heroku reads run."""
    db = ctx.model.database
    if db is None or PREFETCH in ctx.extras:
        return
    for module in WINDOW_MODULES:
        importlib.import_module(module)
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415 - only when a step runs

    def heroku_side() -> None:
        if not ctx.model.window.freeze_writes:
            ctx.heroku.credentials_url(db.heroku_attachment, fresh=True)  # final-sync, verify
            ctx.extras[PREFETCH] = None
            return
        ctx.extras[PREFETCH] = together(
            lambda: ctx.heroku.credentials_url(db.heroku_attachment, fresh=True),
            ctx.heroku.addons,
        )

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch")
    try:
        heroku = pool.submit(heroku_side)
        # In this (the run's) thread: a child gets SIGTERM when the thread that started it
        # ends (runner._die_with_parent: PR_SET_PDEATHSIG follows the thread, prctl(2)).
        trouble = hold_convox(ctx)
        heroku.result()
    finally:
        # An interrupt does not wait for the Heroku read (the runner stops its child).
        pool.shutdown(wait=False, cancel_futures=True)
    if trouble:
        ctx.note(trouble)


def hold_convox(ctx: Context) -> str | None:
    """Read the Convox resource's URL and start its proxy, held until the run ends
    (ConvoxAdapter.hold_proxy): final-sync, verify-data and switch-dns use both instead of each
    starting a proxy and a CLI call in the window (0.2-0.3 s each, measured). Best effort: when
    either fails, the note it returns says so, and each step starts its own, as without it."""
    db = ctx.model.database
    assert db
    if threading.current_thread() is not threading.main_thread():
        why = "not in the run's main thread"
    else:
        try:
            ctx.convox.resource_url(db.resource)
            ctx.convox.hold_proxy(db.resource, speaks="postgres")
        except CutoverError as exc:
            why = exc.brief
        except Exception as exc:  # an optimisation: it must not stop the run
            why = f"{type(exc).__name__}: {ctx.masker.mask(str(exc))[:200]}"
        else:
            return None
    return (
        f"the {db.resource} resource's proxy was not started ahead of the window ({why}): "
        "the window's data steps start their own"
    )


# The database setting freeze-writes changes on Heroku (cutover/adapters/pgfreeze.py PARAMETER).
FROZEN_SETTING = "default_transaction_read_only"


def settings_before_freeze(state: RunState) -> dict[str, str | None]:
    """Heroku database settings that are cutover's own while the freeze holds, with the app's
    value from before it (None: the database had none): ``{FROZEN_SETTING: previous}`` once
    freeze-writes may have changed it (done, or its progress says the previous value was
    recorded before the ALTER DATABASE), else ``{}``.

    A sync carries Heroku's database settings to Convox (steps/data.py) and verify-data compares
    them (adapters/pgverify.py): both must see the app's value, or the Convox database would
    refuse every write after the switch."""
    st = state.steps.get(FreezeWrites.id)
    if st is None or st.status in (Status.PENDING, Status.SKIPPED):
        return {}
    if st.status != Status.DONE and not st.outputs.get("recorded"):
        return {}
    previous = st.outputs.get("previous")
    return {FROZEN_SETTING: None if previous is None else str(previous)}


class FreezeWrites(Step):
    id = "freeze-writes"
    title = "Freeze writes on Heroku's database"
    in_window = True
    outputs = FreezeWritesOutputs
    fields = (
        "heroku.app",
        "database.heroku_attachment",
        "window.freeze_writes",
        "window.freeze_quiet_seconds",
        "window.freeze_timeout",
    )
    undo_title = "Unfreeze writes on Heroku's database"

    def applies(self, model: Any) -> str | None:
        if not model.window.freeze_writes:
            return "window.freeze_writes is false"
        return _skip_without_db(model)

    def describe(self, ctx: Context) -> list[str]:
        db = ctx.model.database
        attachment = db.heroku_attachment if db else "DATABASE"
        return [
            cmd(ctx.heroku.argv("pg:credentials:url", attachment))
            + " and "
            + cmd(ctx.heroku.argv("addons", "--json"))
            + "   (at once; read by disable-scheduler, before the window, when in one run)",
            "psql: record the database's default_transaction_read_only, then ALTER DATABASE "
            "... SET default_transaction_read_only = on; pg_terminate_backend() of the sessions "
            "that predate it",
            "psql (fresh session): BEGIN; CREATE TABLE ...; ROLLBACK  (must fail: 25006)",
            f"psql: pg_stat_database writes unchanged for {ctx.model.window.freeze_quiet_seconds}s",
        ]

    def _source(self, ctx: Context) -> Any:
        key = f"{self.id}:source"
        if key not in ctx.extras:
            ctx.extras[key] = heroku_source(ctx)
        return ctx.extras[key]

    def check(self, ctx: Context) -> FreezeWritesOutputs | None:
        return None  # always re-proved: apply is idempotent (the recorded default is kept)

    def apply(self, ctx: Context) -> FreezeWritesOutputs:
        from cutover.adapters import pgfreeze  # noqa: PLC0415 - adapters load when a step runs

        db = ctx.model.database
        assert db
        fetched = ctx.extras.pop(PREFETCH, None)  # read before the window, this run
        if fetched is None:
            fetched = together(
                lambda: ctx.heroku.credentials_url(db.heroku_attachment), ctx.heroku.addons
            )
        url, addons = fetched
        source = heroku_source(ctx, url)
        ctx.extras[f"{self.id}:source"] = source
        pg = ctx.postgres
        saved = self.remembered(ctx, FreezeProgress)
        if saved.recorded:
            previous = saved.previous  # a resume: the first reading, before cutover's change
        else:
            previous = pgfreeze.database_setting(pg, source)
            ctx.save(FreezeProgress(recorded=True, previous=previous))
        ended = pgfreeze.freeze(pg, source)
        ctx.note(
            f"{source.dbname}: default_transaction_read_only = on for new sessions "
            f"(was {previous or 'unset'}); ended {ended.ended} session(s) that predate it"
        )
        if ended.kept:
            ctx.note(
                "sessions the database owner may not end (they can still write until they "
                "disconnect; the statistics wait below catches their writes): "
                + ", ".join(ended.kept)
            )
        sqlstate = pgfreeze.probe_write(pg, source)
        if sqlstate != pgfreeze.READ_ONLY_SQLSTATE:
            raise CutoverError(
                f"the freeze did not take: a write from a fresh session ended with SQLSTATE "
                f"{sqlstate}, not {pgfreeze.READ_ONLY_SQLSTATE} (read-only transaction)",
                resolution="Check the database role may ALTER DATABASE (it must own it), "
                "then run `cutover run` again; `cutover rollback` brings Heroku back.",
            )
        ctx.note("a write attempt from a fresh session failed as it should (SQLSTATE 25006)")
        quiet = self._wait_quiet(ctx, source)
        others = other_apps(addons, ctx.model.heroku.app, db.heroku_attachment)
        if others:
            ctx.note(
                "other apps attached to this database are frozen too (their writes fail "
                "until rollback): " + ", ".join(others)
            )
        return FreezeWritesOutputs(
            database=source.dbname,
            previous=previous,
            sessions_ended=ended.ended,
            sessions_kept=ended.kept,
            probe_sqlstate=sqlstate,
            quiet_seconds=quiet,
            other_apps=others,
        )

    def _wait_quiet(self, ctx: Context, source: Any) -> float:
        """Poll the write statistics until unchanged for freeze_quiet_seconds; the seconds it
        took. A timeout fails naming the writes seen."""
        from cutover.adapters import pgfreeze  # noqa: PLC0415

        window = ctx.model.window
        started = time.monotonic()
        deadline = started + window.freeze_timeout
        last = pgfreeze.write_count(ctx.postgres, source)
        first = last
        still_since = time.monotonic()
        while time.monotonic() - still_since < window.freeze_quiet_seconds:
            if time.monotonic() > deadline:
                raise CutoverError(
                    f"Heroku's database still took writes {window.freeze_timeout}s after the "
                    f"freeze ({last - first} rows written meanwhile)",
                    resolution="A client writes despite the freeze (a superuser's session, or "
                    "one that turns default_transaction_read_only off): find it in "
                    "pg_stat_activity and stop it, then run `cutover run` again; "
                    "`cutover rollback` brings Heroku back.",
                )
            ctx.sleep(POLL_SECONDS)
            now = pgfreeze.write_count(ctx.postgres, source)
            if now != last:
                ctx.note(f"{now - last} row(s) written since the last look; waiting")
                last, still_since = now, time.monotonic()
        return round(time.monotonic() - started, 3)

    # -- undo ------------------------------------------------------------------------------------
    def undo_needed(self, ctx: Context) -> str | None:
        from cutover.adapters import pgfreeze  # noqa: PLC0415

        saved = self.remembered(ctx, FreezeProgress)
        if not saved.recorded:
            return None  # never changed anything
        now = pgfreeze.database_setting(ctx.postgres, self._source(ctx))
        if now == saved.previous:
            # An earlier attempt of this undo that stopped (kill -9) between its ALTER DATABASE
            # and the pg_terminate_backend after it left the sessions opened during the freeze
            # read-only: the setting alone does not say the undo is done; undo again (both
            # statements are idempotent).
            rb = ctx.state.rollback
            us = rb.steps.get(self.id) if rb is not None else None
            if us is not None and us.status in (Status.RUNNING, Status.INTERRUPTED, Status.FAILED):
                return (
                    "an earlier attempt of this undo stopped after restoring the default: "
                    "sessions opened read-only during the freeze may still be open"
                )
            return None
        return (
            f"Heroku's database defaults to default_transaction_read_only = {now} "
            f"(was {saved.previous or 'unset'})"
        )

    def undo_describe(self, ctx: Context) -> list[str]:
        previous = self.remembered(ctx, FreezeProgress).previous
        change = "RESET" if previous is None else f"SET ... = {previous}"
        return [
            cmd(ctx.heroku.argv("pg:credentials:url", "ATTACHMENT")),
            f"psql: ALTER DATABASE ... {change} default_transaction_read_only; read it back",
        ]

    def undo(self, ctx: Context) -> None:
        from cutover.adapters import pgfreeze  # noqa: PLC0415

        previous = self.remembered(ctx, FreezeProgress).previous
        source = self._source(ctx)
        ended = pgfreeze.restore(ctx.postgres, source, previous)
        now = pgfreeze.database_setting(ctx.postgres, source)
        if now != previous:
            raise CutoverError(
                f"Heroku's database still defaults to default_transaction_read_only = {now} "
                f"after restoring {previous or 'unset'}",
                resolution="Run `cutover rollback` again.",
            )
        ctx.note(
            f"{source.dbname}: writes allowed again (default_transaction_read_only "
            f"{'reset' if previous is None else 'back to ' + previous}); ended {ended.ended} "
            "session(s) opened read-only meanwhile (clients reconnect and write)"
        )
