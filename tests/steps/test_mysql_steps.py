"""check-mysql, initial-sync-mysql, final-sync-mysql and verify-mysql on real MariaDB servers
(issue 14). The Heroku and Convox adapters are replaced by the few answers the steps ask of them
(the add-on's config var, the resource URL, a "proxy" port: the Convox server's own), as in
tests/steps/test_data_sync.py; the mysql client tools, the runner and the servers are real."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import pytest
from support.mysqlservers import Pair, clear_db, convox_db, run_sql, two_servers

from cutover.adapters.mysql import MyConn
from cutover.engine.plan import new_state
from cutover.errors import CutoverError, InvalidInput
from cutover.playbook import load_playbook
from cutover.runner import ARGV_LOG_VAR, Runner
from cutover.secrets import SecretMasker
from cutover.state import Status
from cutover.steps import BY_ID
from cutover.steps.base import Context, Step, dump
from cutover.steps.mysql import (
    CheckMysql,
    FinalSyncMysql,
    InitialSyncMysql,
    VerifyMysql,
    mark_live,
)

pytestmark = pytest.mark.slow


def url(c: MyConn) -> str:
    return f"mysql://{c.user}:{quote(c.password, safe='')}@{c.host}:{c.port}/{c.database}"


class Notes:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def note(self, message: str) -> None:
        self.lines.append(message)


class Heroku:
    """`heroku config --json` as adapters/heroku.py returns it (values registered as secrets)."""

    def __init__(
        self, source: MyConn, masker: SecretMasker, extra: dict[str, str] | None = None
    ) -> None:
        self.source, self.masker, self.extra, self.calls = source, masker, extra or {}, 0

    def config(self) -> dict[str, str]:
        self.calls += 1
        value = url(self.source) + "?reconnect=true"  # ClearDB's URL shape
        self.masker.add(value)
        # "=CLEARDB_DATABASE_URL" in extra: that var holds ClearDB's value (copied by hand)
        extra = {k: value if v == "=CLEARDB_DATABASE_URL" else v for k, v in self.extra.items()}
        return {"CLEARDB_DATABASE_URL": value, "RACK_ENV": "production", **extra}

    def argv(self, *args: str) -> list[str]:
        return ["heroku", *args, "-a", "myapp"]


class Convox:
    def __init__(self, target: MyConn, resource: str = "mysql") -> None:
        self.target, self.resource = target, resource

    def resource_url(self, resource: str, *, reuse: bool = False) -> str:
        assert resource == self.resource
        return url(self.target)

    @contextmanager
    def proxy(self, resource: str, speaks: str | None = None) -> Iterator[int]:
        yield self.target.port

    def argv(self, *args: str) -> list[str]:
        return ["convox", *args]

    def proxy_argv(self, resource: str, port: str) -> list[str]:
        return ["convox", "resources", "proxy", resource, "--port", port]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    with two_servers(tmp_path_factory.mktemp("mysql")) as pair:
        yield pair


class World:
    def __init__(
        self,
        tmp: Path,
        servers: Pair,
        mysql: str = "",
        addons: str = "cleardb",
        resource: str = "mysql",
    ) -> None:
        self.source, self.target = clear_db(servers.heroku, rows=500), convox_db(servers.convox)
        self.tmp, self.resource = tmp, resource
        self.extra_config: dict[str, str] = {}
        self.argv_log = tmp / "argv.jsonl"
        (tmp / "convox.yml").write_text(
            f"resources:\n  {resource}:\n    type: mysql\nservices:\n  web:\n    port: 3000\n"
            f"    resources: [{resource}]\n",
            encoding="utf-8",
        )
        path = tmp / "cutover.yml"
        path.write_text(
            "version: 1\nheroku: {app: myapp}\nconvox: {app: myapp, rack: test}\n"
            f"database: null\n{mysql}",
            encoding="utf-8",
        )
        self.playbook = load_playbook(path)
        self.state = new_state(self.playbook)
        self.done(
            "preflight",
            {
                "heroku_cli": "11.10.0",
                "heroku_formation": {},
                "heroku_addons": [a for a in addons.split(",") if a],
                "scheduler": False,
                "router": "r.example",
                "rack": "test",
            },
        )

    def done(self, step_id: str, outputs: dict[str, object]) -> None:
        st = self.state.step(step_id)
        st.status, st.outputs = Status.DONE, outputs

    def context(self, force: bool = False) -> tuple[Context, Notes]:
        masker = SecretMasker()
        notes = Notes()
        work = self.tmp / "work"
        work.mkdir(mode=0o700, exist_ok=True)
        ctx = Context(
            playbook=self.playbook,
            state=self.state,
            runner=Runner(masker, base_env={ARGV_LOG_VAR: str(self.argv_log)}),
            masker=masker,
            heroku=Heroku(self.source, masker, self.extra_config),  # type: ignore[arg-type]
            convox=Convox(self.target, self.resource),  # type: ignore[arg-type]
            postgres=None,  # type: ignore[arg-type]
            http=None,  # type: ignore[arg-type]
            dns=None,
            reporter=notes,
            work_dir=work,
            sleep=lambda s: None,
        )
        ctx.extras["force_data"] = force
        return ctx, notes

    def run(self, step: Step, force: bool = False) -> tuple[dict[str, object], Notes]:
        ctx, notes = self.context(force)
        out = step.check(ctx) or step.apply(ctx)
        self.done(step.id, dump(out))
        return dump(out), notes

    def assert_no_password_in_argv(self) -> None:
        lines = self.argv_log.read_text(encoding="utf-8").splitlines()
        assert lines
        for line in lines:
            joined = " ".join(json.loads(line))
            assert self.source.password not in joined
            assert self.target.password not in joined


def test_the_steps_sit_where_the_contract_puts_them() -> None:
    ids = list(BY_ID)
    assert ids.index("check-mysql") == ids.index("check-data") + 1
    assert ids.index("initial-sync-mysql") == ids.index("initial-sync") + 1
    assert ids.index("final-sync-mysql") == ids.index("final-sync") + 1
    assert ids.index("verify-mysql") == ids.index("verify-data") + 1
    assert FinalSyncMysql.in_window and VerifyMysql.in_window
    assert not InitialSyncMysql.in_window


def test_a_cleardb_app_is_checked_copied_verified_and_guarded(
    tmp_path: Path, servers: Pair
) -> None:
    w = World(tmp_path, servers)
    checked, notes = w.run(CheckMysql())
    assert checked["addon"] == "cleardb" and checked["config_var"] == "CLEARDB_DATABASE_URL"
    assert checked["copied"] is True and checked["tables"] == 4
    definers = checked["definers"]
    assert isinstance(definers, list)
    assert any("trigger count_orders" in d for d in definers)
    assert any("DEFINER" in line for line in notes.lines)
    initial, notes = w.run(InitialSyncMysql())
    assert initial["tables"] == 4
    assert isinstance(initial["definers"], int) and initial["definers"] >= 3
    assert any("swapped the new copy in" in line for line in notes.lines)
    verified, _ = w.run(VerifyMysql())
    assert verified["tables"] == 4 and verified["rows"] == 4 + 500 + 3 + 4
    # the window: Heroku took more rows before maintenance; the final copy brings them
    run_sql(w.source, "INSERT INTO orders (customer_id, total, body) VALUES (3, 9.5, 'late')")
    ctx, _ = w.context()
    assert "freeze-writes does not cover MySQL" in (FinalSyncMysql().gate_question(ctx) or "")
    w.run(FinalSyncMysql())
    assert run_sql(w.target, "SELECT COUNT(*) FROM orders WHERE body = 'late'").strip() == "1"
    w.run(VerifyMysql())
    # a write on Convox after the copy: verify names the table, a new copy is refused
    run_sql(w.target, "DELETE FROM orders WHERE body = 'late'")
    with pytest.raises(CutoverError, match=r"orders: 501 rows on Heroku, 500 on Convox"):
        VerifyMysql().apply(w.context()[0])
    with pytest.raises(CutoverError, match=r"took writes.*orders"):
        FinalSyncMysql().apply(w.context()[0])
    _, notes = w.run(FinalSyncMysql(), force=True)
    assert any("--force-data: copying although" in line for line in notes.lines)
    # switch-dns marks it live: no copy afterwards, even the guard says why
    mark_live(w.context()[0])
    with pytest.raises(CutoverError, match="went live"):
        FinalSyncMysql().apply(w.context()[0])
    w.assert_no_password_in_argv()


def test_an_app_without_a_mysql_addon_copies_nothing(tmp_path: Path, servers: Pair) -> None:
    w = World(tmp_path, servers, addons="heroku-postgresql")
    checked, notes = w.run(CheckMysql())
    assert checked == {}
    assert any("no MySQL add-on" in line for line in notes.lines)
    assert w.run(InitialSyncMysql())[0] == {"skipped": "no MySQL add-on on the Heroku app"}
    assert w.run(VerifyMysql())[0] == {"skipped": "no MySQL add-on on the Heroku app"}
    assert not w.argv_log.exists()


def test_copy_false_says_the_convox_database_stays_empty(tmp_path: Path, servers: Pair) -> None:
    w = World(tmp_path, servers, mysql="mysql: {copy: false}\n")
    checked, notes = w.run(CheckMysql())
    assert checked["copied"] is False
    assert any("NOT copied" in line and "stays empty" in line for line in notes.lines)
    model = w.playbook.model
    assert InitialSyncMysql().applies(model) == "mysql.copy is false"
    assert FinalSyncMysql().applies(model) == "mysql.copy is false"


def test_plan_lines_name_the_commands_without_secrets(tmp_path: Path, servers: Pair) -> None:
    w = World(tmp_path, servers)
    ctx, _ = w.context()
    lines = "\n".join(InitialSyncMysql().describe(ctx))
    assert "--single-transaction" in lines and "RENAME TABLE" in lines
    assert "MYSQL_PWD=****" in lines and "-P '<proxy port>'" in lines
    assert w.source.password not in lines


class StartingConvox(Convox):
    """A resource the rack is still starting, through a proxy that behaves like
    adapters/convox.py ConvoxAdapter.proxy over the real CLI: while the resource's pod is not up
    the CLI answers each connection with ``ERROR: dial tcp ...: connect: connection refused``
    (convox_fake/cmd_resources.py _tunnel, from pkg/cli/resources.go) and closes it; the adapter
    then raises "reported an error while in use" when the proxy is closed after use."""

    def __init__(self, target: MyConn, refusals: int) -> None:
        super().__init__(target)
        self.refusals = refusals
        self.proxies = 0

    @contextmanager
    def proxy(self, resource: str, speaks: str | None = None) -> Iterator[int]:
        self.proxies += 1
        server = socket.create_server(("127.0.0.1", 0))
        errors: list[str] = []
        socks: list[socket.socket] = [server]
        threading.Thread(target=self._serve, args=(server, errors, socks), daemon=True).start()
        try:
            yield server.getsockname()[1]
        finally:
            for sock in socks:
                sock.close()
        if errors:
            raise CutoverError(
                f"convox resources proxy {resource} reported an error while in use: {errors[-1]}"
            )

    def _serve(self, server: socket.socket, errors: list[str], socks: list[socket.socket]) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            if self.refusals > 0:
                self.refusals -= 1
                errors.append(f"ERROR: dial tcp 10.0.0.9:{self.target.port}: connection refused")
                client.close()
                continue
            upstream = socket.create_connection((self.target.host, self.target.port))
            socks += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(a, b), daemon=True).start()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


def test_a_resource_that_starts_while_check_mysql_waits_does_not_fail_it(
    tmp_path: Path, servers: Pair
) -> None:
    """The sandbox playbook run as a user does it (`sandbox up`, then `cutover run` at once):
    check-mysql waited for the new resource, looked at both servers, then failed on the
    proxy's earlier refusals. A proxy that saw the resource start is replaced by a fresh one."""
    w = World(tmp_path, servers)
    ctx, _ = w.context()
    convox = StartingConvox(w.target, refusals=3)
    ctx.convox = convox  # type: ignore[assignment]
    out = CheckMysql().apply(ctx)
    assert out.tables == 4 and out.copied
    assert convox.proxies >= 2


