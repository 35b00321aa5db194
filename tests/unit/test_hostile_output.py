"""Hostile CLI output (issue 15): what the heroku, convox and PostgreSQL tools may print that
cutover must not trust: truncated or non-JSON output, JSON of the wrong shape, unexpected fields
(accepted), error text with exit 0, gigabytes of output, and terminal escape sequences.

Each case runs the real :class:`~cutover.runner.Runner` against a stand-in on a PATH of chosen
tools (tests/unit/hostile_tools.py) that prints what the test says the tool printed, and checks:
a clear error naming the command and what was wrong, no traceback, bounded memory; the cases
about what the operator sees run the real CLI (exit code, no raw control characters, the state
file still valid).

Formats and exit codes of the real tools, from their sources:

* heroku 11.10.0: ``config --json`` prints the ``GET /apps/{app}/config-vars`` object as is
  (node_modules/heroku/dist/commands/config/index.js, ``hux.styledJSON(config)``); ``addons``,
  ``ps``, ``domains``, ``apps:info`` with ``--json`` print the API's objects (dist/commands/
  addons/index.js, ps/index.js, domains/index.js, apps/info.js); an error exits 2 by default
  (node_modules/@oclif/core/lib/errors/errors/cli.js: ``exitCodes.default ?? 2``).
* convox (9e02452): a failed command prints ``ERROR: <message>`` on STDERR and exits 1
  (vendor/github.com/convox/stdcli/engine.go ``ExecuteContext``: ``e.Writer.Errorf``; writer.go
  ``Error`` writes to ``w.Stderr``); so ``ERROR:`` on stdout with exit 0 is not the CLI's own
  shape: a wrapper, a proxy or a broken rack answering in its place, which cutover must refuse
  rather than read as an empty table. Tables: stdcli table.go, two-space gutters.
* psql ``-At -F '\\t'``: one row a line, fields split by a tab.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from hostile_tools import HostileTools
from rich.console import Console

from cutover.adapters.convox import ConvoxAdapter
from cutover.adapters.heroku import HerokuAdapter
from cutover.adapters.mysql import MyConn, MysqlAdapter, number
from cutover.adapters.mysqlverify import check_table
from cutover.adapters.postgres import ConnInfo, PostgresAdapter
from cutover.engine.audit import AuditLog
from cutover.errors import CommandError, CutoverError, UnexpectedOutput
from cutover.runcapture import BACKGROUND_KEEP, TAIL_LINE_CHARS, Chunks
from cutover.runner import Runner
from cutover.secrets import SecretMasker
from cutover.state import PlaybookRef, RunState, Status, StepState
from cutover.ui import Ui, status_table, visible

APP = "myapp"
RACK = "prod"
SECRET = "sk_live_hostile_7f3a9c2e1b"
# Terminal controls a hostile name or log line may carry: CSI (clear screen, cursor home), an
# OSC 8 hyperlink, a carriage return that overwrites the line, BEL, the 8-bit CSI (U+009B) and
# OSC (U+009D), and a right-to-left override.
ESCAPES = (
    "\x1b[2J\x1b[H",
    "\x1b]8;;https://evil.test/\x07click\x1b]8;;\x07",
    "\rOK   ",
    "\x07",
    "\x9b31m",
    "\x9d0;title\x9c",
    "\u202etxt.exe",
)
RAW_CONTROLS = ("\x1b", "\r", "\x07", "\x9b", "\x9d", "\x9c", "\u202e")


@pytest.fixture
def tools(tmp_path: Path) -> HostileTools:
    return HostileTools(tmp_path)


def runner_for(tools: HostileTools, masker: SecretMasker | None = None) -> Runner:
    return Runner(
        masker or SecretMasker(),
        base_env=tools.env(),
        path_prefix=[str(tools.bin)],
        _sleep=lambda _s: None,
    )


def heroku(tools: HostileTools, tmp_path: Path, masker: SecretMasker | None = None) -> Any:
    masker = masker or SecretMasker()
    return HerokuAdapter(runner_for(tools, masker), masker, APP, tmp_path / "work")


def convox(tools: HostileTools) -> ConvoxAdapter:
    masker = SecretMasker()
    return ConvoxAdapter(runner_for(tools, masker), masker, APP, RACK)


def clean(exc: BaseException) -> str:
    """An error cutover explains: a CutoverError without a chained cause; returns its text."""
    assert isinstance(exc, CutoverError), repr(exc)
    assert exc.__cause__ is None or isinstance(exc.__cause__, CutoverError)
    return str(exc)


# -- 1. heroku: truncated, non-JSON, wrong shapes, odd numbers, deep nesting ---------------------

HEROKU_BAD: list[tuple[str, str, str, str]] = [
    # (adapter method, the command it runs, stdout, what the error must say)
    ("config", "config --json", '{"SECRET_KEY": "' + SECRET, "not JSON (Unterminated string"),
    ("config", "config --json", "<html><body>502 Bad Gateway</body></html>", "not JSON"),
    ("config", "config --json", "", "printed nothing"),
    ("config", "config --json", "null", "did not return an object (it printed null)"),
    ("config", "config --json", '{"A": ["x"]}', "the value of 'A' is a list, expected a string"),
    ("config", "config --json", '{"A": 1' + "0" * 5000 + "}", "cannot read"),
    ("config", "config --json", "[" * 100_000 + "]" * 100_000, "nested too deep"),
    ("app_info", "apps:info --json", '{"app": null}', "did not return {app: {...}}"),
    ("app_info", "apps:info --json", '["myapp"]', "it printed a list"),
    ("addons", "addons --json", "[1, 2]", "[0] is a number, expected an object"),
    ("addons", "addons --json", '[{"addon_service": "redis"}]', "[0].addon_service is a string"),
    ("addons", "addons --json", '[{"config_vars": ["A", 7]}]', "[0].config_vars[1] is a number"),
    ("addons", "addons --json", '[{"attachments": ["x"]}]', "[0].attachments[0] is a string"),
    ("addons", "addons --json", '[{"addon_service": {"name": 5}}]', "addon_service.name is a"),
    ("dynos", "ps --json", '[{"type": true}]', "[0].type is a boolean, expected a string"),
    ("domains", "domains --json", '{"hostname": "x"}', "did not return a list"),
    ("domains", "domains --json", '[{"hostname": ["a"]}]', "[0].hostname is a list"),
]


@pytest.mark.parametrize(
    ("method", "command", "stdout", "says"),
    HEROKU_BAD,
    ids=[f"{m}-{i}" for i, (m, *_rest) in enumerate(HEROKU_BAD)],
)
def test_hostile_heroku_json_is_refused_naming_the_command(
    tools: HostileTools, tmp_path: Path, method: str, command: str, stdout: str, says: str
) -> None:
    tools.answer({f"heroku {command}": {"out": stdout}})
    with pytest.raises(UnexpectedOutput) as caught:
        getattr(heroku(tools, tmp_path), method)()
    text = clean(caught.value)
    assert f"heroku {command} -a {APP}" in text
    assert says in text
    assert SECRET not in text  # no excerpt of config output, which holds secrets
    assert len(text) < 2000
    assert len(tools.calls()) == 1  # exit 0 with garbage is not a transient failure


def test_unexpected_fields_are_accepted(tools: HostileTools, tmp_path: Path) -> None:
    """A newer API may add any field anywhere: extra keys in items, nested objects and the top
    level are ignored, and the fields cutover reads still come through."""
    tools.answer(
        {
            "heroku apps:info": {"out": '{"app": {"name": "myapp", "new": [1]}, "extra": {}}'},
            "heroku addons": {
                "out": '[{"addon_service": {"name": "heroku-redis", "x": 1}, "billed_price": '
                '{"cents": 0}, "config_vars": ["REDIS_URL"], "attachments": [{"name": "R"}]}]'
            },
            "heroku ps": {"out": '[{"type": "web", "name": "web.1", "new_field": null}]'},
            "heroku domains": {"out": '[{"hostname": "a.test", "kind": "custom", "sni": {}}]'},
        }
    )
    adapter = heroku(tools, tmp_path)
    assert adapter.app_info()["app"]["name"] == "myapp"
    assert adapter.addons()[0]["config_vars"] == ["REDIS_URL"]
    assert adapter.dynos()[0]["type"] == "web"
    assert adapter.domains()[0]["hostname"] == "a.test"


def test_a_config_refused_for_its_shape_still_masks_its_string_values(
    tools: HostileTools, tmp_path: Path
) -> None:
    """``config --json`` with one bad value: the other values are secrets already printed by
    the tool; they are registered with the masker before the output is refused."""
    masker = SecretMasker()
    tools.answer({"heroku config": {"out": json.dumps({"KEY": SECRET, "N": 5})}})
    with pytest.raises(UnexpectedOutput, match="the value of 'N' is a number"):
        heroku(tools, tmp_path, masker).config()
    assert SECRET not in masker.mask(f"leaked {SECRET}")


def test_heroku_error_text_with_exit_0_is_not_read_as_data(
    tools: HostileTools, tmp_path: Path
) -> None:
    """An oclif warning/error on stderr with exit 0 and nothing on stdout (@oclif/core prints
    `` ›   Error:`` lines on stderr): `maintenance` and `ps:scale` refuse it by name."""
    tools.answer(
        {
            "heroku maintenance": {"err": " ›   Error: Couldn't find that app.\n"},
            "heroku ps:scale": {"out": "ERROR: no such app\n"},
        }
    )
    adapter = heroku(tools, tmp_path)
    with pytest.raises(UnexpectedOutput, match="heroku maintenance printed ''"):
        adapter.maintenance()
    with pytest.raises(UnexpectedOutput, match="unexpected formation item from heroku ps:scale"):
        adapter.formation()


# -- 2. convox: error text with exit 0, extra columns, wrong output -----------------------------

CONVOX_TABLES = [
    ("builds", "builds", "ID, STATUS, RELEASE"),
    ("releases", "releases", "ID, STATUS, BUILD"),
    ("services", "services", "SERVICE, DOMAIN"),
    ("scale_table", "scale", "SERVICE, DESIRED, RUNNING"),
    ("processes", "ps", "ID, SERVICE, STATUS, COMMAND"),
]


@pytest.mark.parametrize(("method", "command", "columns"), CONVOX_TABLES)
def test_convox_error_text_on_stdout_with_exit_0_is_refused_by_command(
    tools: HostileTools, method: str, command: str, columns: str
) -> None:
    tools.answer({f"convox {command}": {"out": "ERROR: rack unreachable\n"}})
    with pytest.raises(UnexpectedOutput) as caught:
        getattr(convox(tools), method)()
    text = clean(caught.value)
    assert f"convox {command} -a {APP} -r {RACK} printed no table with columns {columns}" in text
    assert "ERROR: rack unreachable" in text  # what it printed instead (no secret in a table)


def test_convox_tables_with_unexpected_columns_and_rows_are_read(tools: HostileTools) -> None:
    # pkg/cli/releases.go prints ID STATUS BUILD CREATED DESCRIPTION; a newer rack may add more.
    tools.answer(
        {
            "convox releases": {
                "out": "ID         STATUS  BUILD      CREATED      DESCRIPTION  NEW COLUMN\n"
                "RABCDEFGH  active  BABCDEFGH  2 hours ago  deploy       whatever\n"
            }
        }
    )
    assert convox(tools).active_release() == "RABCDEFGH"


def test_convox_rack_and_release_outputs_without_their_fields_are_refused(
    tools: HostileTools,
) -> None:
    tools.answer(
        {
            "convox rack": {"out": "<html>gateway</html>\n"},
            "convox env set": {"out": "Setting A... OK\n", "stdin": True},
            "convox resources url": {"out": "ERROR: no such resource\n"},
        }
    )
    adapter = convox(tools)
    with pytest.raises(UnexpectedOutput, match=f"convox rack -r {RACK} printed no Name row"):
        adapter.rack_info()
    with pytest.raises(UnexpectedOutput, match=r"convox env set --id .* printed no release id"):
        adapter.env_set({"A": "1"})
    with pytest.raises(UnexpectedOutput, match="convox resources url db printed no URL"):
        adapter.resource_url("db")


# -- 3. psql outputs and the URLs the tools print ------------------------------------------


@pytest.mark.parametrize(
    ("stdout", "says"),
    [
        ("", "psql returned no server_version_num"),
        ("ERROR:  relation does not exist\n", "got 'ERROR:  relation does not exist'"),
        ("-160004\n", "got '-160004'"),
        ("\u0661\u0666\u0660\u0660\u0660\u0664\n", "got"),  # Arabic-Indic digits: int() takes them
        ("1" * 5000 + "\n", "got '1111"),
    ],
)
def test_psql_server_version_garbage_is_refused(
    tools: HostileTools, stdout: str, says: str
) -> None:
    tools.answer({"psql": {"out": stdout, "stdin": True}})
    adapter = PostgresAdapter(runner_for(tools), SecretMasker())
    conn = ConnInfo("127.0.0.1", 5432, "u", "d", "pw")
    with pytest.raises(UnexpectedOutput, match="psql returned no server_version_num") as caught:
        adapter.server_major(conn)
    assert says in clean(caught.value)


def test_psql_fingerprint_row_with_a_non_number_count_is_refused(tools: HostileTools) -> None:
    # Both calls (the table list, then the fingerprints) get this answer: the table list reads
    # the first field, the fingerprint row has a count that is not a number.
    tools.answer({"psql": {"out": "public.t\tmany\tabc\n", "stdin": True}})
    adapter = PostgresAdapter(runner_for(tools), SecretMasker())
    with pytest.raises(UnexpectedOutput, match="unexpected fingerprint row from psql"):
        adapter.fingerprints(ConnInfo("127.0.0.1", 5432, "u", "d", "pw"))


@pytest.mark.parametrize(
    "url",
    [
        f"postgres://u:{SECRET}@db.test:99999/d",  # port out of range
        f"postgres://u:{SECRET}@db.test:5x32/d",  # not a number
    ],
)
def test_a_database_url_with_a_bad_port_is_refused_without_showing_it(url: str) -> None:
    # The URL comes from `heroku pg:credentials:url` or `convox resources url` output.
    with pytest.raises(CutoverError, match="its port is not a number in 0-65535") as caught:
        ConnInfo.from_url(url)
    assert SECRET not in clean(caught.value)


MYSQL = MyConn("127.0.0.1", 3306, "u", "app", "pw")


@pytest.mark.parametrize(
    ("stdout", "says"),
    [
        ("", "returned no row count of t (expected 1 fields, got nothing)"),
        ("ERROR 1146 (42S02)\tno table\n", "columns of t (expected 7 fields, got ['ERROR 1146"),
        ("id\t1\tint\tNO\tNULL\t\t\n", "returned no row count of t (expected 1 fields"),
    ],
)
def test_mysql_rows_of_the_wrong_width_are_refused(
    tools: HostileTools, stdout: str, says: str
) -> None:
    """``mysql --batch --skip-column-names``: one row a line, tab-separated (the client's batch
    mode). check_table reads the columns (7 fields), the indexes, then the count (1 field):
    each answered with the same text, which is wrong for at least one of them. Before: an
    IndexError or a ValueError from unpacking."""
    answer = {"out": stdout, "stdin": True}
    tools.answer({"mysql": answer, "mariadb": answer})
    adapter = MysqlAdapter(runner_for(tools), SecretMasker())
    with pytest.raises(UnexpectedOutput) as caught:
        check_table(adapter, MYSQL, "t", checksums=False)
    assert says in clean(caught.value)


@pytest.mark.parametrize("value", ["-3", "1 000", "1_000", "\u0663", "NULL", ""])
def test_mysql_counts_that_are_not_counts_are_refused(value: str) -> None:
    with pytest.raises(UnexpectedOutput, match="not a count") as caught:
        number(value, "the row count of t")
    assert "the row count of t" in clean(caught.value)


def test_a_mysql_url_with_a_bad_bracketed_host_is_refused_without_showing_it() -> None:
    with pytest.raises(CutoverError, match="not a MySQL URL") as caught:
        MyConn.from_url(f"mysql://u:{SECRET}@[db/app")
    assert SECRET not in clean(caught.value)


# -- 4. gigabytes of output: memory stays bounded ---------------------------------------------

FLOOD_SCRIPT = textwrap.dedent(
    """
    import json, resource, sys
    from cutover.errors import CommandError
    from cutover.runner import Runner
    from cutover.secrets import SecretMasker

    runner = Runner(SecretMasker())
    error = ""
    try:
        if sys.argv[1] == "--pipe":  # producer | cat, through runpipes.run_pipe
            runner.pipe(sys.argv[2:], ["cat"], timeout=600)
        elif sys.argv[1] == "--session":  # a child read line by line (runpipes.Session)
            with runner.session(sys.argv[2:]) as session:
                session.readline(timeout=600)
        else:
            runner.run(sys.argv[1:], timeout=600)
    except CommandError as exc:
        error = str(exc)
    print(json.dumps({
        "error": error,
        "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }))
    """
)
GIB = 1024 * 1024 * 1024


def flood(tmp_path: Path, *argv: str) -> dict[str, Any]:
    """Run one command through a fresh process's Runner; its peak RSS (getrusage) and error."""
    script = tmp_path / "flood.py"
    script.write_text(FLOOD_SCRIPT, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script), *argv],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_two_gigabytes_on_stdout_stop_the_child_with_bounded_memory(tmp_path: Path) -> None:
    # 2 GiB of output in one line (no newline: sh's default line buffering would keep it all).
    got = flood(tmp_path, "sh", "-c", f"head -c {2 * GIB} /dev/zero | tr '\\0' x; exit 0")
    assert "printed more than 64 MiB on stdout and was stopped" in got["error"]
    assert "command failed" in got["error"]
    # The bound keeps 64 MiB; an unbounded capture would hold 2 GiB (twice, decoded).
    assert got["maxrss_kib"] < 400 * 1024, got


def test_a_gigabyte_on_stderr_keeps_only_its_tail(tmp_path: Path) -> None:
    got = flood(
        tmp_path,
        "sh",
        "-c",
        f"head -c {GIB} /dev/zero | tr '\\0' y >&2; echo; echo the-last-line >&2; exit 3",
    )
    assert "command failed with exit code 3" in got["error"]
    assert "the-last-line" in got["error"]
    # The 1 GiB line is cut in the error's tail (TAIL_LINE_CHARS), not printed whole.
    assert len(got["error"]) < 20 * TAIL_LINE_CHARS
    assert got["maxrss_kib"] < 300 * 1024, got


def test_a_gigabyte_on_a_pipe_producers_stderr_is_read_back_as_its_tail(tmp_path: Path) -> None:
    """``pg_dump | psql`` children write stderr to temporary files (cutover/runpipes.py); only
    their last MiB is read back into memory."""
    got = flood(
        tmp_path,
        "--pipe",
        "sh",
        "-c",
        f"head -c {GIB} /dev/zero | tr '\\0' z >&2; echo; echo pipe-last-line >&2; exit 4",
    )
    assert "command failed with exit code 4" in got["error"]
    assert "pipe-last-line" in got["error"]
    assert len(got["error"]) < 20 * TAIL_LINE_CHARS
    assert got["maxrss_kib"] < 300 * 1024, got


def test_a_session_line_without_end_is_bounded(tmp_path: Path) -> None:
    """The psql session that holds the snapshot is read a line at a time (runpipes.Session):
    a 1 GiB line without a newline stops the child at 64 MiB instead of filling memory."""
    got = flood(
        tmp_path, "--session", "sh", "-c", f"head -c {GIB} /dev/zero | tr '\\0' q; sleep 600"
    )
    assert "printed a line of more than 64 MiB and was stopped" in got["error"]
    assert got["maxrss_kib"] < 400 * 1024, got


def test_background_output_keeps_its_newest_part() -> None:
    """A background child (a proxy running for hours) that prints 40 MB: what is kept stays
    under BACKGROUND_KEEP, the newest line is there, and a reader that fell behind resumes."""
    runner = Runner(SecretMasker())
    script = "i=0; while [ $i -lt 400000 ]; do echo line-$i-" + "x" * 80 + "; i=$((i+1)); done"
    script += "; echo the-newest-line"
    with runner.start(["sh", "-c", script]) as bg:
        assert wait_until(lambda: "the-newest-line" in bg.stdout)
        kept = bg.stdout
        assert len(kept) <= BACKGROUND_KEEP + 200
        text, upto = bg.read_stdout(0)  # chunk 0 was dropped long ago
        assert text.endswith("the-newest-line\n")
        assert bg.read_stdout(upto) == ("", upto)


def wait_until(check: Any, timeout: float = 120.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


def test_chunks_are_numbered_and_bounded() -> None:
    chunks = Chunks(limit=10)
    for word in ("aaaa", "bbbb", "cccc", "dddd"):
        chunks.add(word)
    assert chunks.text() == "ccccdddd"
    assert chunks.since(0) == ("ccccdddd", 4)
    assert chunks.since(3) == ("dddd", 4)
    chunks.add("e" * 50)  # one chunk over the limit is still kept whole (the newest)
    assert chunks.text() == "e" * 50
    assert chunks.since(4) == ("e" * 50, 5)


def test_one_huge_stderr_line_is_cut_in_the_error(tools: HostileTools, tmp_path: Path) -> None:
    tools.answer({"heroku maintenance:on": {"err": "E" * 5_000_000, "code": 2}})
    with pytest.raises(CommandError) as caught:
        heroku(tools, tmp_path).set_maintenance(True)
    text = clean(caught.value)
    assert "more characters)" in text
    assert len(text) < 3 * TAIL_LINE_CHARS


def test_the_runner_process_group_is_gone_after_a_flood(tools: HostileTools) -> None:
    runner = Runner(SecretMasker(), max_stdout=1024 * 1024)
    pidfile = tools.bin.parent / "flood.pid"
    with pytest.raises(CommandError, match="printed more than 1 MiB on stdout") as caught:
        runner.run(["sh", "-c", f"echo $$ > {pidfile}; exec yes"], timeout=120)
    assert not caught.value.transient
    pid = int(pidfile.read_text().strip())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_schema_dump_may_pass_the_default_stdout_bound() -> None:
    # pgschema/pgreplace read a schema-only pg_dump as text; a database with thousands of
    # tables can pass the bound every other command has: stdout_limit raises it for that call.
    runner = Runner(SecretMasker(), max_stdout=1024 * 1024)
    big = ["sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' x"]
    with runner.stdout_limit(8 * 1024 * 1024):
        assert len(runner.run(big, timeout=60).stdout) == 3_000_000
    assert runner.max_stdout == 1024 * 1024
    # Even when the child exits before the runner's wait sees the overflow (found here: a
    # quick child's cut stdout was returned as if whole).
    with pytest.raises(CommandError, match="printed more than 1 MiB"):
        runner.run(big, timeout=60)


# -- 5. terminal escape sequences: never passed raw ------------------------------------------


def plain_console() -> tuple[Console, StringIO]:
    out = StringIO()
    # No colour system: rich writes no escape of its own, so any ESC would be the tool's.
    return Console(file=out, color_system=None, width=200, highlight=False), out


def test_visible_escapes_every_control_and_keeps_text() -> None:
    for sequence in ESCAPES:
        shown = visible(f"name {sequence} end\n\tnext")
        assert not any(c in shown for c in RAW_CONTROLS), repr(shown)
        assert shown.startswith("name ") and shown.endswith(" end\n\tnext")
    assert visible("\x1b[2J") == "\\x1b[2J"
    assert visible("a\rb") == "a\\rb"
    assert visible("\x9b") == "\\x9b"
    assert visible("\u202e") == "\\u202e"


def test_ui_shows_a_hostile_error_with_its_escapes_visible() -> None:
    console, out = plain_console()
    ui = Ui(console, SecretMasker(), console)
    ui.error("step failed: " + "".join(ESCAPES), "stderr:\n    " + "".join(ESCAPES), "fix it")
    ui.note("add-on [bold]name[/] " + ESCAPES[1])
    text = out.getvalue()
    assert not any(c in text for c in RAW_CONTROLS), repr(text)
    assert "\\x1b]8;;https://evil.test/\\x07click" in text
    assert "[bold]name[/]" in text  # shown as typed, not read as markup


def test_status_table_notes_are_not_markup_and_not_raw() -> None:
    """Before: a str cell was read as rich markup, so an error holding ``[/]`` (from a tool's
    output) raised MarkupError in `cutover status`."""
    state = RunState(playbook=PlaybookRef(path="/x/cutover.yml", fingerprint="f", fields={}))
    state.steps["preflight"] = StepState(status=Status.FAILED, error="bad [/] name \x1b[2J\x07X")
    console, out = plain_console()
    console.print(status_table(state, ["preflight"], SecretMasker()))
    text = out.getvalue()
    assert "bad [/] name \\x1b[2J\\x07X" in text
    assert not any(c in text for c in RAW_CONTROLS)


def test_audit_log_writes_c1_controls_and_bidi_as_escapes(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "state", SecretMasker())
    hostile = "line \x1b[2J \x9b31m \x9d0;t\x9c \u202e \udcff end"
    log.event("command", stderr_tail=hostile)
    raw = (tmp_path / "state" / "events.jsonl").read_bytes()
    for control in ("\x1b", "\x9b", "\x9d", "\x9c", "\u202e"):
        assert control.encode() not in raw
    assert json.loads(raw)["stderr_tail"] == hostile  # the data itself is unchanged


# -- 6. through the real CLI: exit code, what the operator sees, the state file ---------------

PLAYBOOK = f"heroku: {{app: {APP}}}\nconvox: {{app: {APP}, rack: {RACK}}}\n"
MANIFEST = "services:\n  web:\n    build: .\n    port: 3000\n"
# The heroku answers preflight reads before convox (cutover/steps/preflight.py): formats as in
# the module docstring (ps:scale: commands/ps/scale.js without arguments).
HEROKU_OK: dict[str, dict[str, Any]] = {
    "heroku --version": {"out": "heroku/11.10.0 linux-x64 node-v22.14.0\n"},
    "heroku apps:info": {"out": '{"app": {"name": "myapp"}}'},
    "heroku ps:scale": {"out": "web=1:standard-1X\n"},
    "heroku addons": {"out": "[]"},
}


def cli(tools: HostileTools, project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **tools.env(), "PATH": tools.path(), "COLUMNS": "200"}
    env.pop("NO_COLOR", None)
    return subprocess.run(
        [sys.executable, "-m", "cutover", *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "cutover.yml").write_text(PLAYBOOK)
    (folder / "convox.yml").write_text(MANIFEST)
    return folder


def failed_preflight(project: Path) -> dict[str, Any]:
    """The state file is valid JSON, preflight failed, nothing is done."""
    state = json.loads((project / ".cutover" / "state.json").read_text())
    steps = state["steps"]
    assert steps["preflight"]["status"] == "failed"
    assert [s for s, v in steps.items() if v["status"] == "done"] == []
    return state


def test_cli_hostile_addon_name_cannot_rewrite_the_screen(
    tools: HostileTools, project: Path
) -> None:
    """An add-on service object of the wrong type, named with an OSC 8 link and a screen
    clear: exit 1, a message naming the command and the JSON path, no traceback, no raw
    control character on stdout or stderr; `cutover status` shows the same safely."""
    tools.answer(
        {
            **HEROKU_OK,
            "heroku addons": {"out": json.dumps([{"addon_service": "".join(ESCAPES)}])},
        }
    )
    run = cli(tools, project, "run", "--until", "preflight", "-y")
    out = run.stdout + run.stderr
    assert run.returncode == 1, out
    assert "Traceback" not in out and "unexpected error" not in out
    assert f"heroku addons --json -a {APP}: [0].addon_service is a string" in out
    assert not any(c in out for c in RAW_CONTROLS), repr(out)
    failed_preflight(project)
    status = cli(tools, project, "status")
    assert status.returncode == 0, status.stderr
    assert not any(c in status.stdout + status.stderr for c in RAW_CONTROLS)


def test_cli_hostile_convox_stderr_is_shown_escaped_everywhere(
    tools: HostileTools, project: Path
) -> None:
    """``convox version`` fails (exit 1, ``ERROR:`` on stderr as stdcli writes it) with escape
    sequences and rich markup in the message: the run's error, `cutover status` and `cutover
    log` show them escaped; the state file and the audit log hold them as JSON escapes."""
    hostile = "ERROR: " + "".join(ESCAPES) + " [/] [bold red]boom\n"
    tools.answer({**HEROKU_OK, "convox version": {"err": hostile, "code": 1}})
    run = cli(tools, project, "run", "--until", "preflight", "-y")
    out = run.stdout + run.stderr
    assert run.returncode == 1, out
    assert "Traceback" not in out and "unexpected error" not in out
    assert f"command failed with exit code 1: convox version -r {RACK}" in out
    assert "\\x1b[2J\\x1b[H" in out and "[/] [bold red]boom" in out
    assert not any(c in out for c in RAW_CONTROLS), repr(out)
    failed_preflight(project)
    for args in (("status",), ("log",)):
        shown = cli(tools, project, *args)
        assert shown.returncode == 0, shown.stderr
        assert "Traceback" not in shown.stdout + shown.stderr
        assert not any(c in shown.stdout + shown.stderr for c in RAW_CONTROLS), args
    events = (project / ".cutover" / "events.jsonl").read_bytes()
    assert b"\x1b" not in events and "\x9b".encode() not in events


def test_cli_truncated_heroku_json_exits_1_and_resumes_cleanly(
    tools: HostileTools, project: Path
) -> None:
    """Truncated `apps:info --json`: exit 1 naming the command; once the tool answers
    properly the same state file resumes (preflight runs again and passes the heroku reads)."""
    tools.answer({**HEROKU_OK, "heroku apps:info": {"out": '{"app": {"name": "my'}})
    run = cli(tools, project, "run", "--until", "preflight", "-y")
    out = run.stdout + run.stderr
    assert run.returncode == 1, out
    assert f"heroku apps:info --json -a {APP} printed not JSON" in out
    assert "Traceback" not in out
    before = failed_preflight(project)
    tools.answer({**HEROKU_OK, "convox version": {"err": "ERROR: later\n", "code": 1}})
    again = cli(tools, project, "run", "--until", "preflight", "-y")
    assert again.returncode == 1
    assert "convox version" in again.stdout + again.stderr  # past the heroku reads now
    after = failed_preflight(project)
    assert after["run_id"] == before["run_id"]
    assert ["heroku", "apps:info", "--json", "-a", APP] in tools.calls()
