"""MariaDB servers for the MySQL tests (issue 14): one "Heroku ClearDB", one "Convox mysql"."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cutover.adapters.mysql import MyConn
from cutover.sandbox import mysqlbox, mysqlseed
from cutover.sandbox.mysqlbox import MysqlBox


@dataclass(frozen=True)
class Pair:
    heroku: MysqlBox
    convox: MysqlBox


@contextmanager
def two_servers(root: Path) -> Iterator[Pair]:
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    boxes = [mysqlbox.init_box(root / "heroku"), mysqlbox.init_box(root / "convox")]
    try:
        for box in boxes:
            mysqlbox.start(box)
        yield Pair(*boxes)
    finally:
        for box in boxes:
            mysqlbox.stop(box)


def run_sql(conn: MyConn, sql: str) -> str:
    """``sql`` through the mariadb client as ``conn``'s user (password by MYSQL_PWD)."""
    done = subprocess.run(
        [
            "mariadb",
            "--default-character-set=utf8mb4",
            "--protocol=tcp",
            "-h",
            conn.host,
            "-P",
            str(conn.port),
            "-u",
            conn.user,
            "-D",
            conn.database,
            "--batch",
            "--skip-column-names",
        ],
        input=sql,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "MYSQL_PWD": conn.password},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def clear_db(box: MysqlBox, rows: int = 2000) -> MyConn:
    """A ClearDB-like database: user b<hex> with rights on heroku_<hex> only, seeded."""
    suffix = secrets.token_hex(6)
    conn = MyConn(
        "127.0.0.1", box.port, f"b{suffix}", f"heroku_{suffix}", "pw:" + secrets.token_urlsafe(10)
    )
    mysqlbox.create_user_and_db(box, conn.user, conn.password, conn.database)
    run_sql(conn, mysqlseed.seed_sql(rows))
    return conn


def convox_db(box: MysqlBox) -> MyConn:
    """The Convox resource's login (root, mysql.yml.tmpl) on a fresh empty database."""
    name = f"app_{secrets.token_hex(4)}"
    mysqlbox.admin(box, f"CREATE DATABASE `{name}`")
    return MyConn("127.0.0.1", box.port, "root", name, box.admin_password)
