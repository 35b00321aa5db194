"""cutover.adapters.pgcopy and pgstaging against real PostgreSQL (and their pure helpers).

The TLS test runs the direct copy from a cluster that serves TLS and rejects every connection
without it (pg_hba ``hostnossl ... reject``), and reads pg_stat_ssl for the copy's own sessions
while it runs.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import pytest
from adapter_support import ARGV_LOG_ENV, ListAudit, assert_argv_clean
from support.databases import AppDatabase, make_database
from support.herokudb import assert_works_like, heroku_shaped, query, rds_target
from support.tls import TlsFiles

from cutover.adapters import pgstaging
from cutover.adapters.pgcopy import (
    END_MARK,
    CopyProgress,
    CopyResult,
    _binary_allowed,
    copy_database,
    same_major,
)
from cutover.adapters.pgindexes import split_post_data
from cutover.adapters.pgparts import plan_parts, plan_work
from cutover.adapters.pgrestore import filter_list
from cutover.adapters.pgverify import table_checksum_sql
from cutover.adapters.postgres import ConnInfo, PostgresAdapter
from cutover.errors import CommandError, CutoverError
from cutover.runner import Runner
from cutover.sandbox import pgcluster, procs
from cutover.sandbox.pgcluster import PgCluster
from cutover.secrets import SecretMasker

# -- pure helpers ------------------------------------------------------------------------------
LISTING = """;
; Archive created at 2026-11-30 09:00:00 UTC
3; 3079 16385 EXTENSION - pg_stat_statements
4; 0 0 COMMENT - EXTENSION pg_stat_statements
5; 3079 16386 EXTENSION - uuid-ossp
6; 0 0 COMMENT - EXTENSION uuid-ossp
7; 1259 16400 TABLE public books owner
"""


def test_filter_list_comments_out_only_the_skipped_extensions() -> None:
    out = filter_list(LISTING, ["pg_stat_statements"]).splitlines()
    assert ";3; 3079 16385 EXTENSION - pg_stat_statements" in out
    assert ";4; 0 0 COMMENT - EXTENSION pg_stat_statements" in out
    assert "5; 3079 16386 EXTENSION - uuid-ossp" in out
    assert "7; 1259 16400 TABLE public books owner" in out


def test_list_settings_are_quoted_element_by_element() -> None:
    # pg_db_role_setting keeps search_path as '"$user", public, heroku_ext' (guc.c list syntax).
    value = pgstaging.setting_value_sql("search_path", '"$user", public, heroku_ext')
    assert value == "'$user', 'public', 'heroku_ext'"
    assert pgstaging.setting_value_sql("lock_timeout", "7s") == "'7s'"
    assert pgstaging.setting_value_sql("search_path", '"a""b", c') == "'a\"b', 'c'"


def test_large_tables_are_split_into_page_ranges() -> None:
    big = str(100 * 1024 * 1024)
    rows = [["public.big", big, "12800", "a,b", "t"], ["public.small", "8192", "1", "x", "t"]]
    parts = plan_parts(rows, 3)
    assert [p.table for p in parts] == ["public.big"] * 3 + ["public.small"]
    assert (
        parts[0]
        .copy_out()
        .startswith("COPY (SELECT a,b FROM ONLY public.big WHERE ctid >= '(0,0)'")
    )
    assert parts[2].where == "ctid >= '(8532,0)'::tid"  # the last range is open-ended
    assert parts[0].copy_in() == "COPY public.big (a,b) FROM STDIN"
    assert parts[3].copy_out() == "COPY public.small (x) TO STDOUT"
    assert parts[3].copy_in() == "COPY public.small (x) FROM STDIN"


def test_small_tables_share_at_most_jobs_pipes_and_large_ones_and_ranges_get_their_own() -> None:
    mb = 1024 * 1024
    rows = [
        ["public.big", str(100 * mb), "12800", "a", "t"],
        ["public.mid", str(9 * mb), "1152", "a", "t"],
    ]
    rows += [[f"public.s{i}", str((i + 1) * 8192), "1", "a", "t"] for i in range(5)]
    work = plan_work(plan_parts(rows, 2), 2)
    # the two ranges of big, mid (above the bundle size), then two bundles balanced by size
    assert [[p.table for p in w] for w in work[:3]] == [
        ["public.big"],
        ["public.big"],
        ["public.mid"],
    ]
    bundles = work[3:]
    assert len(bundles) == 2
    assert sorted(p.table for b in bundles for p in b) == [f"public.s{i}" for i in range(5)]
    sizes = [sum(p.size for p in b) for b in bundles]
    assert max(sizes) - min(sizes) <= 8192 * 2
    two = plan_parts(rows[2:4], 4)
    assert plan_work(two, 4) == [two]  # two small tables: one bundle, however many jobs
    assert plan_work(plan_parts(rows[2:3], 2), 2) == [plan_parts(rows[2:3], 2)]  # one: alone
    assert all(len(w) == 1 for w in plan_work(plan_parts(rows, 2), 2, bundle_max=0))


def test_the_binary_format_only_for_built_in_types_on_one_major_version_never_in_bundles() -> None:
    mb = 1024 * 1024
    rows = [
        ["public.big", str(100 * mb), "12800", "a", "t"],
        ["public.typed", str(20 * mb), "2560", "a", "f"],  # an enum, domain or extension type
        ["public.s1", "8192", "1", "a", "t"],
        ["public.s2", "16384", "2", "a", "t"],
    ]
    assert not any(p.binary for p in plan_parts(rows, 2))  # versions differ (the default)
    work = plan_work(plan_parts(rows, 2, binary=True), 2)
    formats = [[(p.table, p.binary) for p in w] for w in work]
    assert formats == [
        [("public.big", True)],
        [("public.big", True)],
        [("public.typed", False)],
        [("public.s2", False), ("public.s1", False)],  # one bundle: a psql script's text
    ]
    big = work[0][0]
    assert big.copy_out().endswith(") TO STDOUT WITH (FORMAT binary)")
    assert big.copy_in() == "COPY public.big (a) FROM STDIN WITH (FORMAT binary)"
    alone = plan_work(plan_parts(rows[2:3], 2, binary=True), 2)  # one small table: its own pipe
    assert alone[0][0].binary and alone[0][0].copy_out().endswith("TO STDOUT WITH (FORMAT binary)")
    assert same_major("150004", "150010") and same_major("90624", "90611")
    assert not same_major("150004", "160001") and not same_major("90624", "90500")
    assert not same_major("", "150004")


class _Holder:
    """The snapshot holder's session as pgcopy.ask uses it: what it was sent, its answer lines."""

    def __init__(self, *lines: str) -> None:
        self.lines = [*lines, END_MARK]
        self.sent: list[str] = []

    def write(self, text: str) -> None:
        self.sent.append(text)

    def readline(self, timeout: float) -> str:
        return self.lines.pop(0)