def test_the_resource_is_the_one_cutover_translate_declared(tmp_path: Path, servers: Pair) -> None:
    """`cutover translate` names a ClearDB add-on's resource after its config var
    (translate/resources.py: cleardb-database, jawsdb); with no mysql.resource the steps looked
    for a resource called mysql and failed on `convox resources url mysql`."""
    w = World(tmp_path, servers, resource="cleardb-database")
    checked, _ = w.run(CheckMysql())
    assert checked["tables"] == 4
    assert "resources url cleardb-database" in "\n".join(CheckMysql().describe(w.context()[0]))
    (tmp_path / "convox.yml").write_text("services:\n  web:\n    port: 3000\n")
    with pytest.raises(InvalidInput, match=r"convox.yml: no resource of type mysql.*") as none:
        CheckMysql().apply(w.context()[0])
    assert "mysql.resource" in none.value.resolution


def test_a_second_mysql_addon_is_named_as_not_copied(tmp_path: Path, servers: Pair) -> None:
    """ClearDB and JawsDB on one app: check-mysql copies the first (no mysql.config_var) and
    says, as a WARNING and in its findings, that JawsDB (JAWSDB_URL) is NOT copied."""
    w = World(tmp_path, servers, addons="cleardb,jawsdb")
    pre = w.state.step("preflight").outputs
    assert isinstance(pre, dict)
    w.done(
        "preflight",
        {
            **pre,
            "mysql_addons": [
                {"service": "cleardb", "config_var": "CLEARDB_DATABASE_URL"},
                {"service": "jawsdb", "config_var": "JAWSDB_URL"},
            ],
        },
    )
    checked, notes = w.run(CheckMysql())
    assert checked["config_var"] == "CLEARDB_DATABASE_URL" and checked["copied"] is True
    assert checked["not_copied"] == ["jawsdb (JAWSDB_URL)"]
    [warning] = [line for line in notes.lines if line.startswith("WARNING")]
    assert "copy only cleardb (CLEARDB_DATABASE_URL)" in warning
    assert "NOT copied: jawsdb (JAWSDB_URL)" in warning
    findings = checked["findings"]
    assert isinstance(findings, list) and warning in findings


