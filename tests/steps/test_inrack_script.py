"""The in-rack copy script itself, run by ``sh`` with stand-in PostgreSQL tools on PATH.

Fast and exact where the real-PostgreSQL tests cannot be: what reaches pg_dump's and
pg_restore's environment and argv byte for byte (hostile passwords and names), which stage a
failure is blamed on, and the ``--use-list`` the restore gets. The stand-in tools follow
pg_restore.c's order (the archive's TOC is read, then the ``--use-list`` file is opened, then
the restore connects) and ``pg_restore -l -f FILE`` writes the list to FILE.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from cutover.steps.inrack_script import MARKER, build_script, stdin_payload

PG_DUMP = r"""#!/bin/sh
printf '%s\n' "$0" "$@" >> "$LOGDIR/argv"
for v in PGHOST PGPORT PGUSER PGPASSWORD PGDATABASE PGSSLMODE PGOPTIONS PGSSLROOTCERT; do
  eval "printf '%s' \"\${$v-<unset>}\"" > "$LOGDIR/dump.$v"
done
[ -z "${DUMP_ERROR:-}" ] || { echo "pg_dump: error: $DUMP_ERROR" >&2; exit 1; }
head -c "${DUMP_BYTES:-1000}" /dev/zero || exit $?  # 141 when the reader is gone
exit "${DUMP_EXIT:-0}"
"""

PG_RESTORE = r"""#!/bin/sh
printf '%s\n' "$0" "$@" >> "$LOGDIR/argv"
list="" out="" prev=""
for a in "$@"; do
  case "$prev" in --use-list) list="$a" ;; -f) out="$a" ;; esac
  prev="$a"
done
head -c 100 > /dev/null   # the archive's header and TOC
case " $* " in
  *" -l "*) printf '%s\n' "$TOC" > "$out"; exit 0 ;;
esac
for v in PGHOST PGPORT PGUSER PGPASSWORD PGDATABASE PGSSLMODE PGOPTIONS PGSSLROOTCERT; do
  eval "printf '%s' \"\${$v-<unset>}\"" > "$LOGDIR/restore.$v"
done
cat "$list" > "$LOGDIR/use-list"
if [ -n "${RESTORE_FAIL:-}" ]; then
  echo 'pg_restore: error: could not execute query: ERROR:  relation "t" already exists'
  exit 1
fi
cat > /dev/null
echo 'pg_restore: creating TABLE "public.t"' >&2
i=0
while [ "$i" -lt "${LO_COUNT:-0}" ]; do
  i=$((i + 1))
  echo "pg_restore: creating BLOB \"$i\"" >&2
  echo "pg_restore: restoring large object with OID $i" >&2