def test_a_target_version_that_cannot_be_read_means_text_not_a_failed_copy() -> None:
    failed: Future[str] = Future()
    failed.set_exception(CommandError(["psql"], 2, "could not connect to server"))
    assert not _binary_allowed(_Holder("150004"), failed)  # type: ignore[arg-type]
    read: Future[str] = Future()
    read.set_result("150010")
    assert _binary_allowed(_Holder("150004"), read)  # type: ignore[arg-type]
    read_other: Future[str] = Future()
    read_other.set_result("160002")
    assert not _binary_allowed(_Holder("150004"), read_other)  # type: ignore[arg-type]
    assert not same_major("١٥٠٠٠٤", "150004")  # digits, but not ASCII ones


POST_LISTING = """;
; Archive created at 2026-11-30 09:00:00 UTC
201; 2606 16420 CONSTRAINT public books books_pkey owner
202; 1259 16425 INDEX public books_title owner
203; 1259 16430 INDEX public authors_name owner
204; 2606 16440 FK CONSTRAINT public books books_author_fkey owner
205; 2620 16450 TRIGGER public books touch owner
206; 0 0 COMMENT - INDEX books_title
"""


def test_index_entries_are_handed_out_per_table_by_catalog_id_and_the_rest_stays() -> None:
    # (table, oid) as INDEXES_SQL reads them: the key's constraint, a plain index per table;
    # 16499 is an index the listing does not hold (e.g. a skipped extension's table).
    rows = [
        ["public.books", "16420"],
        ["public.books", "16425"],
        ["public.authors", "16430"],
        ["public.other", "16499"],
    ]
    post = split_post_data(POST_LISTING, rows)
    books = post.take(["public.books"])
    assert [ln.split()[0] for ln in books] == ["201;", "202;"]
    assert post.take(["public.books", "public.other"]) == []  # each handed out once
    rest = post.rest().splitlines()
    assert ";201; 2606 16420 CONSTRAINT public books books_pkey owner" in rest
    assert ";202; 1259 16425 INDEX public books_title owner" in rest
    # not handed out yet, foreign keys, triggers and comments: all in the final pass
    for kept in ("203;", "204;", "205;", "206;"):
        assert any(ln.startswith(kept) for ln in rest), kept


def test_staging_names_refuse_a_name_too_long_for_postgres() -> None:
    assert pgstaging.names("app") == ("app__cutover_next", "app__cutover_prev")
    with pytest.raises(CutoverError, match="too long"):
        pgstaging.names("x" * 50)


# -- real clusters -----------------------------------------------------------------------------
def _conn(db: AppDatabase, sslmode: str = "disable") -> ConnInfo:
    info = ConnInfo.from_url(db.url())
    return ConnInfo(info.host, info.port, info.user, info.dbname, info.password, sslmode)


@pytest.fixture
def runner(audit: ListAudit, argv_log: Path) -> Runner:
    return Runner(SecretMasker(), audit=audit, base_env={ARGV_LOG_ENV: str(argv_log)})


@pytest.fixture(scope="module")
def tls_cluster(sandbox_base: Path, tls_files: TlsFiles) -> Iterator[PgCluster]:
    """A cluster that takes TLS connections only but its superuser's (like Heroku's, which
    cutover reaches with sslmode=require)."""
    cluster = pgcluster.init_cluster(
        sandbox_base / "pg" / f"tls-{secrets.token_hex(3)}",
        procs.free_port(),
        password=secrets.token_urlsafe(16),
        traverse_root=sandbox_base,
    )
    pgcluster.enable_ssl(cluster, tls_files.cert_file, tls_files.key_file, require=True)
    pgcluster.start(cluster, sandbox_base / f"{cluster.datadir.name}.log")
    yield cluster
    pgcluster.stop(cluster)


