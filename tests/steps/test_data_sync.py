"""initial-sync and final-sync against real PostgreSQL, for each method (issue 10).

The steps run with a real Runner, PostgresAdapter, pg_dump/pg_restore/psql and two real clusters
(``pg_source`` is "Heroku", ``pg_target`` the Convox resource). The Heroku and Convox adapters are
replaced by the few answers the steps ask of them (the CLIs' own behaviour is covered by
tests/adapters and the sandbox e2e): the credentials URL, the resource URL, a "proxy" port (the
target cluster's own) and, for ``backup``, a capture and a download (a real ``pg_dump -Fc``, the
format Heroku's backups use: Heroku Dev Center, "Importing and Exporting Heroku Postgres
Databases").
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from support.databases import AppDatabase
from support.herokudb import assert_works_like, heroku_shaped, query, rds_target

from cutover.adapters import pgstaging
from cutover.adapters.postgres import ConnInfo, PostgresAdapter
from cutover.engine.plan import new_state
from cutover.errors import CutoverError
from cutover.playbook import load_playbook
from cutover.runner import ARGV_LOG_VAR, Runner
from cutover.sandbox import pgcluster
from cutover.sandbox.pgcluster import PgCluster
from cutover.secrets import SecretMasker
from cutover.state import Status
from cutover.steps.base import Context
from cutover.steps.data import FinalSync, InitialSync
from cutover.steps.datatarget import mark_target_live

pytestmark = pytest.mark.slow

PLAYBOOK = """
version: 1
heroku: {{app: myapp}}
convox: {{app: myapp, rack: test}}
database:
  method: {method}
  restore_jobs: 2
  timeout: 300
  final_sync: {final_sync}
"""


class Notes:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def note(self, message: str) -> None:
        self.lines.append(message)


class Heroku:
    """The HerokuAdapter calls the data steps make (adapters/heroku.py)."""

    def __init__(self, source: AppDatabase, work: Path) -> None:
        self.source, self.work, self.captures = source, work, 0

    def credentials_url(self, attachment: str, *, fresh: bool = False) -> str:
        return self.source.url() + "?sslmode=disable"  # the test clusters serve no TLS

    def backup_capture(self, attachment: str, timeout: float) -> str:
        self.captures += 1
        return f"b{self.captures:03d}"

    def backup_url(self, backup_id: str) -> str:
        return f"https://backups.invalid/{backup_id}"

    def argv(self, *args: str) -> list[str]:
        return ["heroku", *args, "-a", "myapp"]


class Http:
    """Serves the "backup": a custom-format pg_dump of the source, taken now."""

    def __init__(self, source: AppDatabase) -> None:
        self.source = source

    def download(self, url: str, dest: Path) -> tuple[int, str]:
        env = pgcluster.client_env(self.source.libpq_env())
        subprocess.run(["pg_dump", "-Fc", "-f", str(dest)], env=env, check=True)
        data = dest.read_bytes()
        return len(data), hashlib.sha256(data).hexdigest()


class Convox:
    def __init__(self, target: AppDatabase) -> None:
        self.target = target

    def resource_url(self, resource: str, *, reuse: bool = False) -> str:
        return self.target.url()

    @contextmanager
    def proxy(self, resource: str, speaks: str | None = None) -> Iterator[int]:
        yield self.target.cluster.port

    def argv(self, *args: str) -> list[str]:
        return ["convox", *args]

    def proxy_argv(self, resource: str, port: str) -> list[str]:
        return ["convox", "resources", "proxy", resource, "--port", port]


class World:
    def __init__(self, tmp: Path, source: AppDatabase, target: AppDatabase) -> None:
        self.tmp, self.source, self.target = tmp, source, target
        self.argv_log = tmp / "argv.jsonl"
        self.heroku = Heroku(source, tmp)

    def context(
        self, method: str, *, force: bool = False, final_sync: str = "full"
    ) -> tuple[Context, Notes]:
        path = self.tmp / f"cutover-{method}.yml"
        path.write_text(PLAYBOOK.format(method=method, final_sync=final_sync), encoding="utf-8")
        playbook = load_playbook(path)
        masker = SecretMasker()
        runner = Runner(masker, base_env={ARGV_LOG_VAR: str(self.argv_log)})
        notes = Notes()
        work = self.tmp / "work"
        work.mkdir(mode=0o700, exist_ok=True)
        ctx = Context(
            playbook=playbook,
            state=new_state(playbook),
            runner=runner,
            masker=masker,
            heroku=self.heroku,  # type: ignore[arg-type]
            convox=Convox(self.target),  # type: ignore[arg-type]
            postgres=PostgresAdapter(runner, masker),
            http=Http(self.source),  # type: ignore[arg-type]
            dns=None,
            reporter=notes,
            work_dir=work,
        )
        ctx.extras["force_data"] = force
        return ctx, notes

    def assert_no_password_in_argv(self) -> None:
        logged = self.argv_log.read_text(encoding="utf-8").splitlines()
        assert logged, "the runner logged no argv"
        for line in logged:
            argv = " ".join(json.loads(line))
            for secret in (self.source.password, self.target.password):
                assert secret not in argv

    def databases(self) -> list[str]:
        with pgcluster.connect(self.target.cluster) as conn:
            rows = conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s ORDER BY 1",
                (self.target.dbname + "%",),
            ).fetchall()
        return [str(r[0]) for r in rows]

    def comment(self) -> str:
        with pgcluster.connect(self.target.cluster) as conn:
            row = conn.execute(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                (self.target.dbname,),
            ).fetchone()
        return str(row[0]) if row else ""


@pytest.fixture
def world(tmp_path: Path, pg_source: PgCluster, pg_target: PgCluster) -> World:
    return World(tmp_path, heroku_shaped(pg_source), rds_target(pg_target))


@pytest.mark.parametrize("method", ["backup", "direct"])
def test_sync_copies_a_heroku_shaped_database_that_then_works(world: World, method: str) -> None:
    ctx, notes = world.context(method)
    out = InitialSync().apply(ctx)
    assert_works_like(world.source, world.target)
    assert out.method == method
    assert out.marker and out.marker.startswith("cutover:synced ")
    assert world.comment() == out.marker
    assert world.databases() == [world.target.dbname]  # staging swapped in, previous dropped
    assert any("extension pg_stat_statements left out" in line for line in notes.lines)
    if method == "backup":
        assert out.backup == "b001" and out.sha256
    else:
        assert out.objects == 3  # authors, books, empty_table
    world.assert_no_password_in_argv()


@pytest.mark.parametrize("method", ["backup", "direct"])
def test_final_sync_after_initial_sync_replaces_the_copy(world: World, method: str) -> None:
    ctx, _ = world.context(method)
    InitialSync().apply(ctx)
    world.source.execute("INSERT INTO authors (name) VALUES ('late author')")
    FinalSync().apply(world.context(method)[0])
    assert query(world.target, "SELECT count(*) FROM authors") == [(51,)]
    assert_works_like(world.source, world.target)


def _unrestorable_post_data(world: World) -> None:
    """An event trigger: pg_dump puts it in post-data; only a superuser may create one
    (PostgreSQL docs, CREATE EVENT TRIGGER), so the RDS-like target's restore fails there."""
    with pgcluster.connect(world.source.cluster, world.source.dbname) as conn:
        conn.execute(
            "CREATE FUNCTION noop_evt() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN END $$"
        )
        conn.execute("CREATE EVENT TRIGGER noop ON ddl_command_start EXECUTE FUNCTION noop_evt()")


