"""The MySQL data path on real MariaDB servers (cutover/adapters/mysql.py, mysqlstaging.py,
mysqlverify.py): copy through staging and swap, definers rewritten, the guard, verify naming the
table, a failed swap leaving the old copy, no password in any argv."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from adapter_support import ARGV_LOG_ENV, ListAudit, assert_argv_clean
from support.mysqlservers import Pair, clear_db, convox_db, run_sql, two_servers

from cutover.adapters import mysqlcheck, mysqlstaging, mysqlverify
from cutover.adapters.mysql import MyConn, MysqlAdapter, strip_definers
from cutover.errors import CutoverError
from cutover.runner import Runner
from cutover.sandbox import mysqlbox
from cutover.sandbox.convox_fake.provision_mysql import RDS_MASTER_PRIVILEGES
from cutover.secrets import SecretMasker

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    with two_servers(tmp_path_factory.mktemp("mysql")) as pair:
        yield pair


@pytest.fixture
def my(argv_log: Path, audit: ListAudit) -> MysqlAdapter:
    masker = SecretMasker()
    return MysqlAdapter(Runner(masker, audit=audit, base_env={ARGV_LOG_ENV: str(argv_log)}), masker)


@pytest.fixture
def work(tmp_path: Path) -> Path:
    folder = tmp_path / "work"
    folder.mkdir(mode=0o700)
    return folder


def test_url_shapes_of_cleardb_jawsdb_and_convox() -> None:
    # ClearDB (Heroku Dev Center "ClearDB MySQL"): no port, ?reconnect=true
    c = MyConn.from_url("mysql://b6d:p%40ss@us-cdbr-east.cleardb.com/heroku_9a?reconnect=true")
    assert (c.host, c.port, c.user, c.password, c.database) == (
        "us-cdbr-east.cleardb.com",
        3306,
        "b6d",
        "p@ss",
        "heroku_9a",
    )
    # Convox (provider/k8s/template/resource/mysql.yml.tmpl): root, port 3306, database app
    v = MyConn.from_url("mysql://root:pw@resource-mysql.ns.svc.cluster.local:3306/app")
    assert (v.user, v.database) == ("root", "app")
    with pytest.raises(CutoverError, match="not a MySQL URL"):
        MyConn.from_url("postgres://u:p@h/db")


def test_definers_rewritten_on_ddl_lines_only() -> None:
    line = "/*!50017 DEFINER=`b1`@`%`*/ /*!50003 TRIGGER t AFTER INSERT ON o FOR EACH ROW ..."
    assert strip_definers(line) == (
        "/*!50017 DEFINER=CURRENT_USER*/ /*!50003 TRIGGER t AFTER INSERT ON o FOR EACH ROW ...",
        1,
    )
    data = "INSERT INTO `n` VALUES ('DEFINER=`b1`@`%`');"
    assert strip_definers(data) == (data, 0)


def test_copy_swaps_in_everything_with_definers_rewritten(
    servers: Pair, my: MysqlAdapter, work: Path, argv_log: Path, audit: ListAudit
) -> None:
    source, target = clear_db(servers.heroku), convox_db(servers.convox)
    assert mysqlstaging.guard(my, target, force=False) is None  # empty: fine
    result = mysqlstaging.sync(my, source, target, work, timeout=300)
    assert result.tables == 4
    assert result.definers >= 3  # trigger, view, function
    assert result.marker.startswith("cutover:synced")
    check = mysqlverify.verify(my, source, target)
    assert check.mismatches == []
    assert sorted(c.table for c in check.tables) == [
        "audit_log",
        "customers",
        "order_counts",
        "orders",
    ]
    # the emoji, the binary column and the keyless duplicates arrived
    assert "Ada 🚀" in run_sql(target, "SELECT name FROM customers WHERE id = 1")
    assert run_sql(target, "SELECT HEX(avatar) FROM customers WHERE id = 1").strip() == (
        "89504E470D0A1A0A00FF"
    )
    assert run_sql(target, "SELECT COUNT(*) FROM audit_log WHERE message = 'seeded'").strip() == "2"
    # the trigger, view and function exist, owned by the Convox user, and work
    definers = run_sql(
        target,
        "SELECT DEFINER FROM information_schema.TRIGGERS WHERE "
        "TRIGGER_SCHEMA = DATABASE() UNION ALL SELECT DEFINER FROM "
        "information_schema.VIEWS WHERE TABLE_SCHEMA = DATABASE()",
    )
    assert definers.split() == ["root@127.0.0.1", "root@127.0.0.1"]
    before = run_sql(target, "SELECT n FROM order_counts WHERE customer_id = 2").strip()
    run_sql(target, "INSERT INTO orders (customer_id, total, body) VALUES (2, 1, 'x')")
    assert int(run_sql(target, "SELECT n FROM order_counts WHERE customer_id = 2")) == (
        int(before) + 1
    )
    assert run_sql(target, "SELECT order_label(7)").strip() == "order-7"
    assert run_sql(target, "SELECT COUNT(*) FROM big_spenders").strip() == "4"
    # nothing left behind: no staging or previous database, no dump file
    dbs = run_sql(target, "SHOW DATABASES")
    assert "__cutover" not in dbs
    assert list(work.iterdir()) == []
    argvs = assert_argv_clean(argv_log, [source.password, target.password])
    assert any("--single-transaction" in a for a in argvs)
    assert source.password not in audit.text() and target.password not in audit.text()


def test_guard_refuses_foreign_tables_writes_and_live(
    servers: Pair, my: MysqlAdapter, work: Path
) -> None:
    source, target = clear_db(servers.heroku, rows=50), convox_db(servers.convox)
    run_sql(target, "CREATE TABLE theirs (id INT PRIMARY KEY)")
    with pytest.raises(CutoverError, match=r"did not put there.*theirs"):
        mysqlstaging.guard(my, target, force=False)
    assert "theirs" in (mysqlstaging.guard(my, target, force=True) or "")
    run_sql(target, "DROP TABLE theirs")
    mysqlstaging.sync(my, source, target, work, timeout=300)
    assert mysqlstaging.guard(my, target, force=False) is None  # our copy, untouched
    run_sql(target, "UPDATE customers SET name = 'changed' WHERE id = 2")
    with pytest.raises(CutoverError, match=r"took writes.*customers"):
        mysqlstaging.guard(my, target, force=False)
    mysqlstaging.sync(my, source, target, work, timeout=300)  # forced by the caller's choice
    mysqlstaging.mark_live(my, target)
    with pytest.raises(CutoverError, match="went live"):
        mysqlstaging.guard(my, target, force=False)


def test_verify_names_the_table_that_differs(servers: Pair, my: MysqlAdapter, work: Path) -> None:
    source, target = clear_db(servers.heroku, rows=100), convox_db(servers.convox)
    mysqlstaging.sync(my, source, target, work, timeout=300)
    run_sql(target, "UPDATE customers SET note = 'likes emoji 😀' WHERE id = 1")
    run_sql(target, "DELETE FROM audit_log WHERE message IS NULL")
    run_sql(target, "ALTER TABLE orders ADD COLUMN extra INT NULL")
    problems = mysqlverify.verify(my, source, target).mismatches
    assert any(p.startswith("customers: content differs") for p in problems), problems
    assert any(p.startswith("audit_log: 3 rows on Heroku, 2 on Convox") for p in problems)
    assert any(p.startswith("orders:") and "schema differs" in p for p in problems)
    assert not any(p.startswith("order_counts") for p in problems)
    counts = mysqlverify.verify(my, source, target, checksums=False).mismatches
    assert not any(p.startswith("customers") for p in counts)  # counts alone cannot see it


def test_failed_swap_leaves_the_previous_copy(servers: Pair, my: MysqlAdapter, work: Path) -> None:
    source, target = clear_db(servers.heroku, rows=100), convox_db(servers.convox)
    mysqlstaging.sync(my, source, target, work, timeout=300)
    run_sql(source, "DELETE FROM audit_log")
    # a staging copy whose rename must fail: a trigger on a staging table cannot change schema
    staging = mysqlstaging.create_staging(my, target, ("utf8mb4", "utf8mb4_general_ci"))
    tables = mysqlstaging.base_tables(my, source)
    data = work / "d.sql"
    my.dump(my.data_dump_argv(source, tables, data), source, data, 60)
    my.load(staging, data, 60)
    mysqlstaging.mark_synced(my, staging)
    run_sql(staging, "CREATE TRIGGER blocker BEFORE INSERT ON audit_log FOR EACH ROW SET @x = 1")
    objects = mysqlstaging.dump_objects(my, source, work, "new", 60)
    with pytest.raises(CutoverError, match="Trigger in wrong schema"):
        mysqlstaging.swap(my, target, objects, work, 60)
    # the old copy is whole: its rows, its trigger and view back, the guard content
    assert run_sql(target, "SELECT COUNT(*) FROM audit_log").strip() == "3"
    assert (
        run_sql(
            target,
            "SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE()",
        ).strip()
        == "1"
    )
    assert run_sql(target, "SELECT COUNT(*) FROM big_spenders").strip() == "4"
    assert mysqlstaging.guard(my, target, force=False) is None


def test_a_user_without_super_restores_the_definers_as_itself(
    servers: Pair, my: MysqlAdapter, work: Path
) -> None:
    """rds-mysql: the RDS master user has no SUPER (convox_fake/provision_mysql.py), so it may
    not name another DEFINER (error 1227); rewritten to CURRENT_USER, everything loads."""
    source = clear_db(servers.heroku, rows=20)
    admin = convox_db(servers.convox)
    user, password = f"master_{admin.database[-8:]}", "pw:" + admin.database
    mysqlbox.admin(
        servers.convox,
        f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}';\n"
        f"GRANT {RDS_MASTER_PRIVILEGES} ON *.* TO '{user}'@'%' WITH GRANT OPTION;",
    )
    target = MyConn("127.0.0.1", servers.convox.port, user, admin.database, password)
    mysqlstaging.sync(my, source, target, work, timeout=300)
    assert mysqlverify.verify(my, source, target).mismatches == []
    definers = run_sql(
        target, "SELECT DEFINER FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE()"
    )
    assert definers.split() == [f"{user}@%"]


def test_a_load_stops_and_fails_at_the_first_failing_statement(
    servers: Pair, my: MysqlAdapter, work: Path
) -> None:
    """`mariadb -e 'source F'` goes on past a failing statement and exits 0 (measured on
    MariaDB 10.11): a rejected INSERT would be a lost row and a rejected CREATE TRIGGER a missing
    trigger, with the step done. --abort-source-on-error (`mariadb --help`) makes it exit 1."""
    target = convox_db(servers.convox)
    dump = work / "bad.sql"
    dump.write_text(
        "CREATE TABLE a (id INT PRIMARY KEY);\nINSERT INTO a VALUES (1);\n"
        "INSERT INTO missing VALUES (1);\nCREATE TABLE b (id INT);\n",
        encoding="utf-8",
    )
    with pytest.raises(CutoverError) as failed:
        my.load(target, dump, 60)
    assert "missing" in str(failed.value) + str(failed.value.details)
    assert "b" not in run_sql(target, "SHOW TABLES").split()


def test_verify_names_a_trigger_view_or_routine_missing_on_convox(
    servers: Pair, my: MysqlAdapter, work: Path
) -> None:
    """Tables alike but a trigger gone (a kill between RENAME and the objects' load, an object
    the Convox user could not create): verify must not pass."""
    source, target = clear_db(servers.heroku, rows=20), convox_db(servers.convox)
    mysqlstaging.sync(my, source, target, work, timeout=300)
    assert mysqlverify.verify(my, source, target).mismatches == []
    run_sql(target, "DROP TRIGGER count_orders; DROP VIEW big_spenders")
    problems = mysqlverify.verify(my, source, target).mismatches
    assert "trigger count_orders: missing on Convox" in problems, problems
    assert "view big_spenders: missing on Convox" in problems, problems
    assert not any("order_label" in p for p in problems)


def test_check_names_tables_the_snapshot_does_not_cover(servers: Pair, my: MysqlAdapter) -> None:
    """--single-transaction is a consistent snapshot of InnoDB tables only (MySQL 8.0 manual,
    mysqldump: "only for transactional tables such as InnoDB"); older ClearDB databases hold
    MyISAM tables. check-mysql names them and says when their copy is consistent."""
    source, target = clear_db(servers.heroku, rows=5), convox_db(servers.convox)
    run_sql(source, "CREATE TABLE legacy_hits (id INT PRIMARY KEY) ENGINE=MyISAM")
    report = mysqlcheck.inspect(my, source, target)
    assert report.non_transactional == ["legacy_hits (MyISAM)"]
    found = [f for f in report.findings if "legacy_hits (MyISAM)" in f]
    assert found and "nothing writes" in found[0], report.findings


def test_check_names_each_utf8mb3_column_and_the_change_and_the_copy_keeps_them(
    servers: Pair, my: MysqlAdapter, work: Path
) -> None:
    """MySQL's ``utf8`` is utf8mb3 (MySQL 8.0 manual 10.9.2; MariaDB 10.6+ reports it by that
    name): 3 bytes, no emoji. check-mysql names each such column and the ALTER that changes it;
    the copy keeps them utf8mb3, as the finding says, and the database default with them."""
    source, target = clear_db(servers.heroku, rows=5), convox_db(servers.convox)
    run_sql(
        source,
        "CREATE TABLE legacy_notes (id INT PRIMARY KEY, title VARCHAR(50) CHARACTER SET "
        "utf8mb3, body TEXT CHARACTER SET utf8, tag VARCHAR(10)) DEFAULT CHARSET=utf8mb4;\n"
        "CREATE TABLE old_names (id INT PRIMARY KEY, name VARCHAR(20)) DEFAULT CHARSET=utf8;\n"
        "ALTER DATABASE CHARACTER SET utf8mb3 COLLATE utf8mb3_general_ci;",
    )
    report = mysqlcheck.inspect(my, source, target)
    assert report.utf8mb3 == ["legacy_notes.body", "legacy_notes.title", "old_names.name"]
    assert report.blockers == []
    [found] = [f for f in report.findings if "column(s) in utf8mb3" in f]
    assert "legacy_notes.body, legacy_notes.title, old_names.name" in found, found
    assert "ALTER TABLE `legacy_notes` CONVERT TO CHARACTER SET utf8mb4" in found, found
    assert "ALTER TABLE `old_names` CONVERT TO CHARACTER SET utf8mb4" in found, found
    assert "customers" not in found  # utf8mb4 tables are not named
    assert any("default character set is utf8mb3" in f for f in report.findings), report.findings
    mysqlstaging.sync(my, source, target, work, timeout=300)
    charsets = run_sql(
        target,
        "SELECT CONCAT(TABLE_NAME, '.', COLUMN_NAME, '=', CHARACTER_SET_NAME) FROM "
        "information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME IN "
        "('legacy_notes', 'old_names') AND CHARACTER_SET_NAME IS NOT NULL ORDER BY 1",
    ).split()
    assert charsets == [
        "legacy_notes.body=utf8mb3",
        "legacy_notes.tag=utf8mb4",
        "legacy_notes.title=utf8mb3",
        "old_names.name=utf8mb3",
    ]
    default = "SELECT DEFAULT_CHARACTER_SET_NAME FROM information_schema.SCHEMATA WHERE "
    default += "SCHEMA_NAME = DATABASE()"
    assert run_sql(target, default).strip() == "utf8mb3"
    assert mysqlverify.verify(my, source, target).mismatches == []


def test_the_alter_list_says_how_many_more_and_quotes_backticks(
    servers: Pair, my: MysqlAdapter
) -> None:
    """12 utf8mb3 tables: 10 ALTERs and "and 2 more tables"; a backtick in a name doubled."""
    source, target = clear_db(servers.heroku, rows=5), convox_db(servers.convox)
    run_sql(
        source,
        "CREATE TABLE `odd``name` (id INT PRIMARY KEY, v VARCHAR(5)) DEFAULT CHARSET=utf8mb3;\n"
        + "".join(
            f"CREATE TABLE t{i:02} (id INT PRIMARY KEY, v VARCHAR(5)) DEFAULT CHARSET=utf8mb3;\n"
            for i in range(11)
        ),
    )
    report = mysqlcheck.inspect(my, source, target)
    [found] = [f for f in report.findings if "column(s) in utf8mb3" in f]
    assert "ALTER TABLE `odd``name` CONVERT TO CHARACTER SET utf8mb4" in found, found
    assert found.count("CONVERT TO CHARACTER SET") == 10
    assert "(and 2 more tables)" in found, found
    assert mysqlcheck.quote_name("a`b") == "`a``b`"


def test_killed_between_the_rename_and_the_objects_load_a_new_copy_converges(
    servers: Pair, my: MysqlAdapter, work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kill -9 after RENAME TABLE, before Heroku's triggers and views are loaded: the tables
    are Heroku's, the objects missing. verify says so; the guard lets the resumed step copy
    again (cutover's own copy, untouched), and that copy has everything."""
    source, target = clear_db(servers.heroku, rows=30), convox_db(servers.convox)
    real_load = MysqlAdapter.load

    def dies_at_the_objects(self: MysqlAdapter, conn: MyConn, path: Path, timeout: float) -> None:
        if path.name == "mysql-objects.sql":
            raise KeyboardInterrupt  # stands for the kill: nothing after it runs
        real_load(self, conn, path, timeout)

    monkeypatch.setattr(MysqlAdapter, "load", dies_at_the_objects)
    with pytest.raises(KeyboardInterrupt):
        mysqlstaging.sync(my, source, target, work, timeout=300)
    monkeypatch.setattr(MysqlAdapter, "load", real_load)
    assert (
        "trigger count_orders: missing on Convox"
        in mysqlverify.verify(my, source, target).mismatches
    )
    assert mysqlstaging.guard(my, target, force=False) is None
    mysqlstaging.sync(my, source, target, work, timeout=300)
    assert mysqlverify.verify(my, source, target).mismatches == []
    assert f"{target.database}__cutover" not in run_sql(target, "SHOW DATABASES")