@pytest.mark.slow
def test_direct_copy_from_a_tls_only_server_uses_tls(
    tls_cluster: PgCluster, pg_target: PgCluster, runner: Runner, argv_log: Path
) -> None:
    source = make_database(tls_cluster, "tlsdb")
    with pytest.raises(pgcluster.PgClusterError):  # no TLS, no connection (hostnossl reject)
        source.execute("SELECT 1")
    target = rds_target(pg_target)
    pg = PostgresAdapter(runner, runner.masker)
    # The source's role sets up its data over TLS (psql with sslmode=require).
    pg.psql(
        _conn(source, "require"),
        "CREATE TABLE t (id int PRIMARY KEY, b bytea);"
        "INSERT INTO t SELECT g, decode(md5(g::text), 'hex') FROM generate_series(1, 5000) g;"
        "CREATE TABLE u (id int);",
    )
    seen: list[list[list[str]]] = []
    admin = ConnInfo(
        "127.0.0.1",
        tls_cluster.port,
        tls_cluster.superuser,
        "postgres",
        tls_cluster.password,
        "require",
    )

    def progress(p: CopyProgress) -> None:
        # The snapshot-holding session is open for the whole copy: it must be a TLS session.
        seen.append(
            pg.psql(
                admin,
                "SELECT s.ssl::text, a.application_name FROM pg_stat_ssl s "
                f"JOIN pg_stat_activity a USING (pid) WHERE a.usename = '{source.owner}';",
            )
        )

    staging = pgstaging.create_staging(pg, _conn(target))
    result = copy_database(
        runner,
        runner.masker,
        _conn(source, "require"),
        staging,
        jobs=2,
        skip_extensions=[],
        timeout=300,
        progress=progress,
    )
    assert result.tables == 2
    assert seen and all(rows for rows in seen)
    assert {row[0] for rows in seen for row in rows} == {"true"}
    copied = query(
        AppDatabase(pg_target, staging.dbname, target.owner, target.password),
        "SELECT count(*), md5(string_agg(b::text, ',' ORDER BY id)) FROM t",
    )
    assert copied[0][0] == 5000
    assert_argv_clean(argv_log, [source.password, target.password])


@pytest.mark.slow
def test_copy_into_staging_then_swap_and_recover_an_interrupted_swap(
    pg_source: PgCluster, pg_target: PgCluster, runner: Runner, argv_log: Path
) -> None:
    source, target = heroku_shaped(pg_source), rds_target(pg_target)
    pg = PostgresAdapter(runner, runner.masker)
    conn = _conn(target)
    assert pgstaging.guard(pg, conn, force=False) is None  # empty: nothing to protect
    staging = pgstaging.create_staging(pg, conn)
    result = copy_database(
        runner,
        runner.masker,
        _conn(source),
        staging,
        jobs=2,
        skip_extensions=["pg_stat_statements"],
        timeout=300,
        progress=None,
    )
    assert result.skipped_extensions == ("pg_stat_statements",)
    settings = pgstaging.read_settings(pg, _conn(source))
    assert pgstaging.Setting("role", "search_path", '"$user", public, heroku_ext') in settings
    assert pgstaging.apply_settings(pg, conn, staging.dbname, settings) == []
    marker = pgstaging.mark_synced(pg, staging)
    # An interruption between the two renames: <db> gone, both others there.
    nxt, prev = pgstaging.names(target.dbname)
    pg.psql(pgstaging.maintenance(conn), f'ALTER DATABASE "{target.dbname}" RENAME TO "{prev}";')
    done = pgstaging.recover_swap(pg, conn)
    assert done == f"finished an interrupted swap: {nxt} is now {target.dbname}"
    assert pgstaging.read_marker(pg, conn)[2] == marker
    assert_works_like(source, target)
    assert pgstaging.recover_swap(pg, conn) is None
    assert_argv_clean(argv_log, [source.password, target.password])


@pytest.mark.slow
def test_a_killed_copy_leaves_the_target_untouched(
    pg_source: PgCluster, pg_target: PgCluster, runner: Runner
) -> None:
    source, target = heroku_shaped(pg_source), rds_target(pg_target)
    target.execute("CREATE TABLE precious (id int)", "INSERT INTO precious VALUES (42)")
    pg = PostgresAdapter(runner, runner.masker)
    staging = pgstaging.create_staging(pg, _conn(target))

    def kill_the_target_sessions(p: CopyProgress) -> None:
        with pgcluster.connect(pg_target) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (staging.dbname,),
            )
            admin.execute(f'DROP DATABASE "{staging.dbname}" WITH (FORCE)')

    with pytest.raises(CommandError):
        copy_database(
            runner,
            runner.masker,
            _conn(source),
            staging,
            jobs=1,
            skip_extensions=[],
            timeout=300,
            progress=kill_the_target_sessions,
        )
    assert query(target, "SELECT id FROM precious") == [(42,)]


@pytest.mark.slow
def test_a_table_split_into_page_ranges_arrives_whole(
    pg_source: PgCluster, pg_target: PgCluster, runner: Runner
) -> None:
    source, target = make_database(pg_source, "split"), rds_target(pg_target)
    source.execute(
        "CREATE TABLE wide (id int PRIMARY KEY, label text, twice int GENERATED ALWAYS AS "
        "(id * 2) STORED)",
        "INSERT INTO wide (id, label) SELECT g, repeat('x', g % 300) FROM generate_series(1, "
        "20000) g",
        "ALTER TABLE wide DROP COLUMN label",  # a dropped column: not in the column list
        "ALTER TABLE wide ADD COLUMN note text DEFAULT 'n'",
    )
    pg = PostgresAdapter(runner, runner.masker)
    staging = pgstaging.create_staging(pg, _conn(target))
    audit_before = len(runner.audit.events) if isinstance(runner.audit, ListAudit) else 0
    result = copy_database(
        runner,
        runner.masker,
        _conn(source),
        staging,
        jobs=3,
        skip_extensions=[],
        timeout=300,
        progress=None,
        split_min_bytes=8192 * 4,
    )
    assert result.tables == 1
    assert isinstance(runner.audit, ListAudit)
    pipes = [e for e in runner.audit.events[audit_before:] if "|" in e[1].get("argv", [])]
    assert len(pipes) == 3  # three page ranges of one table
    content = "SELECT count(*), sum(id), sum(twice), string_agg(DISTINCT note, ',') FROM wide"
    copied = AppDatabase(pg_target, staging.dbname, target.owner, target.password)
    assert query(copied, content) == query(source, content) == [(20000, 200010000, 400020000, "n")]


