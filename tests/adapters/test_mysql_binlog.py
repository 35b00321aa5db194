"""Error 1419 before the window (cutover/adapters/mysqlcheck.py binlog_blocker): a Convox server
with binary logging on, log_bin_trust_function_creators=0 and a user without SUPER (Amazon RDS's
default: binary logging comes with automated backups; its master user has no SUPER) cannot take
Heroku's triggers and stored functions. check-mysql must say so, naming the fix, instead of the
copy failing at the objects' load.

On a real MariaDB started as RDS runs (--log-bin --log-bin-trust-function-creators=0; the
sandbox's default turns the latter on, cutover/sandbox/mysqlbox.py), and on faked query results
for each combination of the three facts."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.mysqlservers import clear_db, convox_db, run_sql

from cutover.adapters import mysqlcheck, mysqlstaging, mysqlverify
from cutover.adapters.mysql import MyConn, MysqlAdapter
from cutover.errors import CutoverError
from cutover.runner import Runner
from cutover.sandbox import mysqlbox
from cutover.sandbox.convox_fake.provision_mysql import RDS_MASTER_PRIVILEGES
from cutover.sandbox.mysqlbox import MysqlBox
from cutover.secrets import SecretMasker

RDS_LIKE = ("--log-bin", "--log-bin-trust-function-creators=0")
OBJECTS = ["trigger count_orders (b1@%)", "function order_label (b1@%)"]


class Rows:
    """MysqlAdapter.row's answer to BINLOG_SQL: log_bin, trust, CURRENT_USER(), SUPER count."""

    def __init__(self, *row: str) -> None:
        self.answer, self.asked = list(row), 0

    def row(self, conn: MyConn, sql: str, width: int, what: str) -> list[str]:
        assert sql == mysqlcheck.BINLOG_SQL and width == 4
        self.asked += 1
        return self.answer


@pytest.mark.parametrize(
    ("row", "blocked"),
    [
        (("1", "0", "master@%", "0"), True),  # RDS: binlog on, not trusted, no SUPER
        (("0", "0", "master@%", "0"), False),  # binary logging off (Convox's mysql:5.7 image)
        (("1", "1", "master@%", "0"), False),  # the parameter group's fix
        (("1", "0", "root@%", "1"), False),  # a user with SUPER (Convox's root)
    ],
)
def test_the_blocker_needs_all_three_facts(row: tuple[str, ...], blocked: bool) -> None:
    fake = Rows(*row)
    conn = MyConn("127.0.0.1", 1, "master", "app", "pw")
    found = mysqlcheck.binlog_blocker(fake, conn, OBJECTS)  # type: ignore[arg-type]
    assert (found is not None) == blocked
    if found:
        assert "trigger count_orders, function order_label" in found, found
        assert "error 1419" in found
        assert "master@%" in found


def test_no_trigger_or_function_no_question_asked() -> None:
    fake = Rows("1", "0", "master@%", "0")
    conn = MyConn("127.0.0.1", 1, "master", "app", "pw")
    assert mysqlcheck.binlog_blocker(fake, conn, []) is None  # type: ignore[arg-type]
    assert fake.asked == 0


@pytest.fixture(scope="module")
def rds_like(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MysqlBox]:
    box = mysqlbox.init_box(tmp_path_factory.mktemp("binlog"))
    mysqlbox.start(box, extra=RDS_LIKE)
    try:
        yield box
    finally:
        mysqlbox.stop(box)


@pytest.fixture
def my() -> MysqlAdapter:
    masker = SecretMasker()
    return MysqlAdapter(Runner(masker), masker)


def _trust(box: MysqlBox, on: bool) -> None:
    mysqlbox.admin(box, f"SET GLOBAL log_bin_trust_function_creators = {int(on)}")


def _refused_then_loaded_with_trust(
    my: MysqlAdapter,
    ends: tuple[MyConn, MyConn],
    rds_like: MysqlBox,
    fresh_target: Callable[[MysqlBox], MyConn],
    code: str,
    tmp_path: Path,
) -> None:
    """The copy into ``ends[1]`` fails with MySQL error ``code``; with the fix the blocker names
    (log_bin_trust_function_creators on: an RDS parameter group, here SET GLOBAL) check-mysql
    has no blocker and a copy into a fresh database loads and verifies."""
    source, target = ends
    work = tmp_path / "work"
    work.mkdir(mode=0o700)
    with pytest.raises(CutoverError) as failed:
        mysqlstaging.sync(my, source, target, work, timeout=300)
    assert code in f"{failed.value} {failed.value.details}"
    _trust(rds_like, True)
    try:
        assert mysqlcheck.inspect(my, source, target).blockers == []
        fresh = fresh_target(rds_like)
        mysqlstaging.sync(my, source, fresh, work, timeout=300)
        assert mysqlverify.verify(my, source, fresh).mismatches == []
    finally:
        _trust(rds_like, False)


def _master(box: MysqlBox) -> MyConn:
    """The RDS master user (convox_fake/provision_mysql.py: no SUPER) on a fresh database."""
    admin = convox_db(box)
    user, password = f"master_{admin.database[-8:]}", "pw:" + admin.database
    mysqlbox.admin(
        box,
        f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}';\n"
        f"GRANT {RDS_MASTER_PRIVILEGES} ON *.* TO '{user}'@'%' WITH GRANT OPTION;",
    )
    return MyConn("127.0.0.1", box.port, user, admin.database, password)


