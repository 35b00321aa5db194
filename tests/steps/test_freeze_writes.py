"""freeze-writes against real PostgreSQL: the database's owner (a plain login role, as Heroku's
are: no superuser) freezes its database while a client keeps inserting every 0.1 s; after the
freeze its inserts fail (SQLSTATE 25006) and none land; after the undo they succeed again.

The Heroku adapter is replaced by the two answers the step asks of it (the credentials URL and
``addons --json``); how the real CLI lists other apps attached to the database is shown with
the real CLI in test_window_steps.py (test_addons_json_names_other_apps_attached_...).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from support.convox_rack import no_convox
from support.databases import AppDatabase, make_database
from support.waiting import wait_for

from cutover.adapters import pgfreeze
from cutover.adapters.convox import ConvoxAdapter
from cutover.adapters.postgres import ConnInfo, PostgresAdapter
from cutover.engine.plan import new_state
from cutover.errors import CutoverError
from cutover.playbook import load_playbook
from cutover.runner import ARGV_LOG_VAR, Runner
from cutover.sandbox import pgcluster
from cutover.sandbox.pgcluster import PgCluster
from cutover.secrets import SecretMasker
from cutover.state import RollbackState, Status
from cutover.steps.base import Context
from cutover.steps.freeze import WINDOW_MODULES, FreezeWrites, prefetch

pytestmark = pytest.mark.slow

PLAYBOOK = """
version: 1
heroku: {{app: myapp}}
convox: {{app: myapp, rack: test}}
window:
  freeze_quiet_seconds: 2
  freeze_timeout: {timeout}
"""


class Notes:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def note(self, message: str) -> None:
        self.lines.append(message)


class Heroku:
    def __init__(self, db: AppDatabase) -> None:
        self.db = db
        self.calls: list[str] = []

    def credentials_url(self, attachment: str, *, fresh: bool = False) -> str:
        self.calls.append(f"pg:credentials:url {attachment}")
        return self.db.url() + "?sslmode=disable"  # the test clusters serve no TLS

    def addons(self) -> list[dict[str, Any]]:
        self.calls.append("addons --json")
        app = {"name": "myapp"}
        return [
            {
                "name": "postgresql-shaped-1234",
                "attachments": [
                    {"app": app, "name": "DATABASE"},
                    {"app": {"name": "myapp-admin"}, "name": "MAIN_DB"},
                ],
            }
        ]

    def argv(self, *args: str) -> list[str]:
        return ["heroku", *args, "-a", "myapp"]


@dataclass
class Writer:
    """A client inserting a row every 0.1 s through its own session; like an app's pool it
    reconnects when its session is ended. Records each attempt's outcome."""

    db: AppDatabase
    ok: list[float] = field(default_factory=list)
    refused: list[tuple[float, str | None]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        while not self.stop.is_set():
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.db.url(), autocommit=True, sslmode="disable")
                conn.execute("INSERT INTO events (at) VALUES (clock_timestamp())")
                self.ok.append(time.monotonic())
            except psycopg.Error as exc:
                self.refused.append((time.monotonic(), exc.sqlstate))
                if conn is not None and (conn.closed or exc.sqlstate is None):
                    conn = None
            time.sleep(0.1)
        if conn is not None:
            conn.close()