def _direct(runner: Runner, source: AppDatabase, staging: ConnInfo, **kw: int) -> CopyResult:
    return copy_database(
        runner,
        runner.masker,
        _conn(source),
        staging,
        jobs=2,
        skip_extensions=[],
        timeout=300,
        progress=None,
        **kw,  # type: ignore[arg-type]
    )


@pytest.mark.slow
def test_small_tables_bundled_in_one_pipe_arrive_exactly(
    pg_source: PgCluster, pg_target: PgCluster, runner: Runner
) -> None:
    # A bundle is a psql script (COPY ... FROM STDIN; rows; \.) fed to one consumer: names that
    # need quoting, values that look like the end-of-data line or hold quotes, backslashes,
    # tabs and newlines, NULLs and an empty table must all arrive as they were.
    source, target = make_database(pg_source, "bundle"), rds_target(pg_target)
    source.execute(
        'CREATE TABLE "Odd \'name""s" ("Col ""x""" text, n int)',
        "INSERT INTO \"Odd 'name\"\"s\" VALUES (E'\\\\.', 1), (E'a\\tb\\nc\\\\', 2), "
        "(NULL, 3), ('it''s', 4), ('\\.', 5)",
        "CREATE TABLE plain (id int PRIMARY KEY, b bytea)",
        "INSERT INTO plain SELECT g, decode(md5(g::text), 'hex') FROM generate_series(1, 500) g",
        "CREATE TABLE empty_one (id int)",
        "CREATE SCHEMA other",
        "CREATE TABLE other.t (id int)",
        "INSERT INTO other.t SELECT generate_series(1, 7)",
        "CREATE UNIQUE INDEX other_t_id ON other.t (id) WHERE id > 0",
        "CREATE TABLE child (id int REFERENCES plain, n int)",  # a foreign key: the final pass
        "INSERT INTO child VALUES (1, 1)",
    )
    pg = PostgresAdapter(runner, runner.masker)
    staging = pgstaging.create_staging(pg, _conn(target))
    before = len(runner.audit.events) if isinstance(runner.audit, ListAudit) else 0
    _direct(runner, source, staging)
    assert isinstance(runner.audit, ListAudit)
    pipes = [e for e in runner.audit.events[before:] if "|" in e[1].get("argv", [])]
    assert len(pipes) == 2  # five tables, jobs=2: two bundles
    # each bundle's indexes built when it ended (its own list), then the final post-data pass
    restores = [
        " ".join(e[1]["argv"])
        for e in runner.audit.events[before:]
        if e[1].get("argv", [""])[0] == "pg_restore" and "--section=post-data" in e[1]["argv"]
    ]
    assert sum("/index-" in r for r in restores) == 2
    assert sum("/post.list" in r for r in restores) == 1
    copied = AppDatabase(pg_target, staging.dbname, target.owner, target.password)
    for sql in (
        'SELECT n, "Col ""x""" FROM "Odd \'name""s" ORDER BY n',
        "SELECT count(*), md5(string_agg(b::text, ',' ORDER BY id)) FROM plain",
        "SELECT count(*) FROM empty_one",
        "SELECT sum(id) FROM other.t",
        "SELECT indexdef FROM pg_indexes WHERE schemaname <> 'pg_catalog' ORDER BY 1",
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE connamespace <> 'pg_catalog'::regnamespace ORDER BY 1",
    ):
        assert query(copied, sql) == query(source, sql), sql
    assert query(copied, 'SELECT "Col ""x""" FROM "Odd \'name""s" WHERE n = 1') == [("\\.",)]


