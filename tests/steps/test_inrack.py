"""The in-rack data method against real PostgreSQL and the convox stand-in's rack.

The "Heroku" database lives on ``pg_source``; the app's ``rds-postgres`` resource (a role that
is not a superuser, like RDS) on ``pg_target``; ``convox run pgclient`` execs the copy script on
this machine with the resource's env and PostgreSQL 15 client tools (the stand-in runs
``image: postgres:15`` that way: cutover/sandbox/convox_fake/cmd_run.py).
"""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from support.convox_rack import convox_rack
from support.databases import AppDatabase, make_database
from support.waiting import wait_for

from cutover.errors import CutoverError
from cutover.playbook import load_playbook
from cutover.runner import ARGV_LOG_VAR, Runner
from cutover.sandbox import convox_fake as fake
from cutover.sandbox.pgcluster import PgCluster
from cutover.secrets import SecretMasker
from cutover.steps import inrack
from cutover.steps.base import Context
from cutover.steps.inrack import prepare_in_rack, sync_in_rack

pytestmark = pytest.mark.slow

MANIFEST = """\
resources:
  database:
    type: rds-postgres
    options:
      version: "15"
services:
  web:
    build: .
    port: 3000
    resources:
      - database
  pgclient:
    image: {image}
    resources:
      - database
    scale:
      count: 0
"""

PLAYBOOK = """\
version: 1
heroku:
  app: heroku-demo
convox:
  app: demo
  source: .
database:
  method: in-rack
  resource: database
  in_rack_service: pgclient
  timeout: {timeout}
"""

SOURCE_SQL = (
    "CREATE SCHEMA heroku_ext",
    'CREATE EXTENSION "uuid-ossp" SCHEMA heroku_ext',
    "CREATE EXTENSION pg_trgm SCHEMA heroku_ext",
    "CREATE TABLE accounts (id bigserial PRIMARY KEY,"
    " token uuid NOT NULL DEFAULT heroku_ext.uuid_generate_v4(), name text NOT NULL)",
    "CREATE INDEX accounts_name_trgm ON accounts USING gin (name heroku_ext.gin_trgm_ops)",
    "CREATE TABLE payloads (id serial PRIMARY KEY,"
    " account_id bigint NOT NULL REFERENCES accounts (id), body bytea NOT NULL, doc oid)",
    "CREATE TABLE empty_things (id int PRIMARY KEY)",
    "INSERT INTO accounts (name) SELECT 'account ' || g FROM generate_series(1, 400) g",
    "INSERT INTO payloads (account_id, body)"
    " SELECT g, decode(md5(g::text) || '00ff00', 'hex') FROM generate_series(1, 400) g",
    "UPDATE payloads SET doc = lo_from_bytea(0, convert_to('large object ' || id, 'UTF8'))"
    " WHERE id <= 3",
    "SELECT setval('accounts_id_seq', 1000)",
)

CHECKS = {
    "accounts": "SELECT count(*), md5(string_agg(t::text, ',' ORDER BY id)) FROM accounts t",
    "payloads": "SELECT count(*), md5(string_agg(t::text, ',' ORDER BY id)) FROM payloads t",
    "empty_things": "SELECT count(*) FROM empty_things",
    "sequence": "SELECT last_value, is_called FROM accounts_id_seq",
    "large objects": "SELECT string_agg(oid::text || ':' || md5(lo_get(oid)), ',' ORDER BY oid)"
    " FROM pg_largeobject_metadata",
    "foreign keys": "SELECT string_agg(conname, ',' ORDER BY conname) FROM pg_constraint"
    " WHERE contype = 'f'",
    "extensions": "SELECT string_agg(e.extname || '@' || n.nspname, ',' ORDER BY e.extname)"
    " FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace",
}


@dataclass
class Notes:
    lines: list[str] = field(default_factory=list)

    def note(self, message: str) -> None:
        self.lines.append(message)


