"""``cutover catch-up`` and ``cutover cleanup`` (engine/catchup.py, engine/cleanup.py; issue 13).

The applying paths run in-process against two real PostgreSQL clusters: the engine function is
the command's body (lock, state, audit and output are real); only ``build_context`` is replaced
by the World of tests/steps/test_data_sync.py (Heroku and Convox reduced to the answers asked:
the credentials URL, the resource URL, the proxy port). The refusals that need no database run
as real ``cutover`` processes.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from steps.test_changed_rows import may_replicate
from steps.test_data_sync import PLAYBOOK, Convox, Heroku, Http, Notes, World
from support.herokudb import heroku_shaped, query, rds_target

from cutover.adapters.postgres import PostgresAdapter
from cutover.engine import catchup as catchup_module
from cutover.engine import context as context_module
from cutover.engine.catchup import catch_up
from cutover.engine.cleanup import cleanup
from cutover.engine.lock import RunLock
from cutover.engine.plan import new_state
from cutover.errors import CutoverError, NotYet
from cutover.playbook import load_playbook
from cutover.runner import ARGV_LOG_VAR, Runner
from cutover.sandbox.pgcluster import PgCluster
from cutover.secrets import SecretMasker
from cutover.state import RunState, StateStore, Status
from cutover.steps.base import Context
from cutover.steps.capture import CaptureChanges
from cutover.steps.data import InitialSync
from cutover.steps.datatarget import mark_target_live
from cutover.ui import Ui

ROWS = "changed-rows"


class Out:
    """A Ui writing into strings, with the masker the command's context uses."""

    def __init__(self) -> None:
        self.out, self.err = io.StringIO(), io.StringIO()
        self.masker = SecretMasker()
        self.ui = Ui(
            Console(file=self.out, width=250, highlight=False),
            self.masker,
            Console(file=self.err, width=250, highlight=False),
        )

    def text(self) -> str:
        return self.out.getvalue() + self.err.getvalue()


class Setup:
    def __init__(self, tmp: Path, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
        self.tmp, self.world = tmp, world
        self.path = tmp / "cutover.yml"
        self.path.write_text(PLAYBOOK.format(method="direct", final_sync=ROWS), encoding="utf-8")
        self.playbook = load_playbook(self.path)
        monkeypatch.setattr(context_module, "build_context", self.build_context)

    def build_context(
        self,
        playbook: Any,
        state: RunState,
        *,
        masker: SecretMasker,
        audit: Any,
        reporter: Any,
        **_: Any,
    ) -> Context:
        runner = Runner(masker, base_env={ARGV_LOG_VAR: str(self.world.argv_log)})
        work = self.tmp / "work"
        work.mkdir(mode=0o700, exist_ok=True)
        return Context(
            playbook=playbook,
            state=state,
            runner=runner,
            masker=masker,
            heroku=Heroku(self.world.source, self.tmp),  # type: ignore[arg-type]
            convox=Convox(self.world.target),  # type: ignore[arg-type]
            postgres=PostgresAdapter(runner, masker),
            http=Http(self.world.source),  # type: ignore[arg-type]
            dns=None,
            reporter=reporter,
            work_dir=work,
        )

    def step_ctx(self, state: RunState) -> Context:
        masker = SecretMasker()
        return self.build_context(self.playbook, state, masker=masker, audit=None, reporter=Notes())

    def synced(self) -> RunState:
        """capture-changes and initial-sync done, recorded in the state file."""
        state = new_state(self.playbook)
        ctx = self.step_ctx(state)
        for step in (CaptureChanges(), InitialSync()):
            out = step.apply(ctx)
            st = state.step(step.id)
            st.outputs = out.model_dump(mode="json", exclude_none=True)
            st.status = Status.DONE
        StateStore(self.playbook.state_dir).save(state)
        return state

    def events(self) -> list[dict[str, Any]]:
        path = self.playbook.state_dir / "events.jsonl"
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]

    def assert_no_password(self, *texts: str) -> None:
        files = [p.read_text(encoding="utf-8") for p in self.playbook.state_dir.glob("*.json*")]
        argv = self.world.argv_log.read_text(encoding="utf-8")
        for secret in (self.world.source.password, self.world.target.password):
            for text in (*texts, *files, argv):
                assert secret not in text


@pytest.fixture
def setup(
    tmp_path: Path, pg_source: PgCluster, pg_target: PgCluster, monkeypatch: pytest.MonkeyPatch
) -> Setup:
    world = World(tmp_path, heroku_shaped(pg_source), rds_target(pg_target))
    may_replicate(world)
    return Setup(tmp_path, world, monkeypatch)


WORKLOAD = (
    "INSERT INTO authors (name) SELECT 'late ' || g FROM generate_series(1, 30) g",
    "UPDATE books SET title = 'retitled' WHERE id <= 40",
    "DELETE FROM books WHERE id > 390",
)