@pytest.mark.slow
def test_built_in_types_travel_in_binary_and_others_in_text_and_arrive_exactly(
    pg_source: PgCluster, pg_target: PgCluster, runner: Runner
) -> None:
    """pgparts.BINARY: a table of built-in types (special float and numeric values, arrays with
    NULLs, json, intervals, ranges, network and geometric types) goes in COPY's binary format,
    split into page ranges; one with an enum or a domain column, and one of reg* values
    (pgcopy.NOT_BINARY), go in text. All arrive exactly (the reg* values naming the target's
    own objects), and the row checksum verify-data uses agrees."""
    source, target = make_database(pg_source, "binary"), rds_target(pg_target)
    source.execute(
        "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')",
        "CREATE DOMAIN positive AS int CHECK (VALUE > 0)",
        "CREATE TABLE builtin (id bigint PRIMARY KEY, n numeric, f float8, r real, "
        "at timestamptz, d date, t time, i interval, b bool, u uuid, j json, jb jsonb, "
        "by bytea, ia int[], ta text[], ir int4range, ip inet, pt point, m money, "
        "label varchar(20), c char(3))",
        "INSERT INTO builtin SELECT g, CASE g % 5 WHEN 0 THEN 'NaN' ELSE g / 7.0 END, "
        "CASE g % 4 WHEN 0 THEN 'Infinity' WHEN 1 THEN '-0' ELSE g / 3.0 END, g / 9.0, "
        "timestamptz '2024-02-29 23:59:59.999999+00' + g * interval '1 min', "
        "date '2000-01-01' + g, time '00:00' + g * interval '1 s', g * interval '1 day 1 ms', "
        "g % 2 = 0, md5(g::text)::uuid, json_build_object('g', g), jsonb_build_object('g', g), "
        "decode(md5(g::text), 'hex'), ARRAY[g, NULL, -g], ARRAY['a' || g, NULL, E'tab\\t'], "
        "int4range(g, g + 10), '10.0.0.0/8'::inet, point(g, -g), g::money, 'é' || g, 'x' "
        "FROM generate_series(1, 6000) g",
        "INSERT INTO builtin (id) VALUES (0)",  # a row of NULLs
        "CREATE TABLE typed (id int, feeling mood, amount positive)",
        "INSERT INTO typed SELECT g, (ARRAY['sad', 'ok', 'happy']::mood[])[1 + g % 3], g "
        "FROM generate_series(1, 3000) g",
        # reg* values: in binary the raw OID of the object, another object (or none) on Convox
        "CREATE TABLE refs (id int, rel regclass, kinds regtype[])",
        "INSERT INTO refs SELECT g, 'typed'::regclass, ARRAY['mood'::regtype, 'int4'::regtype] "
        "FROM generate_series(1, 3000) g",
    )
    pg = PostgresAdapter(runner, runner.masker)
    staging = pgstaging.create_staging(pg, _conn(target))
    before = len(runner.audit.events) if isinstance(runner.audit, ListAudit) else 0
    # every table in a pipe of its own (bundle_max_bytes=0)
    result = _direct(runner, source, staging, split_min_bytes=8192 * 4, bundle_max_bytes=0)
    assert result.tables == 3 and result.binary_tables == 1
    assert isinstance(runner.audit, ListAudit)
    pipes = [" ".join(e[1]["argv"]) for e in runner.audit.events[before:] if "|" in e[1]["argv"]]
    builtin = [p for p in pipes if "public.builtin" in p]
    assert len(builtin) == 2 and all(p.count("WITH (FORMAT binary)") == 2 for p in builtin)
    for table in ("public.typed", "public.refs"):
        assert [p for p in pipes if table in p and "binary" not in p], table
    copied = AppDatabase(pg_target, staging.dbname, target.owner, target.password)
    names = "SELECT DISTINCT rel::text, kinds::text FROM refs"
    assert query(copied, names) == query(source, names) == [("typed", "{mood,integer}")]
    for table in ("builtin", "typed"):
        checksum = f"SELECT {table_checksum_sql(table, True).split(',', 1)[1]}"
        assert query(copied, checksum) == query(source, checksum), table
    exact = "SELECT count(*), md5(string_agg(b::text, '|' ORDER BY id)) FROM builtin b"
    assert query(copied, exact) == query(source, exact)


@pytest.mark.slow
def test_inheritance_children_keep_their_columns_and_are_copied_once(
    pg_source: PgCluster, pg_target: PgCluster, runner: Runner
) -> None:
    # pg_dump recreates a child as CREATE TABLE child (local columns) INHERITS (parent): the
    # inherited columns come first, so a column added to the parent later sits in another place
    # than on the source (pg_dump's own COPY names the columns for this reason, pg_dump.c
    # dumpTableData_copy). A SELECT from a parent also reads its children (a ctid range of a
    # split parent must say ONLY).
    source, target = make_database(pg_source, "inherit"), rds_target(pg_target)
    source.execute(
        "CREATE TABLE parent (id int, label text)",
        "CREATE TABLE child (extra text) INHERITS (parent)",
        "ALTER TABLE parent ADD COLUMN added int",
        "INSERT INTO parent SELECT g, 'p' || g, g FROM generate_series(1, 3000) g",
        "INSERT INTO child (id, label, extra, added) SELECT g, 'c' || g, 'x' || g, -g "
        "FROM generate_series(1, 3000) g",
    )
    pg = PostgresAdapter(runner, runner.masker)
    staging = pgstaging.create_staging(pg, _conn(target))
    _direct(runner, source, staging, split_min_bytes=8192 * 2)
    copied = AppDatabase(pg_target, staging.dbname, target.owner, target.password)
    for sql in (
        "SELECT count(*), md5(string_agg(p::text, ',' ORDER BY id)) FROM ONLY parent p",
        "SELECT count(*), md5(string_agg(concat_ws('|', id, label, extra, added), ',' "
        "ORDER BY id)) FROM child",
    ):
        assert query(copied, sql) == query(source, sql)
    assert query(copied, "SELECT count(*) FROM parent") == [(6000,)]