@dataclass
class World:
    tmp: Path
    db: AppDatabase
    heroku: Heroku

    def context(self, timeout: int = 60) -> tuple[Context, Notes]:
        path = self.tmp / "cutover.yml"
        path.write_text(PLAYBOOK.format(timeout=timeout), encoding="utf-8")
        playbook = load_playbook(path)
        masker = SecretMasker()
        runner = Runner(masker, base_env={ARGV_LOG_VAR: str(self.tmp / "argv.jsonl")})
        notes = Notes()
        ctx = Context(
            playbook=playbook,
            state=new_state(playbook),
            runner=runner,
            masker=masker,
            heroku=self.heroku,  # type: ignore[arg-type]
            # No convox to find: prefetch notes that it could not hold the proxy.
            convox=ConvoxAdapter(no_convox(masker), masker, "myapp", "test"),
            postgres=PostgresAdapter(runner, masker),
            http=None,  # type: ignore[arg-type]
            dns=None,
            reporter=notes,
            work_dir=self.tmp / "work",
        )
        saved: dict[str, Any] = ctx.state.step("freeze-writes").outputs
        ctx.checkpoint = saved.update  # the engine's checkpoint, into the state
        return ctx, notes

    def rows(self) -> int:
        with pgcluster.connect(self.db.cluster, self.db.dbname) as conn:
            row = conn.execute("SELECT count(*) FROM events").fetchone()
        return int(row[0]) if row else -1

    def setting(self) -> str | None:
        conn = ConnInfo.from_url(self.db.url() + "?sslmode=disable")
        return pgfreeze.database_setting(
            PostgresAdapter(Runner(SecretMasker()), SecretMasker()), conn
        )


@pytest.fixture
def world(tmp_path: Path, pg_source: PgCluster) -> Iterator[World]:
    db = make_database(pg_source, "heroku")
    db.execute("CREATE TABLE events (id bigserial PRIMARY KEY, at timestamptz NOT NULL)")
    (tmp_path / "work").mkdir(mode=0o700)
    yield World(tmp_path, db, Heroku(db))


@pytest.fixture
def writer(world: World) -> Iterator[Writer]:
    client = Writer(world.db)
    thread = threading.Thread(target=client.run, daemon=True)
    thread.start()
    wait_for(lambda: len(client.ok) >= 3, "the writer's first inserts")
    yield client
    client.stop.set()
    thread.join(timeout=30)


def test_a_frozen_database_refuses_every_write_and_the_undo_reopens_it(
    world: World, writer: Writer
) -> None:
    ctx, notes = world.context()
    step = FreezeWrites()
    out = step.apply(ctx)
    frozen_at = time.monotonic()
    assert out.previous is None and out.probe_sqlstate == "25006"
    assert out.sessions_ended >= 1  # the writer's session predated the freeze
    assert out.other_apps == ["myapp-admin::MAIN_DB"]
    assert any("myapp-admin::MAIN_DB" in line and "frozen too" in line for line in notes.lines)
    assert ctx.state.step("freeze-writes").outputs["recorded"] is True  # saved before the ALTER
    assert world.setting() == "on"

    # The writer keeps trying: its inserts fail as read-only and none lands.
    rows = world.rows()
    wait_for(
        lambda: len([t for t, _ in writer.refused if t > frozen_at]) >= 5,
        "the writer's inserts after the freeze to fail",
    )
    assert {code for t, code in writer.refused if t > frozen_at} <= {"25006"}
    assert not [t for t in writer.ok if t > frozen_at]
    assert world.rows() == rows

    # cutover's own later sessions only read: a full fingerprint of the database still works.
    source = ConnInfo.from_url(world.db.url() + "?sslmode=disable")
    assert ctx.postgres.fingerprints(source, checksums=True)

    assert step.undo_needed(ctx) is not None
    step.undo(ctx)
    undone_at = time.monotonic()
    assert world.setting() is None  # RESET: there was no database default before
    assert step.undo_needed(ctx) is None
    wait_for(
        lambda: len([t for t in writer.ok if t > undone_at]) >= 3,
        "the writer's inserts to succeed again after the undo",
    )
    assert world.rows() > rows


def test_what_disable_scheduler_read_before_the_window_is_not_read_again(world: World) -> None:
    ctx, notes = world.context()
    prefetch(ctx)  # disable-scheduler, before maintenance-on
    assert sorted(world.heroku.calls) == ["addons --json", "pg:credentials:url DATABASE"]
    # Holding the Convox proxy is best effort: without it the window's steps start their own.
    assert any("proxy was not started ahead of the window" in line for line in notes.lines)
    # ... and the window's data adapters are loaded: final-sync and verify-data import none
    assert all(name in sys.modules for name in WINDOW_MODULES)
    assert "cutover.adapters.pgapply" in WINDOW_MODULES
    FreezeWrites().apply(ctx)
    assert len(world.heroku.calls) == 2  # the window made no heroku call for the freeze
    FreezeWrites().undo(ctx)