@pytest.mark.slow
def test_catch_up_shows_how_far_behind_applies_and_shows_it_again(setup: Setup) -> None:
    setup.synced()
    setup.world.source.execute(*WORKLOAD)
    out = Out()
    assert catch_up(setup.path, out.ui) == 0
    text = out.text()
    assert "change(s) behind" in text and "since capture position" in text
    assert "applied " in text and "/s)" in text
    assert "now 0 changes behind" in text
    for table in ("authors", "books"):
        same = f"SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM {table} t"
        assert query(setup.world.target, same) == query(setup.world.source, same)
    marker = setup.world.comment()
    assert marker.startswith("cutover:synced ") and " capture=" in marker
    events = [e for e in setup.events() if e["kind"] == "catch-up"]
    assert events and events[-1]["entries"] > 0 and events[-1]["behind"] == 0
    # Again: nothing behind, nothing applied; the marker's position moves on.
    again = Out()
    assert catch_up(setup.path, again.ui) == 0
    assert "Convox is 0 changes behind" in again.text()
    assert "applied 0 change(s)" in again.text()
    setup.assert_no_password(text, again.text())


@pytest.mark.slow
def test_dry_run_only_counts(setup: Setup) -> None:
    setup.synced()
    setup.world.source.execute(*WORKLOAD)
    marker = setup.world.comment()
    out = Out()
    assert catch_up(setup.path, out.ui, dry_run=True) == 0
    assert "change(s) behind" in out.text() and "applied" not in out.text()
    assert setup.world.comment() == marker
    assert query(setup.world.target, "SELECT count(*) FROM authors") == [(50,)]


@pytest.mark.slow
def test_a_schema_change_is_refused_naming_the_tables_the_final_sync_copies_whole(
    setup: Setup,
) -> None:
    setup.synced()
    setup.world.source.execute("ALTER TABLE books ADD COLUMN isbn text")
    with pytest.raises(CutoverError) as refused:
        catch_up(setup.path, Out().ui)
    assert "the final sync will copy only the affected tables whole (public.books)" in (
        refused.value.brief
    )
    # judged against the Convox copy, as the final sync will: the change is described
    assert "public.books: column added (isbn)" in refused.value.details
    assert f"cutover run -f {setup.path} --from initial-sync" in refused.value.resolution


@pytest.mark.slow
def test_a_schema_change_using_a_type_convox_lacks_says_the_final_sync_is_full(
    setup: Setup,
) -> None:
    """An enum added with its column: pg_dump -t would not bring the type, so the final sync
    copies everything (pgcapture_ddl.detect against Convox); catch-up says so, not "only the
    affected tables"."""
    setup.synced()
    setup.world.source.execute(
        "CREATE TYPE mood AS ENUM ('ok', 'sad')", "ALTER TABLE books ADD COLUMN mood mood"
    )
    with pytest.raises(CutoverError) as refused:
        catch_up(setup.path, Out().ui)
    assert "the final sync will be full" in refused.value.brief
    assert "public.mood" in refused.value.brief


@pytest.mark.slow
def test_a_live_target_is_refused(setup: Setup) -> None:
    state = setup.synced()
    mark_target_live(setup.step_ctx(state))
    with pytest.raises(CutoverError) as refused:
        catch_up(setup.path, Out().ui)
    assert "is live" in refused.value.brief


@pytest.mark.slow
def test_cleanup_lists_removes_reads_back_and_then_has_nothing_to_do(setup: Setup) -> None:
    setup.synced()
    listed = Out()
    assert cleanup(setup.path, listed.ui, dry_run=True, yes=False, interactive=False) == 0
    assert "would remove: " in listed.text() and "_cutover" in listed.text()
    assert _objects(setup) != []  # a dry run changes nothing
    done = Out()
    assert cleanup(setup.path, done.ui, dry_run=False, yes=True, interactive=False) == 0
    assert "the catalog shows none" in done.text()
    assert _objects(setup) == []
    clean = Out()
    assert cleanup(setup.path, clean.ui, dry_run=False, yes=False, interactive=False) == 0
    assert "nothing to remove" in clean.text()
    kinds = [e["kind"] for e in setup.events()]
    assert "cleanup" in kinds and "gate" in kinds
    setup.assert_no_password(listed.text(), done.text(), clean.text())


@pytest.mark.slow
def test_rollback_removes_the_capture(setup: Setup) -> None:
    """``cutover rollback`` once the window started (verify-data failed): capture-changes'
    undo drops the capture on Heroku; the other undos never ran, so nothing else is touched."""
    from cutover.engine.rollback import RollbackOptions, rollback  # noqa: PLC0415

    state = setup.synced()
    state.step("verify-data").status = Status.FAILED
    StateStore(setup.playbook.state_dir).save(state)
    out = Out()
    assert rollback(setup.path, RollbackOptions(yes=True), out.ui) == 0
    assert _objects(setup) == []
    assert "capture-changes undone" in out.text()
    kinds = [(e["kind"], e.get("step")) for e in setup.events()]
    assert ("rollback-step-finish", "capture-changes") in kinds
    complete = [e for e in setup.events() if e["kind"] == "rollback-complete"]
    assert complete and complete[-1]["undone"] == ["capture-changes"]
    # The capture is gone, so nothing built on it may still read done: the forward run starts
    # again at capture-changes (then initial-sync copies again under the new capture).
    assert complete[-1]["reset_from"] == "capture-changes"
    after = StateStore(setup.playbook.state_dir).load()
    assert after is not None
    for sid in ("capture-changes", "initial-sync", "final-sync", "verify-data"):
        assert after.step(sid).status == Status.PENDING, sid
    assert "installs the capture again, then initial-sync copies again" in out.text()
    setup.assert_no_password(out.text())