@pytest.mark.slow
def test_the_copy_does_not_depend_on_the_source_roles_settings(
    pg_source: PgCluster, pg_target: PgCluster, runner: Runner
) -> None:
    # A Heroku role may carry DateStyle, extra_float_digits or timeouts (pg_db_role_setting):
    # COPY's text follows the session's settings, and the holder idles in its transaction
    # while the tables are copied. pg_dump sets the same ones for itself (pg_dump.c
    # setup_connection).
    source, target = make_database(pg_source, "roleset"), rds_target(pg_target)
    source.execute(
        "CREATE TABLE t (id int PRIMARY KEY, d date, f float8, i interval)",
        "INSERT INTO t VALUES (1, '2026-11-13', 0.1::float8 + 0.2::float8, '1 day 02:03:04'), "
        "(2, '2026-01-31', 1e-300, '-3 months')",
        "CREATE TABLE u (id int)",
        "INSERT INTO u VALUES (1)",
        "ALTER ROLE CURRENT_USER SET DateStyle = 'SQL, DMY'",
        "ALTER ROLE CURRENT_USER SET IntervalStyle = 'sql_standard'",
        "ALTER ROLE CURRENT_USER SET extra_float_digits = 0",
        "ALTER ROLE CURRENT_USER SET idle_in_transaction_session_timeout = '300ms'",
    )
    pg = PostgresAdapter(runner, runner.masker)
    staging = pgstaging.create_staging(pg, _conn(target))
    waited: list[int] = []

    def idle(p: CopyProgress) -> None:
        # The holder idles while a table is copied; here longer than the role allows.
        import time  # noqa: PLC0415

        time.sleep(1.0)
        waited.append(p.tables_done)

    copy_database(
        runner,
        runner.masker,
        _conn(source),
        staging,
        jobs=1,
        skip_extensions=[],
        timeout=300,
        progress=idle,
    )
    assert waited
    copied = AppDatabase(pg_target, staging.dbname, target.owner, target.password)
    # Compared as numbers: each side prints dates and intervals in its own style.
    sql = (
        "SELECT id, d - date '2000-01-01', f = 0.1::float8 + 0.2::float8 OR f = 1e-300, "
        "extract(epoch FROM i)::text FROM t ORDER BY id"
    )
    assert query(copied, sql) == query(source, sql)
    assert [r[2] for r in query(copied, sql)] == [True, True]
    assert [r[1] for r in query(copied, sql)] == [9813, 9527]


@pytest.mark.slow
def test_rows_hidden_by_a_forced_policy_fail_the_copy(
    pg_source: PgCluster, pg_target: PgCluster, runner: Runner
) -> None:
    # FORCE ROW LEVEL SECURITY applies policies to the owner: COPY would silently leave rows
    # out. With row_security off it fails instead, as pg_dump does (pg_dump.c: row_security).
    source, target = make_database(pg_source, "rls"), rds_target(pg_target)
    source.execute(
        "CREATE TABLE t (id int)",
        "INSERT INTO t SELECT generate_series(1, 10)",
        "ALTER TABLE t ENABLE ROW LEVEL SECURITY",
        "ALTER TABLE t FORCE ROW LEVEL SECURITY",
        "CREATE POLICY few ON t USING (id < 3)",
    )
    pg = PostgresAdapter(runner, runner.masker)
    staging = pgstaging.create_staging(pg, _conn(target))
    with pytest.raises(CommandError, match="row-level security"):
        _direct(runner, source, staging)


def _allows_connections(cluster: PgCluster, dbname: str) -> list[tuple[object, ...]]:
    with pgcluster.connect(cluster) as admin:
        return list(
            admin.execute(
                "SELECT datallowconn FROM pg_database WHERE datname = %s", (dbname,)
            ).fetchall()
        )


@pytest.mark.slow
def test_a_swap_that_cannot_close_the_database_reopens_it_untouched(
    pg_target: PgCluster, runner: Runner
) -> None:
    # A session the Convox role may not terminate (a superuser's: PostgreSQL 15
    # pg_signal_backend, "must be a superuser to terminate superuser process") stops the swap
    # after ALLOW_CONNECTIONS false. <db> must be open again, with its data, and the error say
    # what held it.
    target = rds_target(pg_target)
    target.execute("CREATE TABLE precious (id int)", "INSERT INTO precious VALUES (42)")
    pg = PostgresAdapter(runner, runner.masker)
    conn = _conn(target)
    staging = pgstaging.create_staging(pg, conn)
    pgstaging.mark_synced(pg, staging)
    with pgcluster.connect(pg_target, target.dbname) as held:  # the superuser's session
        held.execute("SELECT 1")
        with pytest.raises(CutoverError) as caught:
            pgstaging.swap(pg, conn, timeout=60)
    message = str(caught.value)
    assert f"could not swap the new copy in as {target.dbname}" in message
    assert "superuser" in message
    assert "cutover run" in message
    assert _allows_connections(pg_target, target.dbname) == [(True,)]
    assert query(target, "SELECT id FROM precious") == [(42,)]


@pytest.mark.slow
def test_a_swap_terminates_the_apps_sessions_and_puts_the_copy_in_place(
    pg_target: PgCluster, runner: Runner
) -> None:
    target = rds_target(pg_target)
    target.execute("CREATE TABLE old (id int)")
    pg = PostgresAdapter(runner, runner.masker)
    conn = _conn(target)
    staging = pgstaging.create_staging(pg, conn)
    marker = pgstaging.mark_synced(pg, staging)
    with pgcluster.connect(pg_target, target.dbname, target.owner, target.password) as app:
        app.execute("SELECT 1")
        pgstaging.swap(pg, conn, timeout=60)
    assert pgstaging.read_marker(pg, conn)[2] == marker
    assert _allows_connections(pg_target, target.dbname) == [(True,)]
    nxt, prev = pgstaging.names(target.dbname)
    assert _allows_connections(pg_target, prev) == _allows_connections(pg_target, nxt) == []


@pytest.mark.slow
def test_guard_refuses_when_statistics_were_reset_since_the_last_sync(
    pg_target: PgCluster, runner: Runner
) -> None:
    # A crash, a failover or pg_stat_reset() zeroes the counters (PostgreSQL 15 discards them on
    # crash recovery): fewer row writes than the marker's count cannot show the writes since.
    target = rds_target(pg_target)
    target.execute("CREATE TABLE t (id int)", "INSERT INTO t SELECT generate_series(1, 50)")
    pg = PostgresAdapter(runner, runner.masker)
    conn = _conn(target)
    marker = pgstaging.mark_synced(pg, conn)
    assert marker.endswith(" writes=50")
    assert pgstaging.guard(pg, conn, force=False) is None
    with pgcluster.connect(pg_target, target.dbname) as admin:
        admin.execute("SELECT pg_stat_reset()")
    target.execute("INSERT INTO t VALUES (51)")  # the app's write after the reset
    with pytest.raises(CutoverError, match="statistics were reset"):
        pgstaging.guard(pg, conn, force=False)
    assert "statistics were reset" in str(pgstaging.guard(pg, conn, force=True))