done
[ "${LO_COUNT:-0}" = 0 ] || echo "pg_restore: restored $LO_COUNT large objects" >&2
"""

PSQL = r"""#!/bin/sh
printf '%s\n' "$0" "$@" >> "$LOGDIR/argv"
case "$*" in *"'pg_stat_statements'"*) echo f ;; *) echo t ;; esac
"""

TOC = "\n".join(
    [
        ";",
        "; Archive created at 2026-11-30 10:00:00 UTC",
        "215; 1259 16390 TABLE public t app",
        "2; 3079 16385 EXTENSION - pg_stat_statements ",
        "3200; 0 0 COMMENT - EXTENSION pg_stat_statements ",
        "4; 3079 16400 EXTENSION - uuid-ossp ",
        '3201; 0 0 COMMENT - EXTENSION "uuid-ossp" ',
        "3190; 0 16390 TABLE DATA public t app",
    ]
)


def run_script(
    tmp_path: Path,
    payload: str,
    *,
    skip: list[str] | None = None,
    target: str = "app__cutover_next",
    **env: str,
) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, text in (("pg_dump", PG_DUMP), ("pg_restore", PG_RESTORE), ("psql", PSQL)):
        (bin_dir / name).write_text(text, encoding="utf-8")
        (bin_dir / name).chmod(0o755)
    script = build_script("MAIN_DB", target, skip or [])
    full_env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "LOGDIR": str(tmp_path),
        "TOC": TOC,
        "MAIN_DB_HOST": "resource-main-db.rack-demo.svc",
        "MAIN_DB_PORT": "5432",
        "MAIN_DB_USER": "app",
        "MAIN_DB_PASS": "target 'pass' $HOME",
        **env,
    }
    return subprocess.run(
        ["sh", "-c", script],
        input=payload,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=120,
        check=False,
    )


HOSTILE = [
    ("p'a\"s $HOME `id` \\ ", "us er$", 'd\'b "x"'),
    ("  $(touch pwned); lead and trail  ", "u;rm -rf /", "db\\n"),
    ("*", "-U", "--help"),
]


@pytest.mark.parametrize(("password", "user", "dbname"), HOSTILE)
def test_hostile_connection_fields_reach_pg_dump_exactly_and_never_an_argv(
    tmp_path: Path, password: str, user: str, dbname: str
) -> None:
    payload = stdin_payload("db.heroku.example", 5433, user, password, dbname, "require")
    result = run_script(tmp_path, payload, skip=["pg_stat_statements"])
    assert result.returncode == 0, result.stdout + result.stderr
    seen = {v: (tmp_path / f"dump.{v}").read_text() for v in ("PGPASSWORD", "PGUSER")}
    assert seen == {"PGPASSWORD": password, "PGUSER": user}
    assert (tmp_path / "dump.PGDATABASE").read_text() == dbname
    assert (tmp_path / "dump.PGPORT").read_text() == "5433"
    assert (tmp_path / "dump.PGSSLMODE").read_text() == "require"
    # The restore gets the resource's credentials and the named database, not Heroku's.
    restore = {v: (tmp_path / f"restore.{v}").read_text() for v in ("PGPASSWORD", "PGDATABASE")}
    assert restore == {"PGPASSWORD": "target 'pass' $HOME", "PGDATABASE": "app__cutover_next"}
    assert (tmp_path / "restore.PGSSLMODE").read_text() == "<unset>"
    argv = (tmp_path / "argv").read_text()
    assert password.strip() not in argv and "target 'pass'" not in argv
    assert not (tmp_path / "pwned").exists()
    assert f"{MARKER} done bytes=1000 objects=" in result.stdout


def test_a_restore_that_stops_early_is_blamed_not_the_dump_it_cut_off(tmp_path: Path) -> None:
    # pg_dump writes far more than the pipes hold; the restore stops after the TOC, so pg_dump
    # (through tee) dies of SIGPIPE (exit 141). The cause is the restore's error.
    payload = stdin_payload("h", 5432, "u", "pw", "d", "require")
    result = run_script(tmp_path, payload, DUMP_BYTES="20000000", RESTORE_FAIL="1")
    assert f"{MARKER} failed restore 1" in result.stdout, result.stdout
    assert f"{MARKER} failed dump" not in result.stdout
    assert result.returncode == 1


def test_a_dump_that_fails_is_blamed_on_the_dump(tmp_path: Path) -> None:
    payload = stdin_payload("h", 5432, "u", "pw", "d", "require")
    result = run_script(tmp_path, payload, DUMP_EXIT="3")
    assert f"{MARKER} failed dump 3" in result.stdout, result.stdout
    assert result.returncode == 3


def test_skipped_extensions_entries_are_commented_out_of_the_use_list(tmp_path: Path) -> None:
    # psql (the target check) says the role cannot create pg_stat_statements but can create
    # uuid-ossp: only the former's EXTENSION and COMMENT entries are left out, order kept.
    payload = stdin_payload("h", 5432, "u", "pw", "d", "require")
    result = run_script(tmp_path, payload, skip=["pg_stat_statements", "uuid-ossp"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{MARKER} skip-extension pg_stat_statements" in result.stdout
    assert "skip-extension uuid-ossp" not in result.stdout
    used = (tmp_path / "use-list").read_text().splitlines()
    assert used == [
        ";",
        "; Archive created at 2026-11-30 10:00:00 UTC",
        "215; 1259 16390 TABLE public t app",
        ";2; 3079 16385 EXTENSION - pg_stat_statements ",
        ";3200; 0 0 COMMENT - EXTENSION pg_stat_statements ",
        "4; 3079 16400 EXTENSION - uuid-ossp ",
        '3201; 0 0 COMMENT - EXTENSION "uuid-ossp" ',
        "3190; 0 16390 TABLE DATA public t app",
    ]
    assert f"{MARKER} objects 4" in result.stdout
    assert f"{MARKER} done bytes=1000 objects=4 " in result.stdout


def test_missing_input_lines_end_the_script_at_once(tmp_path: Path) -> None:
    # Fewer than six lines: the rack never closes stdin, but `read` fails here on end of input.
    result = run_script(tmp_path, "h\n5432\n")
    assert result.returncode == 64
    assert f"{MARKER} failed input 64" in result.stdout
    assert not (tmp_path / "argv").exists()


def test_large_objects_are_counted_in_the_rack_not_one_line_each(tmp_path: Path) -> None:
    # pg_restore --verbose prints two lines per large object (pg_backup_archiver.c: "creating
    # BLOB" for its TOC entry, "restoring large object with OID"): millions of them would flood
    # cutover's memory. The script sends a running count of those TOC entries instead.
    payload = stdin_payload("h", 5432, "u", "pw", "d", "require")
    result = run_script(tmp_path, payload, LO_COUNT="25000")
    assert result.returncode == 0, result.stdout[-2000:]
    lines = result.stdout.splitlines()
    assert len(lines) < 60, lines[:10]
    assert 'pg_restore: creating TABLE "public.t"' in lines
    assert "pg_restore: restored 25000 large objects" in lines
    counts = [int(ln.split()[-1]) for ln in lines if ln.startswith(f"{MARKER} entries ")]
    assert counts and counts == sorted(counts) and counts[-1] == 25000


def test_everything_the_script_and_its_tools_print_comes_back_on_stdout(tmp_path: Path) -> None:
    # provider/k8s/process.go ProcessExec streams with Tty true whenever stdin is forwarded,
    # and client-go then opens no stderr stream (remotecommand/v2.go: `p.Stderr != nil &&
    # !p.Tty`): only stdout is sure to come back from the rack, so the script sends all there.
    payload = stdin_payload("h", 5432, "u", "pw", "d", "require")
    result = run_script(tmp_path, payload, DUMP_ERROR="connection to server failed")
    assert result.stderr == ""
    assert "pg_dump: error: connection to server failed" in result.stdout
    assert f"{MARKER} failed dump 1" in result.stdout


def test_the_apps_own_libpq_variables_do_not_reach_the_copy(tmp_path: Path) -> None:
    # The pod gets the app's whole env (provider/k8s/process.go: the release's environment):
    # an app's PGOPTIONS statement_timeout or PGSSLROOTCERT must not steer pg_dump/pg_restore.
    payload = stdin_payload("h", 5432, "u", "pw", "d", "require")
    result = run_script(
        tmp_path,
        payload,
        PGOPTIONS="-c statement_timeout=5000",
        PGSSLROOTCERT="/app/certs/none.crt",
        PGSSLMODE="disable",
    )
    assert result.returncode == 0, result.stdout
    for tool in ("dump", "restore"):
        assert (tmp_path / f"{tool}.PGOPTIONS").read_text() == "<unset>"
        assert (tmp_path / f"{tool}.PGSSLROOTCERT").read_text() == "<unset>"
    assert (tmp_path / "dump.PGSSLMODE").read_text() == "require"