def _objects(setup: Setup) -> list[tuple[Any, ...]]:
    return query(
        setup.world.source,
        "SELECT nspname FROM pg_namespace WHERE nspname = '_cutover' "
        "UNION ALL SELECT tgname FROM pg_trigger WHERE tgname LIKE 'cutover\\_capture%'",
    )


# -- refusals before any database is touched: real processes ---------------------------------
def _cutover(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "250"}
    return subprocess.run(
        [sys.executable, "-m", "cutover", *args, "-f", str(tmp / "cutover.yml")],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )


def _playbook(tmp: Path, final_sync: str = ROWS) -> Path:
    path = tmp / "cutover.yml"
    path.write_text(PLAYBOOK.format(method="direct", final_sync=final_sync), encoding="utf-8")
    return path


def _state(tmp: Path, done: dict[str, dict[str, Any]], running: str | None = None) -> None:
    playbook = load_playbook(tmp / "cutover.yml")
    state = new_state(playbook)
    for step_id, outputs in done.items():
        st = state.step(step_id)
        st.outputs, st.status = outputs, Status.DONE
    if running:
        state.step(running).status = Status.RUNNING
    StateStore(playbook.state_dir).save(state)


INITIAL = {"method": "direct", "bytes": 1, "objects": 1, "capture_position": "700:700:"}


def test_catch_up_before_initial_sync_is_refused(tmp_path: Path) -> None:
    _playbook(tmp_path)
    result = _cutover(tmp_path, "catch-up")
    assert result.returncode == NotYet.exit_code, result
    assert "initial-sync is not done" in result.stdout + result.stderr
    # the whole command, with the playbook it was given (once: "cutover run-f ...--until")
    flat = " ".join((result.stdout + result.stderr).split())
    assert f"cutover run -f {tmp_path / 'cutover.yml'} --until initial-sync" in flat
    assert "Traceback" not in result.stdout + result.stderr


def test_catch_up_in_the_window_is_refused(tmp_path: Path) -> None:
    _playbook(tmp_path)
    _state(tmp_path, {"initial-sync": INITIAL}, running="maintenance-on")
    result = _cutover(tmp_path, "catch-up")
    assert result.returncode == 1, result
    assert "the cutover window has started (maintenance-on)" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_catch_up_after_the_window_is_refused(tmp_path: Path) -> None:
    _playbook(tmp_path)
    _state(tmp_path, {"initial-sync": INITIAL, "maintenance-on": {}, "final-sync": INITIAL})
    result = _cutover(tmp_path, "catch-up")
    assert result.returncode == 1, result
    flat = " ".join(result.stderr.split())
    # not "Continue the window: cutover run" (after a complete cutover that does nothing)
    assert "the final sync is done" in flat and "Continue the window" not in flat
    assert "cutover cleanup" in flat


def test_catch_up_after_the_capture_was_installed_again_is_refused(tmp_path: Path) -> None:
    """capture-changes ran again after initial-sync's copy (after a cleanup or a rollback):
    writes made while the capture was absent are in no log, so the copy must be taken again."""
    _playbook(tmp_path)
    _state(tmp_path, {"capture-changes": {"tables": []}, "initial-sync": INITIAL})
    playbook = load_playbook(tmp_path / "cutover.yml")
    store = StateStore(playbook.state_dir)
    state = store.load()
    assert state is not None
    state.step("initial-sync").started_at = "2026-01-01T10:00:00+00:00"
    state.step("capture-changes").finished_at = "2026-01-01T11:00:00+00:00"
    store.save(state)
    result = _cutover(tmp_path, "catch-up")
    assert result.returncode == 1, result
    flat = " ".join(result.stderr.split())
    assert "installed again" in flat
    assert (
        f"cutover run -f {tmp_path / 'cutover.yml'} --from initial-sync --until initial-sync"
        in flat
    )
    assert "Traceback" not in result.stdout + result.stderr


def test_catch_up_needs_changed_rows(tmp_path: Path) -> None:
    _playbook(tmp_path, "full")
    result = _cutover(tmp_path, "catch-up")
    assert result.returncode == 2, result
    assert "database.final_sync is full" in result.stderr
    # the resolution names the playbook the command was given
    flat = " ".join(result.stderr.split())
    assert f"cutover run -f {tmp_path / 'cutover.yml'} --until capture-changes" in flat


def test_a_second_catch_up_holding_the_lock_is_refused(tmp_path: Path) -> None:
    _playbook(tmp_path)
    _state(tmp_path, {"initial-sync": INITIAL})
    with RunLock(tmp_path / ".cutover", catchup_module.CATCHUP_LOCK):
        result = _cutover(tmp_path, "catch-up")
    assert result.returncode == 4, result
    assert "another cutover holds the lock" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