@pytest.mark.slow
def test_sequences_restarted_or_never_called_arrive_at_the_same_next_value(
    pg_source: PgCluster, pg_target: PgCluster, runner: Runner
) -> None:
    # ALTER SEQUENCE ... RESTART WITH and setval(s, v, false) leave is_called false, which
    # pg_sequences shows as a NULL last_value (PostgreSQL 15 pg_sequence_last_value); pg_dump's
    # CREATE SEQUENCE carries only the START value.
    source, target = make_database(pg_source, "seqs"), rds_target(pg_target)
    source.execute(
        "CREATE TABLE t (id serial PRIMARY KEY)",
        "ALTER SEQUENCE t_id_seq RESTART WITH 1000",
        "CREATE SEQUENCE used",
        "SELECT setval('used', 50)",
        'CREATE SEQUENCE "Odd name"',
        "SELECT setval('\"Odd name\"', 7, false)",
        "CREATE SEQUENCE fresh START 5",
    )
    pg = PostgresAdapter(runner, runner.masker)
    staging = pgstaging.create_staging(pg, _conn(target))
    _direct(runner, source, staging)
    copied = AppDatabase(pg_target, staging.dbname, target.owner, target.password)
    nexts = "SELECT nextval('t_id_seq'), nextval('used'), nextval('\"Odd name\"'), nextval('fresh')"
    assert query(copied, nexts) == [(1000, 51, 7, 5)]


@pytest.mark.slow
def test_tables_are_locked_against_truncate_while_they_are_copied(
    pg_source: PgCluster, pg_target: PgCluster, runner: Runner
) -> None:
    # TRUNCATE is not MVCC-safe (PostgreSQL docs, TRUNCATE): a table truncated after the
    # snapshot reads as empty in it. The holder locks every table it copies ACCESS SHARE, as
    # pg_dump does (pg_dump.c getTables), so a TRUNCATE or ALTER on Heroku waits for the copy.
    source, target = make_database(pg_source, "locks"), rds_target(pg_target)
    source.execute(
        "CREATE TABLE big (id int, pad text)",
        "INSERT INTO big SELECT g, repeat('x', 200) FROM generate_series(1, 2000) g",
        "CREATE TABLE small (id int)",
        "INSERT INTO small SELECT generate_series(1, 10)",
    )
    pg = PostgresAdapter(runner, runner.masker)
    staging = pgstaging.create_staging(pg, _conn(target))
    refused: list[str] = []

    def truncate_the_next_table(p: CopyProgress) -> None:
        if p.tables_done != 1:
            return
        try:
            source.execute("SET lock_timeout = '300ms'", "TRUNCATE small")
        except Exception as exc:  # the lock timeout is what is expected
            refused.append(str(exc))

    copy_database(
        runner,
        runner.masker,
        _conn(source),
        staging,
        jobs=1,
        skip_extensions=[],
        timeout=300,
        progress=truncate_the_next_table,
        bundle_max_bytes=100_000,  # big (~480 kB) on its own pipe, then small
    )
    copied = AppDatabase(pg_target, staging.dbname, target.owner, target.password)
    assert query(copied, "SELECT count(*) FROM small") == [(10,)]
    assert refused and "lock timeout" in refused[0]


@pytest.mark.slow
def test_custom_setting_values_never_reach_findings_or_the_audit(
    pg_source: PgCluster, pg_target: PgCluster, runner: Runner, audit: ListAudit
) -> None:
    # A dotted (custom) setting is a common place for an app's secret (ALTER DATABASE ... SET
    # "app.jwt_secret" = ...); a refused one is reported by name only, and its value is masked
    # wherever the runner records output (PostgreSQL may echo a value in its error).
    source, target = make_database(pg_source, "secretset"), rds_target(pg_target)
    value = "jwt-" + secrets.token_hex(8)
    with pgcluster.connect(pg_source) as admin:
        admin.execute(f"ALTER DATABASE \"{source.dbname}\" SET app.jwt_secret = '{value}'")
        admin.execute(f'ALTER DATABASE "{source.dbname}" SET log_min_duration_statement = 250')
    pg = PostgresAdapter(runner, runner.masker)
    settings = pgstaging.read_settings(pg, _conn(source))
    assert pgstaging.Setting("database", "app.jwt_secret", value) in settings
    # The Convox role may not set a superuser-only setting; make the custom one refused too.
    broken = [*settings, pgstaging.Setting("database", "app.other", value + "'bad")]
    refused = pgstaging.apply_settings(pg, _conn(target), target.dbname, broken)
    assert any("log_min_duration_statement=250" in r for r in refused)
    assert all(value not in r for r in refused), refused
    assert value not in audit.text()