def test_verify_reads_timestamps_in_utc_on_both_servers(
    servers: Pair, my: MysqlAdapter, work: Path
) -> None:
    """A TIMESTAMP is stored in UTC and shown in the session's time zone, the server's own by
    default (MySQL 8.0 manual 11.2.2): a Convox server in another zone than ClearDB's made
    verify see every such row as changed. The hash reads them in UTC on both sides."""
    source, target = clear_db(servers.heroku, rows=10), convox_db(servers.convox)
    run_sql(source, "CREATE TABLE seen (id INT PRIMARY KEY, at TIMESTAMP NULL)")
    run_sql(source, "INSERT INTO seen VALUES (1, '2024-05-01 12:00:00'), (2, NULL)")
    mysqlstaging.sync(my, source, target, work, timeout=300)
    mysqlbox.admin(servers.convox, "SET GLOBAL time_zone = '+05:00'")
    try:
        assert mysqlverify.verify(my, source, target).mismatches == []
        run_sql(target, "SET time_zone = '+00:00'; UPDATE seen SET at = '2024-05-01 12:00:01'")
        problems = mysqlverify.verify(my, source, target).mismatches
        assert problems == ["seen: content differs (row hash)"], problems
    finally:
        mysqlbox.admin(servers.convox, "SET GLOBAL time_zone = 'SYSTEM'")