@pytest.mark.parametrize("method", ["backup", "direct"])
def test_a_restore_failing_halfway_leaves_the_previous_copy_and_resumes(
    world: World, method: str
) -> None:
    InitialSync().apply(world.context(method)[0])
    marker = world.comment()
    world.source.execute("DELETE FROM books WHERE id > 10", "DELETE FROM authors WHERE id > 40")
    _unrestorable_post_data(world)
    with pytest.raises(CutoverError) as failed:
        FinalSync().apply(world.context(method)[0])
    assert "event trigger" in str(failed.value.details) + failed.value.brief
    # The previous copy is intact and still the one cutover marked; no staging copy lingers.
    assert query(world.target, "SELECT count(*) FROM books") == [(400,)]
    assert world.comment() == marker
    assert world.databases() == [world.target.dbname]
    # Fix the cause, run the step again: it goes through.
    with pgcluster.connect(world.source.cluster, world.source.dbname) as conn:
        conn.execute("DROP EVENT TRIGGER noop")
    FinalSync().apply(world.context(method)[0])
    assert query(world.target, "SELECT count(*) FROM books") == [(10,)]


def test_guard_refuses_a_live_database_and_force_data_overrides(world: World) -> None:
    ctx, notes = world.context("direct")
    InitialSync().apply(ctx)
    mark_target_live(world.context("direct")[0])
    assert world.comment().startswith("cutover:live ")
    with pytest.raises(CutoverError) as refused:
        FinalSync().apply(world.context("direct")[0])
    assert f"the Convox database {world.target.dbname} is live" in refused.value.brief
    assert "--force-data" in refused.value.resolution
    forced, notes = world.context("direct", force=True)
    question = FinalSync().gate_question(forced)
    assert question and question.startswith("--force-data:")
    FinalSync().apply(forced)
    assert any(line.startswith("--force-data: syncing although") for line in notes.lines)
    assert world.comment().startswith("cutover:synced ")