def _two_addons(w: World) -> None:
    pre = w.state.step("preflight").outputs
    assert isinstance(pre, dict)
    w.done(
        "preflight",
        {
            **pre,
            "mysql_addons": [
                {"service": "jawsdb", "config_var": "JAWSDB_URL"},
                {"service": "cleardb", "config_var": "CLEARDB_DATABASE_URL"},
            ],
        },
    )


def test_a_config_var_copied_by_hand_names_the_addon_whose_value_it_holds(
    tmp_path: Path, servers: Pair
) -> None:
    """mysql.config_var: DATABASE_URL holding ClearDB's URL (ClearDB's guide), JawsDB listed
    first: the add-on copied is ClearDB, found by value, not the first; JawsDB NOT copied."""
    w = World(tmp_path, servers, mysql="mysql: {config_var: DATABASE_URL}\n", addons="")
    w.extra_config = {"DATABASE_URL": "=CLEARDB_DATABASE_URL", "JAWSDB_URL": "mysql://j:pw@h/d"}
    _two_addons(w)
    checked, notes = w.run(CheckMysql())
    assert checked["addon"] == "cleardb" and checked["config_var"] == "DATABASE_URL"
    assert checked["copied"] is True and checked["tables"] == 4
    assert checked["not_copied"] == ["jawsdb (JAWSDB_URL)"]
    [warning] = [line for line in notes.lines if line.startswith("WARNING")]
    assert "copy only cleardb (DATABASE_URL)" in warning, warning
    assert "mysql://" not in " ".join(notes.lines)  # values compared, never printed


def test_a_config_var_holding_no_addons_database_is_unknown(tmp_path: Path, servers: Pair) -> None:
    w = World(tmp_path, servers, mysql="mysql: {config_var: DATABASE_URL, copy: false}\n")
    w.extra_config = {"DATABASE_URL": "mysql://other:pw@elsewhere/db", "JAWSDB_URL": "mysql://j"}
    _two_addons(w)
    checked, notes = w.run(CheckMysql())
    assert checked["addon"] == "unknown" and checked["config_var"] == "DATABASE_URL"
    assert checked["not_copied"] == ["jawsdb (JAWSDB_URL)", "cleardb (CLEARDB_DATABASE_URL)"]
    assert "no listed add-on's var holds it: unknown" in " ".join(notes.lines)
    assert "mysql://" not in " ".join(notes.lines)