def test_a_routine_dumped_with_its_own_database_collation_loads_into_the_convox_database(
    servers: Pair, my: MysqlAdapter, work: Path
) -> None:
    """mariadb-dump wraps a routine whose collation differs from its database's default in
    ``ALTER DATABASE `<heroku db>` CHARACTER SET ...`` (measured, MariaDB 10.11): a database
    the Convox server does not have. The name is dropped (the load's default database)."""
    source, target = clear_db(servers.heroku, rows=10), convox_db(servers.convox)
    run_sql(source, "ALTER DATABASE CHARACTER SET latin1 COLLATE latin1_swedish_ci")
    mysqlstaging.sync(my, source, target, work, timeout=300)
    assert run_sql(target, "SELECT order_label(3)").strip() == "order-3"
    assert mysqlverify.verify(my, source, target).mismatches == []


def test_the_convox_database_takes_herokus_default_character_set(
    servers: Pair, my: MysqlAdapter, work: Path
) -> None:
    """The tables keep their own character sets, but a table the app creates after the move
    without one takes its database's default: Convox's mysql:5.7.23 image starts with latin1
    (provider/k8s/template/resource/mysql.yml.tmpl sets no character set). The swap gives the
    Convox database Heroku's default, as the staging database had."""
    source, target = clear_db(servers.heroku, rows=10), convox_db(servers.convox)
    # their dump would set the default itself (ALTER DATABASE lines, above)
    run_sql(source, "DROP FUNCTION order_label; DROP TRIGGER count_orders")
    run_sql(source, "ALTER DATABASE CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    run_sql(target, "ALTER DATABASE CHARACTER SET latin1 COLLATE latin1_swedish_ci")
    mysqlstaging.sync(my, source, target, work, timeout=300)
    sql = (
        "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM "
        "information_schema.SCHEMATA WHERE SCHEMA_NAME = DATABASE()"
    )
    assert run_sql(target, sql).split() == ["utf8mb4", "utf8mb4_unicode_ci"]


def test_check_blocks_on_a_database_default_collation_convox_lacks(
    servers: Pair, my: MysqlAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The staging database is created with Heroku's default collation and the swap gives it to
    the Convox database: one the Convox server lacks (MySQL 8's utf8mb4_0900_ai_ci on the
    mysql:5.7.23 image) fails the first copy. check-mysql named only the tables' and columns'
    collations. The Convox server here is the same MariaDB, so it is told to lack one."""
    source, target = clear_db(servers.heroku, rows=5), convox_db(servers.convox)
    run_sql(source, "ALTER DATABASE CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_520_ci")
    real_query = MysqlAdapter.query

    def lacking(
        self: MysqlAdapter, conn: MyConn, sql: str, timeout: float = 300
    ) -> list[list[str]]:
        rows = real_query(self, conn, sql, timeout)
        if conn == target and "information_schema.COLLATIONS" in sql:
            rows = [r for r in rows if r[0] != "utf8mb4_unicode_520_ci"]
        return rows

    monkeypatch.setattr(MysqlAdapter, "query", lacking)
    report = mysqlcheck.inspect(my, source, target)
    assert any("utf8mb4_unicode_520_ci" in b for b in report.blockers), report.blockers