def test_a_forced_sync_after_a_finished_cutover_leaves_convox_writable(world: World) -> None:
    """After a finished cutover Heroku stays frozen (freeze-writes' default_transaction_read_only
    = on). With the state moved aside (a new state here) and --force-data, the sync must not
    carry that freeze: the live Convox database would refuse every write of the app."""
    InitialSync().apply(world.context("direct")[0])
    mark_target_live(world.context("direct")[0])
    with pgcluster.connect(world.source.cluster) as conn:
        conn.execute(f"ALTER DATABASE {world.source.dbname} SET default_transaction_read_only = on")
    forced, notes = world.context("direct", force=True)
    FinalSync().apply(forced)
    assert any(
        line.startswith("finding: Heroku's database defaults to default_transaction_read_only")
        for line in notes.lines
    )
    world.target.execute("INSERT INTO authors (name) VALUES ('written on convox')")
    assert query(world.target, "SHOW default_transaction_read_only") == [("off",)]


def test_guard_refuses_writes_since_the_last_sync(world: World) -> None:
    InitialSync().apply(world.context("direct")[0])
    world.target.execute("INSERT INTO authors (name) VALUES ('written on convox')")
    with pytest.raises(CutoverError) as refused:
        FinalSync().apply(world.context("direct")[0])
    assert "has taken writes since the last sync" in refused.value.brief
    assert query(world.target, "SELECT count(*) FROM authors WHERE name = 'written on convox'") == [
        (1,)
    ]


def test_guard_refuses_tables_cutover_did_not_put_there(world: World) -> None:
    world.target.execute("CREATE TABLE orders (id int)", "INSERT INTO orders VALUES (1)")
    with pytest.raises(CutoverError) as refused:
        InitialSync().apply(world.context("backup")[0])
    assert "holds 1 table(s) that cutover did not put there" in refused.value.brief
    assert world.heroku.captures == 0  # refused before anything was captured or copied
    assert query(world.target, "SELECT count(*) FROM orders") == [(1,)]


def _done(ctx: Context, step_id: str, outputs: dict[str, object]) -> None:
    """Record an earlier step's outputs as done in ``ctx``'s state (the engine would)."""
    st = ctx.state.step(step_id)
    st.outputs.update(outputs)
    st.status = Status.DONE


def _filenode(db: AppDatabase, table: str) -> int:
    return int(query(db, f"SELECT pg_relation_filenode('{table}')")[0][0])


def test_changed_tables_replaces_only_the_changed_table_in_place(world: World) -> None:
    first = InitialSync().apply(world.context("direct", final_sync="changed-tables")[0])
    assert first.model_dump().get("stats")  # Heroku's statistics, read before the copy
    books = _filenode(world.target, "books")
    world.source.execute("INSERT INTO authors (name) VALUES ('late author')")
    ctx, notes = world.context("direct", final_sync="changed-tables")
    _done(ctx, "initial-sync", first.model_dump(mode="json"))
    out = FinalSync().apply(ctx)
    assert out.tables_copied == ["public.authors"]
    assert _filenode(world.target, "books") == books  # untouched: not rewritten
    assert world.databases() == [world.target.dbname]  # in place: no staging copy
    assert world.comment().startswith("cutover:synced ")
    assert any(line.startswith("changed-tables: ") for line in notes.lines)
    assert_works_like(world.source, world.target)
    world.assert_no_password_in_argv()


def test_changed_tables_without_a_baseline_copies_everything(world: World) -> None:
    InitialSync().apply(world.context("direct")[0])  # final_sync: full records no statistics
    world.source.execute("INSERT INTO authors (name) VALUES ('late author')")
    ctx, notes = world.context("direct", final_sync="changed-tables")
    out = FinalSync().apply(ctx)
    assert out.tables_copied is None  # a full copy into staging, swapped in
    assert any("recorded no statistics baseline" in line for line in notes.lines)
    assert query(world.target, "SELECT count(*) FROM authors") == [(51,)]


def test_plan_lists_the_direct_commands(world: World) -> None:
    ctx, _ = world.context("direct")
    text = "\n".join(InitialSync().describe(ctx))
    assert "pg_export_snapshot" in text and "COPY t FROM STDIN" in text
    assert "__cutover_next" in text and "swap" in text


def test_an_in_place_sync_stopped_halfway_does_not_block_the_next_sync(world: World) -> None:
    ctx, _ = world.context("direct")
    InitialSync().apply(ctx)
    # changed-tables marks the database before it writes in place; a failure then leaves its
    # own writes behind, which the guard must not take for the app's.
    pgstaging.mark_syncing(ctx.postgres, ConnInfo.from_url(world.target.url()))
    world.target.execute("INSERT INTO authors (name) VALUES ('half-copied')")
    FinalSync().apply(world.context("direct")[0])
    assert query(world.target, "SELECT count(*) FROM authors WHERE name = 'half-copied'") == [(0,)]
    assert world.comment().startswith("cutover:synced ")