def test_the_undo_restores_a_previous_setting_exactly(world: World) -> None:
    with pgcluster.connect(world.db.cluster) as conn:
        conn.execute(f'ALTER DATABASE "{world.db.dbname}" SET default_transaction_read_only = off')
    ctx, _ = world.context()
    out = FreezeWrites().apply(ctx)
    assert out.previous == "off"
    # A resume keeps the first reading, not the frozen "on" it would read now.
    again = FreezeWrites().apply(ctx)
    assert again.previous == "off"
    FreezeWrites().undo(ctx)
    assert world.setting() == "off"


def test_a_writer_the_owner_cannot_end_fails_the_quiet_wait(world: World) -> None:
    """A superuser's session predating the freeze keeps its setting and cannot be ended by
    the owner: it is listed, and its writes keep the statistics moving until the timeout."""
    stop = threading.Event()
    conn = pgcluster.connect(world.db.cluster, world.db.dbname)  # the superuser

    def write() -> None:
        while not stop.is_set():
            conn.execute("INSERT INTO events (at) VALUES (clock_timestamp())")
            time.sleep(0.2)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    try:
        ctx, notes = world.context(timeout=4)
        with pytest.raises(CutoverError, match="still took writes"):
            FreezeWrites().apply(ctx)
        assert any("may not end" in line for line in notes.lines)
    finally:
        stop.set()
        thread.join(timeout=30)
        conn.close()
        FreezeWrites().undo(world.context()[0])  # a fresh context: the saved progress is gone


def test_freeze_writes_is_skipped_when_the_playbook_turns_it_off(tmp_path: Path) -> None:
    path = tmp_path / "cutover.yml"
    path.write_text(
        "version: 1\nheroku: {app: app}\nconvox: {app: a}\nwindow: {freeze_writes: false}\n",
        encoding="utf-8",
    )
    assert FreezeWrites().applies(load_playbook(path).model) == "window.freeze_writes is false"


def test_an_undo_killed_after_its_alter_still_ends_the_read_only_sessions(
    world: World, writer: Writer
) -> None:
    """kill -9 between the undo's ALTER DATABASE and the pg_terminate_backend that follows (two
    statements of one psql script, each committed on its own): the default is back, but the
    sessions the app's pool opened during the freeze started read-only and stay so. The resumed
    rollback (its undo recorded running) must not take the setting alone for "undone"."""
    ctx, _ = world.context()
    step = FreezeWrites()
    step.apply(ctx)
    frozen_at = time.monotonic()
    wait_for(
        lambda: len([t for t, _ in writer.refused if t > frozen_at]) >= 3,
        "the writer to reconnect read-only and be refused",
    )
    ctx.state.rollback = RollbackState()
    ctx.state.rollback.step(step.id).status = Status.RUNNING  # saved before the undo's effect
    source = ConnInfo.from_url(world.db.url() + "?sslmode=disable")
    ctx.postgres.psql(
        source,
        f"SET {pgfreeze.PARAMETER} = off; "  # the undo's own session writes (pgfreeze)
        f'ALTER DATABASE "{world.db.dbname}" RESET {pgfreeze.PARAMETER};',
    )
    assert world.setting() is None
    killed_at = time.monotonic()
    wait_for(
        lambda: len([t for t, _ in writer.refused if t > killed_at]) >= 3,
        "the writer's read-only session to keep refusing after the ALTER alone",
    )

    assert step.undo_needed(ctx) is not None
    step.undo(ctx)
    undone_at = time.monotonic()
    wait_for(
        lambda: len([t for t in writer.ok if t > undone_at]) >= 3,
        "the writer's inserts to succeed again after the resumed undo",
    )