@pytest.mark.slow
def test_a_snapshot_holder_that_dies_fails_the_copy_clearly(
    pg_source: PgCluster, pg_target: PgCluster, runner: Runner
) -> None:
    # Heroku may end the session holding the exported snapshot (maintenance, a failover, an
    # admin): later imports fail with "invalid snapshot identifier", which says nothing of why.
    source, target = make_database(pg_source, "holder"), rds_target(pg_target)
    source.execute(
        "CREATE TABLE a (id int)",
        "INSERT INTO a SELECT generate_series(1, 5000)",
        "CREATE TABLE b (id int)",
        "INSERT INTO b VALUES (1)",
    )
    pg = PostgresAdapter(runner, runner.masker)
    staging = pgstaging.create_staging(pg, _conn(target))

    def end_the_holder(p: CopyProgress) -> None:
        with pgcluster.connect(pg_source) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND state = 'idle in transaction'",
                (source.dbname,),
            )

    with pytest.raises(CutoverError) as caught:
        copy_database(
            runner,
            runner.masker,
            _conn(source),
            staging,
            jobs=1,
            skip_extensions=[],
            timeout=300,
            progress=end_the_holder,
        )
    message = str(caught.value)
    assert "the Heroku session holding the copy's snapshot ended" in message
    assert "terminating connection" in message
    assert "cutover run" in message


@pytest.mark.slow
def test_a_ddl_waiting_for_the_copys_locks_fails_the_copy_instead_of_hanging_it(
    pg_source: PgCluster, pg_target: PgCluster, runner: Runner
) -> None:
    # The holder keeps ACCESS SHARE on every table; an ALTER on Heroku queues behind it, and a
    # later COPY of that table would queue behind the ALTER: a wait PostgreSQL's deadlock
    # detector cannot see (the holder waits on cutover, not on a lock). pg_dump's workers take
    # their locks NOWAIT for this reason (pg_backup_db.c / pg_dump.c lockTableForWorker).
    import threading  # noqa: PLC0415

    source, target = make_database(pg_source, "ddl"), rds_target(pg_target)
    source.execute(
        "CREATE TABLE big (id int, pad text)",
        "INSERT INTO big SELECT g, repeat('x', 200) FROM generate_series(1, 2000) g",
        "CREATE TABLE small (id int)",
        "INSERT INTO small SELECT generate_series(1, 10)",
        "CREATE TABLE small2 (id int)",  # small and small2 share one pipe (a bundle)
    )
    pg = PostgresAdapter(runner, runner.masker)
    staging = pgstaging.create_staging(pg, _conn(target))
    errors: list[BaseException] = []

    def alter() -> None:
        try:
            source.execute("ALTER TABLE small ADD COLUMN z int")
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    ddl = threading.Thread(target=alter)

    def start_a_migration(p: CopyProgress) -> None:
        if p.tables_done != 1:
            return
        ddl.start()
        for _ in range(600):  # until the ALTER waits for the holder's lock
            with pgcluster.connect(pg_source, source.dbname) as admin:
                if admin.execute(
                    "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = %s::regclass",
                    ("small",),
                ).fetchone() != (0,):
                    return
        raise AssertionError("the ALTER never waited")

    with pytest.raises(CutoverError) as caught:
        copy_database(
            runner,
            runner.masker,
            _conn(source),
            staging,
            jobs=1,
            skip_extensions=[],
            timeout=60,
            progress=start_a_migration,
            bundle_max_bytes=100_000,  # big (~480 kB) on its own pipe, then the bundle
        )
    ddl.join(timeout=120)
    message = str(caught.value)
    assert "public.small" in message
    assert "waiting for the copy's locks" in message
    assert errors == []  # the ALTER went ahead once the copy let go


def test_staging_takes_the_databases_encoding_and_locale_in_one_psql(
    pg_target: PgCluster, runner: Runner, argv_log: Path
) -> None:
    """create_staging builds its CREATE DATABASE from the catalog (one psql): a LATIN1 / C
    database gets a LATIN1 / C staging copy (a sync that changed the encoding would change what
    the app stores); run again, it replaces the leftover staging database."""
    target = rds_target(pg_target)
    with pgcluster.connect(pg_target) as admin:
        admin.execute(f'DROP DATABASE "{target.dbname}"')
        admin.execute(
            f'CREATE DATABASE "{target.dbname}" OWNER "{target.owner}" TEMPLATE template0 '
            "ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C'"
        )
    pg = PostgresAdapter(runner, runner.masker)
    before = len(argv_log.read_text(encoding="utf-8").splitlines()) if argv_log.exists() else 0
    staging = pgstaging.create_staging(pg, _conn(target))
    assert len(argv_log.read_text(encoding="utf-8").splitlines()) == before + 1
    pgstaging.create_staging(pg, _conn(target))  # a leftover from an interrupted run
    with pgcluster.connect(pg_target) as admin:
        row = admin.execute(
            "SELECT pg_encoding_to_char(encoding), datcollate, datctype FROM pg_database "
            "WHERE datname = %s",
            (staging.dbname,),
        ).fetchone()
    assert row == ("LATIN1", "C", "C")


def test_the_synced_marker_is_written_on_a_copy_that_carries_a_read_only_default(
    pg_target: PgCluster, runner: Runner
) -> None:
    """The marker's psql connects to the copy, whose settings came from Heroku: a frozen Heroku
    (default_transaction_read_only = on, freeze-writes) must not stop it (seen in the sandbox:
    'cannot execute COMMENT in a read-only transaction')."""
    target = rds_target(pg_target)
    pg = PostgresAdapter(runner, runner.masker)
    staging = pgstaging.create_staging(pg, _conn(target))
    with pgcluster.connect(pg_target) as admin:
        admin.execute(f'ALTER DATABASE "{staging.dbname}" SET default_transaction_read_only = on')
    marker = pgstaging.mark_synced(pg, staging)
    assert marker.startswith("cutover:synced ") and " writes=" in marker
    _exists, read, comment = pgstaging.read_marker(pg, staging)
    assert comment == marker and read is not None