@dataclass
class Rack:
    root: Path
    config: Path
    bin: Path
    work: Path
    admin: PgCluster
    resource: str  # the resource's role and database name

    def convox(self, *args: str) -> str:
        env = {
            "PATH": f"{self.bin}:/usr/bin:/bin",
            "CONVOX_CONFIG": str(self.config),
            "HOME": str(self.root),
        }
        result = subprocess.run(
            ["convox", *args],
            capture_output=True,
            text=True,
            cwd=self.work,
            env=env,
            timeout=120,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result.stdout

    def deploy(self, image: str = "postgres:15") -> None:
        (self.work / "convox.yml").write_text(MANIFEST.format(image=image), encoding="utf-8")
        self.convox("deploy", "-a", "demo")

    def resource_url(self) -> str:
        return self.convox("resources", "url", "database", "-a", "demo").strip()

    def staging(self, name: str) -> str:
        """A fresh database owned by the resource's role (the caller's part in FinalSync)."""
        with psycopg.connect(self.admin.url("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}" OWNER "{self.resource}"')
        return name


@pytest.fixture
def rack(tmp_path: Path, pg_target: PgCluster) -> Iterator[Rack]:
    name = f"res_{secrets.token_hex(4)}"
    box = Rack(tmp_path, tmp_path / "cfg", tmp_path / "bin", tmp_path / "work", pg_target, name)
    box.work.mkdir()
    backend = fake.PostgresBackend(
        "127.0.0.1",
        pg_target.port,
        name,
        "unused",
        name,
        admin_user=pg_target.superuser,
        admin_password=pg_target.password,
    )
    timings = {"build_created": 0.1, "build_running": 0.2, "rollout": 0.2, "poll": 0.1}
    with convox_rack(box.bin, box.config, name="sandbox", postgres=backend, timings=timings):
        box.convox("apps", "create", "demo")
        box.deploy()
        wait_for(lambda: _connects(box.resource_url()), "the resource to accept connections")
        yield box


def _connects(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=5):
            return True
    except psycopg.OperationalError:
        return False


@pytest.fixture
def heroku_db(pg_source: PgCluster) -> AppDatabase:
    db = make_database(pg_source, "heroku", password="pw-" + secrets.token_urlsafe(12))
    db.execute(*SOURCE_SQL)
    db.execute(f'ALTER DATABASE "{db.dbname}" SET search_path = "$user", public, heroku_ext')
    # Heroku installs pg_stat_statements as its admin; the app's role could not.
    with psycopg.connect(pg_source.url(db.dbname), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION pg_stat_statements")
    return db


def context(
    rack: Rack, tmp_path: Path, notes: Notes, argv_log: Path, timeout: int = 120
) -> Context:
    playbook_path = tmp_path / "cutover.yml"
    playbook_path.write_text(PLAYBOOK.format(timeout=timeout), encoding="utf-8")
    masker = SecretMasker()
    runner = Runner(
        masker,
        base_env={"CONVOX_CONFIG": str(rack.config), ARGV_LOG_VAR: str(argv_log)},
        path_prefix=[str(rack.bin)],
    )
    from cutover.adapters.convox import ConvoxAdapter  # noqa: PLC0415
    from cutover.adapters.postgres import PostgresAdapter  # noqa: PLC0415

    none: Any = None
    return Context(
        playbook=load_playbook(playbook_path),
        state=none,
        runner=runner,
        masker=masker,
        heroku=none,
        convox=ConvoxAdapter(runner, masker, "demo", None),
        postgres=PostgresAdapter(runner, masker),
        http=none,
        dns=None,
        reporter=notes,
        work_dir=tmp_path,
    )


def snapshot(url: str) -> dict[str, Any]:
    with psycopg.connect(url) as conn:
        return {name: conn.execute(sql).fetchone() for name, sql in CHECKS.items()}


def source_url(db: AppDatabase) -> str:
    return db.url() + "?sslmode=disable"  # the test cluster has no TLS; Heroku gets require


def test_in_rack_copies_everything_into_the_named_database_and_no_secret_reaches_argv(
    rack: Rack, heroku_db: AppDatabase, tmp_path: Path
) -> None:
    notes, argv_log = Notes(), tmp_path / "argv.jsonl"
    ctx = context(rack, tmp_path, notes, argv_log)
    staging = rack.staging(f"{rack.resource}__cutover_next")

    result = sync_in_rack(ctx, source_url(heroku_db), staging, ["pg_stat_statements"])

    target_url = rack.resource_url().replace(f"/{rack.resource}?", f"/{staging}?")
    copied, original = snapshot(target_url), snapshot(heroku_db.url())
    assert original["extensions"] == (
        "pg_stat_statements@public,pg_trgm@heroku_ext,plpgsql@pg_catalog,uuid-ossp@heroku_ext",
    )
    # The rds-postgres role may not create pg_stat_statements: left out, with a finding.
    assert copied.pop("extensions") == (
        "pg_trgm@heroku_ext,plpgsql@pg_catalog,uuid-ossp@heroku_ext",
    )
    original.pop("extensions")
    assert copied == original
    assert copied["accounts"][0] == 400 and copied["empty_things"] == (0,)
    assert copied["large objects"][0].count(":") == 3
    assert any("extension pg_stat_statements left out" in n for n in notes.lines)
    assert result.objects > 10 and result.bytes > 10_000 and result.seconds > 0
    # The copy went into the staging database only; the resource's own database is untouched.
    with psycopg.connect(rack.resource_url()) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        assert tables.fetchone() == (0,)
    # The heroku_ext functions work on the copy (the trigram index and the uuid default).
    with psycopg.connect(target_url) as conn:
        conn.execute("INSERT INTO accounts (name) VALUES ('after the copy')")
        similar = (
            "SELECT count(*) FROM accounts WHERE heroku_ext.similarity(name, 'account 7') > 0.5"
        )
        assert conn.execute(similar).fetchone()[0] >= 1  # type: ignore[index]
    # No password in any command line cutover started (the runner's argv log).
    argvs = [json.loads(line) for line in argv_log.read_text().splitlines()]
    assert any(argv[:3] == ["convox", "run", "pgclient"] for argv in argvs)
    target_password = psycopg.conninfo.conninfo_to_dict(rack.resource_url())["password"]
    for argv in argvs:
        joined = " ".join(argv)
        assert heroku_db.password not in joined and str(target_password) not in joined
        assert heroku_db.url() not in joined
    assert not any(heroku_db.password in n for n in notes.lines)


def test_a_restore_that_fails_reports_the_stage_masked_and_leaves_the_live_database(
    rack: Rack, heroku_db: AppDatabase, tmp_path: Path
) -> None:
    notes = Notes()
    ctx = context(rack, tmp_path, notes, tmp_path / "argv.jsonl")
    staging = rack.staging(f"{rack.resource}__cutover_next")
    # A table already there: pg_restore --exit-on-error stops at its CREATE TABLE.
    target_url = rack.resource_url().replace(f"/{rack.resource}?", f"/{staging}?")
    with psycopg.connect(target_url) as conn:
        conn.execute("CREATE TABLE payloads (x int)")
    with pytest.raises(CutoverError) as caught:
        sync_in_rack(ctx, source_url(heroku_db), staging, ["pg_stat_statements"])
    text = str(caught.value)
    assert "the in-rack copy failed (restore step" in text
    assert 'relation "payloads" already exists' in text
    assert f"went into {staging}" in text
    assert heroku_db.password not in text


def test_an_image_older_than_herokus_major_is_refused_before_anything_runs(
    rack: Rack, heroku_db: AppDatabase, tmp_path: Path
) -> None:
    rack.deploy(image="postgres:14")
    argv_log = tmp_path / "argv.jsonl"
    ctx = context(rack, tmp_path, Notes(), argv_log)
    with pytest.raises(CutoverError) as caught:
        sync_in_rack(ctx, source_url(heroku_db), "whatever", [])
    assert "PostgreSQL 14 client tools cannot dump the Heroku database (PostgreSQL 15)" in str(
        caught.value
    )
    assert "set image: postgres:15" in caught.value.resolution.lower()
    assert not any('"run"' in line for line in argv_log.read_text().splitlines())


def kill_a_run(rack: Rack, *run_flags: str) -> None:
    """A `convox run pgclient` whose CLI is killed: its pod lives on until its sleep ends."""
    env = {"PATH": f"{rack.bin}:/usr/bin:/bin", "CONVOX_CONFIG": str(rack.config)}
    cli = subprocess.Popen(
        [
            "convox",
            "run",
            "pgclient",
            *run_flags,
            "-a",
            "demo",
            "--",
            "sh -c 'echo started; sleep 60'",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=rack.work,
    )
    assert cli.stdout is not None and cli.stdout.readline() == "started\n"
    cli.send_signal(signal.SIGKILL)
    cli.communicate(timeout=10)


def test_a_copy_left_running_by_a_killed_cli_is_found_before_a_new_one(
    rack: Rack, heroku_db: AppDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inrack, "LEFTOVER_WAIT", 1.0)
    monkeypatch.setattr(inrack, "LEFTOVER_POLL", 0.2)
    kill_a_run(rack)
    ctx = context(rack, tmp_path, Notes(), tmp_path / "argv.jsonl")
    with pytest.raises(CutoverError) as caught:
        prepare_in_rack(ctx, source_url(heroku_db))
    assert "an earlier in-rack copy may still be running in pod pgclient-" in str(caught.value)
    assert "convox ps stop pgclient-" in caught.value.resolution
    with pytest.raises(CutoverError) as again:
        sync_in_rack(ctx, source_url(heroku_db), "whatever", [])
    assert again.value.brief == caught.value.brief
    # Following the advice word for word clears the way: the next copy runs.
    advice = caught.value.resolution.removeprefix("Stop it: ").split(". Then")[0]
    assert advice.startswith("convox ps stop pgclient-") and advice.endswith(" -a demo")
    assert rack.convox(*advice.split()[1:]).endswith("OK\n")
    staging = rack.staging(f"{rack.resource}__cutover_next")
    assert sync_in_rack(ctx, source_url(heroku_db), staging, ["pg_stat_statements"]).objects > 10


def test_a_pod_that_goes_away_within_the_grace_period_is_waited_for(
    rack: Rack, heroku_db: AppDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A pod being deleted (ProcessStop: 30 s grace) is still listed for a while; here the
    # killed CLI's pod ends with its 3 s sleep, and the next copy waits for that, not refuses.
    monkeypatch.setattr(inrack, "LEFTOVER_WAIT", 90.0)
    monkeypatch.setattr(inrack, "LEFTOVER_POLL", 0.2)
    kill_a_run(rack, "--timeout", "3")
    ctx = context(rack, tmp_path, Notes(), tmp_path / "argv.jsonl")
    assert "pgclient-" in rack.convox("ps", "-a", "demo")
    staging = rack.staging(f"{rack.resource}__cutover_next")
    result = sync_in_rack(ctx, source_url(heroku_db), staging, ["pg_stat_statements"])
    assert result.objects > 10


def test_a_copy_killed_with_its_pod_is_reported_and_a_second_attempt_redoes_it(
    rack: Rack, heroku_db: AppDatabase, tmp_path: Path
) -> None:
    # Another session holds a lock pg_dump waits for (it takes ACCESS SHARE on every table), so
    # the copy is still running when the pod's `sleep <database.timeout>` ends (pkg/cli/run.go):
    # the rack kills it with its pod and the CLI exits 137.
    notes = Notes()
    ctx = context(rack, tmp_path, notes, tmp_path / "argv.jsonl", timeout=10)
    staging = rack.staging(f"{rack.resource}__cutover_next")
    with psycopg.connect(heroku_db.url()) as blocker:
        blocker.execute("LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(CutoverError) as caught:
            sync_in_rack(ctx, source_url(heroku_db), staging, ["pg_stat_statements"])
        blocker.rollback()
    assert "the in-rack copy was killed (exit 137)" in caught.value.brief
    assert "Raise database.timeout" in caught.value.resolution
    # The CLI stopped its pod when the command ended: nothing is left running.
    assert "pgclient-" not in rack.convox("ps", "-a", "demo")
    staging = rack.staging(staging)  # what FinalSync does on the next attempt
    result = sync_in_rack(ctx, source_url(heroku_db), staging, ["pg_stat_statements"])
    assert result.objects > 10
    target_url = rack.resource_url().replace(f"/{rack.resource}?", f"/{staging}?")
    assert snapshot(target_url)["accounts"] == snapshot(heroku_db.url())["accounts"]