@pytest.mark.slow
def test_an_rds_like_server_is_refused_before_the_copy_naming_the_fix(
    rds_like: MysqlBox, my: MysqlAdapter, tmp_path: Path
) -> None:
    _trust(rds_like, True)  # the "Heroku" database is seeded with its trigger and function
    try:
        source = clear_db(rds_like, rows=10)
    finally:
        _trust(rds_like, False)
    target = _master(rds_like)
    assert run_sql(target, "SELECT @@log_bin, @@log_bin_trust_function_creators").split() == [
        "1",
        "0",
    ]
    report = mysqlcheck.inspect(my, source, target)
    [blocker] = [b for b in report.blockers if "1419" in b]
    assert "count_orders" in blocker and "order_label" in blocker, blocker
    assert "big_spenders" not in blocker  # a view is not concerned
    assert target.user in blocker
    assert any("DB parameter group" in r for r in report.resolutions), report.resolutions
    assert any("log_bin_trust_function_creators=1" in r for r in report.resolutions)
    # the premise, measured: that user cannot create a function or a trigger (error 1419) ...
    for sql in (
        "CREATE FUNCTION f1() RETURNS INT DETERMINISTIC RETURN 1",
        "CREATE TABLE t1 (id INT); CREATE TRIGGER tr1 BEFORE INSERT ON t1 FOR EACH ROW SET @x = 1",
    ):
        with pytest.raises(CutoverError) as refused:
            my.execute(target, sql)
        assert "1419" in f"{refused.value} {refused.value.details}", refused.value.details
    # ... but may create a procedure (the manual: the conditions do not apply to procedures)
    my.execute(target, "CREATE PROCEDURE p1() SELECT 1")
    # and the copy itself fails where the check said it would
    _refused_then_loaded_with_trust(my, (source, target), rds_like, _master, "1419", tmp_path)
    # a user with SUPER (Convox's own mysql resource logs in as root) is not concerned
    assert mysqlcheck.inspect(my, source, convox_db(rds_like)).blockers == []
    # nor a database without triggers or functions (dropping them needs SUPER too, measured)
    mysqlbox.admin(
        rds_like, "DROP TRIGGER count_orders; DROP FUNCTION order_label", source.database
    )
    assert mysqlcheck.inspect(my, source, target).blockers == []


@pytest.mark.parametrize(
    ("row", "blocked"),
    [
        (("1", "0", "root@%", "1"), True),  # SUPER does not lift 1418 (Convox's mysql 8.0)
        (("1", "0", "master@%", "0"), True),
        (("0", "0", "root@%", "1"), False),  # binary logging off
        (("1", "1", "root@%", "1"), False),  # log_bin_trust_function_creators=1
    ],
)
def test_error_1418_needs_binary_logging_and_no_trust_whatever_super_says(
    row: tuple[str, ...], blocked: bool
) -> None:
    fake = Rows(*row)
    conn = MyConn("127.0.0.1", 1, "root", "app", "pw")
    found = mysqlcheck.unsafe_functions_blocker(fake, conn, ["legacy_nd"])  # type: ignore[arg-type]
    assert (found is not None) == blocked
    if found:
        assert "legacy_nd" in found and "error 1418" in found, found
    assert mysqlcheck.unsafe_functions_blocker(fake, conn, []) is None  # type: ignore[arg-type]


@pytest.mark.slow
def test_a_function_not_declared_deterministic_is_refused_before_the_copy_even_for_root(
    rds_like: MysqlBox, my: MysqlAdapter, tmp_path: Path
) -> None:
    """The reviewer's reproduction: binary logging on, trust 0, target user root (SUPER), a
    Heroku function declared none of DETERMINISTIC, NO SQL, READS SQL DATA (MySQL's default)."""
    _trust(rds_like, True)
    try:
        source = clear_db(rds_like, rows=5)
        run_sql(source, "CREATE FUNCTION legacy_total() RETURNS INT READS SQL DATA RETURN 1")
        run_sql(source, "CREATE FUNCTION legacy_nd() RETURNS INT RETURN 1")
        run_sql(source, "CREATE FUNCTION legacy_nd_w() RETURNS INT MODIFIES SQL DATA RETURN 1")
    finally:
        _trust(rds_like, False)
    target = convox_db(rds_like)
    assert target.user == "root"
    report = mysqlcheck.inspect(my, source, target)
    [blocker] = report.blockers
    assert "1418" in blocker and "legacy_nd, legacy_nd_w" in blocker, blocker
    assert "legacy_total" not in blocker and "order_label" not in blocker  # declared safe
    assert report.resolutions == [mysqlcheck.UNSAFE_FUNCTIONS_RESOLUTION]
    assert "DETERMINISTIC" in report.resolutions[0]
    assert "log_bin_trust_function_creators=1" in report.resolutions[0]
    # the premise, measured: the copy fails there with 1418
    _refused_then_loaded_with_trust(my, (source, target), rds_like, convox_db, "1418", tmp_path)
