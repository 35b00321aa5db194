"""Contract tests of cutover.adapters.heroku.HerokuAdapter, always through the real Runner.

Two tiers:

* fast: a tiny fake ``heroku`` executable on the runner's path_prefix (garbage output, a CLI
  that never flips maintenance, retry caps, a missing CLI, the private gitconfig);
* ``slow``: the REAL heroku CLI 11.10.0 (node_modules/.bin) against the Heroku API emulator
  (``python -m cutover.sandbox.heroku_api``) started as a subprocess on free loopback ports, with
  a real PostgreSQL database behind the heroku-postgresql add-on. About one second per CLI call;
  the tier makes 20 CLI calls in all.

Every slow test checks on teardown that no secret (config values, the API key, the database
password, backup tokens) reached a child's argv (the runner's ``CUTOVER_TEST_ARGV_LOG`` hook) or
the audit events.
"""

from __future__ import annotations

import shlex
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from adapter_support import (
    ARGV_LOG_ENV,
    ListAudit,
    assert_argv_clean,
    read_argv_log,
)
from support.databases import WIDGETS_SQL, AppDatabase, make_database
from support.heroku_emulator import Running, spawn_emulator, stop_emulator
from support.paths import HEROKU_BIN, needs_heroku_cli
from support.tls import TlsFiles

from cutover.adapters import heroku as heroku_mod
from cutover.adapters.heroku import FormationEntry, HerokuAdapter
from cutover.adapters.http import HttpClient
from cutover.adapters.postgres import PostgresAdapter
from cutover.errors import CommandError, CutoverError, ToolMissing, UnexpectedOutput
from cutover.runner import Runner
from cutover.sandbox.heroku_api import (
    cli_env,
    default_state,
    prepare_home,
    save_state,
    update_state,
)
from cutover.sandbox.pgcluster import PgCluster
from cutover.secrets import MASK, SecretMasker, is_public_config

APP = "myapp"
API_KEY = "adapter-test-api-key-5f0c1d2e3a4b"
DOMAIN = "www.example.test"
DNS_TARGET = "sushi-1234.herokudns.com"
HELPER = "!heroku git:credentials"
# httpx 0.28 deprecates verify=<str>; HttpClient passes ca_file that way (see test_http_adapter).


def _raised_cleanly(exc: BaseException) -> bool:
    """A CutoverError the CLI prints without a traceback: no chained cause to show."""
    return (
        isinstance(exc, CutoverError)
        and exc.__cause__ is None
        and (exc.__context__ is None or exc.__suppress_context__)
    )


# ============================================================================================
# Fast tier: a fake `heroku` executable


def write_fake_heroku(bin_dir: Path, body: str) -> Path:
    """An executable ``bin_dir/heroku`` running the POSIX sh ``body`` ("$@" = the CLI args)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / "heroku"
    path.write_text("#!/bin/sh\n" + body + "\n", encoding="utf-8")
    path.chmod(0o755)
    return path


def printing(text: str, code: int = 0) -> str:
    return f"printf '%s\\n' {shlex.quote(text)}\nexit {code}"


@dataclass
class FakeHarness:
    runner: Runner
    masker: SecretMasker
    audit: ListAudit
    adapter: HerokuAdapter
    argv_log: Path
    sleeps: list[float]
    bin_dir: Path

    def fake(self, body: str) -> None:
        write_fake_heroku(self.bin_dir, body)


@pytest.fixture
def fake(tmp_path: Path, audit: ListAudit, argv_log: Path) -> FakeHarness:
    masker = SecretMasker()
    sleeps: list[float] = []
    bin_dir = tmp_path / "fakebin"
    write_fake_heroku(bin_dir, "exit 0")
    runner = Runner(
        masker,
        audit=audit,
        base_env={ARGV_LOG_ENV: str(argv_log), "HEROKU_HOST": "http://127.0.0.1:9"},
        path_prefix=[str(bin_dir)],
        _sleep=sleeps.append,
    )
    adapter = HerokuAdapter(runner, masker, APP, tmp_path / "work")
    return FakeHarness(runner, masker, audit, adapter, argv_log, sleeps, bin_dir)


GARBAGE_CASES: list[tuple[str, tuple[Any, ...], type[CutoverError], str]] = [
    ("app_info", (), UnexpectedOutput, f"heroku apps:info --json -a {APP}"),
    ("config", (), UnexpectedOutput, f"heroku config --json -a {APP}"),
    ("dynos", (), UnexpectedOutput, f"heroku ps --json -a {APP}"),
    ("addons", (), UnexpectedOutput, f"heroku addons --json -a {APP}"),
    ("domains", (), UnexpectedOutput, f"heroku domains --json -a {APP}"),
    ("formation", (), UnexpectedOutput, "heroku ps:scale"),
    ("maintenance", (), UnexpectedOutput, "heroku maintenance"),
    ("backup_url", ("b001",), UnexpectedOutput, "heroku pg:backups:url"),
    ("credentials_url", ("DATABASE",), UnexpectedOutput, "heroku pg:credentials:url"),
    ("version", (), ToolMissing, "heroku CLI version"),
]


@pytest.mark.parametrize(
    ("method", "args", "error", "named"), GARBAGE_CASES, ids=[c[0] for c in GARBAGE_CASES]
)
def test_garbage_output_is_unexpected_output(
    fake: FakeHarness, method: str, args: tuple[Any, ...], error: type[CutoverError], named: str
) -> None:
    fake.fake(printing("<html>"))
    with pytest.raises(error) as caught:
        getattr(fake.adapter, method)(*args)
    assert named in str(caught.value)
    assert _raised_cleanly(caught.value)
    # One call: garbage on stdout with exit 0 is not a transient failure.
    assert [e["outcome"] for e in fake.audit.of("command")] == ["ok"]
    assert fake.audit.of("retry") == []


@pytest.mark.parametrize(
    ("method", "output", "message"),
    [
        ("app_info", "[]", "did not return {app: {...}}"),
        ("app_info", '{"app": "myapp"}', "did not return {app: {...}}"),
        ("config", '["A=1"]', "did not return an object"),
        ("dynos", '{"web.1": "up"}', "did not return a list"),
        ("addons", "{}", "did not return a list"),
        ("domains", "null", "did not return a list"),
        ("formation", "web=two:standard-1X", "unexpected formation item"),
    ],
)
def test_wrong_json_shapes_are_unexpected_output(
    fake: FakeHarness, method: str, output: str, message: str
) -> None:
    fake.fake(printing(output))
    with pytest.raises(UnexpectedOutput, match=message) as caught:
        getattr(fake.adapter, method)()
    assert _raised_cleanly(caught.value)


def test_formation_parsing_and_default_size(fake: FakeHarness) -> None:
    fake.fake(printing("web=2:standard-1X worker=0:performance-m clock=1"))
    assert fake.adapter.formation() == [
        FormationEntry("web", 2, "standard-1X"),
        FormationEntry("worker", 0, "performance-m"),
        FormationEntry("clock", 1, "standard-1X"),
    ]
    assert read_argv_log(fake.argv_log) == [["heroku", "ps:scale", "-a", APP]]


def test_every_call_passes_app_and_closed_stdin(fake: FakeHarness) -> None:
    # The fake blocks on stdin if it is an open pipe: the runner must close it.
    fake.fake('cat >/dev/null\nprintf \'{"app": {"name": "x"}}\\n\'')
    assert fake.adapter.app_info() == {"app": {"name": "x"}}
    (argv,) = read_argv_log(fake.argv_log)
    assert argv[-2:] == ["-a", APP] and argv[0].endswith("heroku")


def test_transient_api_errors_are_retried_then_reported(fake: FakeHarness) -> None:
    fake.fake(
        "echo ' \u203a   Error: Internal server error.' >&2\n"
        "echo ' \u203a   Error ID: internal_server_error' >&2\nexit 2"
    )
    with pytest.raises(CommandError) as caught:
        fake.adapter.config()
    assert caught.value.returncode == 2 and caught.value.transient
    assert [e["outcome"] for e in fake.audit.of("command")] == ["failed"] * 3
    assert [e["attempt"] for e in fake.audit.of("retry")] == [1, 2]
    assert len(fake.sleeps) == 2


def test_permanent_api_errors_are_not_retried(fake: FakeHarness) -> None:
    fake.fake(
        "echo ' \u203a   Error: Couldn'\"'\"'t find that app.' >&2\n"
        "echo ' \u203a   Error ID: not_found' >&2\nexit 2"
    )
    with pytest.raises(CommandError) as caught:
        fake.adapter.config()
    assert caught.value.returncode == 2 and not caught.value.transient
    assert "Couldn't find that app." in caught.value.stderr_tail
    assert len(fake.audit.of("command")) == 1 and fake.audit.of("retry") == []


def test_idempotent_actions_are_retried_on_transient_errors(fake: FakeHarness) -> None:
    """maintenance:on is PATCH maintenance=true: the same however often it is sent, so a 5xx
    is tried again (it was not, before issue 15's faults: one 503 stopped the run)."""
    fake.fake(
        'if [ "$1" = maintenance:on ]; then\n'
        "  echo ' \u203a   Error ID: internal_server_error' >&2; exit 2\nfi\necho off"
    )
    with pytest.raises(CommandError):
        fake.adapter.set_maintenance(True)
    assert len(fake.audit.of("command")) == 3 and len(fake.audit.of("retry")) == 2


def test_non_idempotent_actions_are_retried_only_when_nothing_was_sent(fake: FakeHarness) -> None:
    """ps:stop of a dyno already stopping could fail on a repeat: a 5xx is not tried again,
    a refused connection (no request reached the API) is."""
    fake.fake("echo ' \u203a   Error ID: internal_server_error' >&2; exit 2")
    with pytest.raises(CommandError):
        fake.adapter.stop_dyno("run.1234")
    assert len(fake.audit.of("command")) == 1 and fake.audit.of("retry") == []
    fake.fake(
        "echo '    Error: connect ECONNREFUSED 127.0.0.1:5000' >&2\n"
        "echo '    Code: ECONNREFUSED' >&2; exit 1"
    )
    with pytest.raises(CommandError) as caught:
        fake.adapter.stop_dyno("run.1234")
    assert caught.value.transient
    assert len(fake.audit.of("retry")) == 2


def test_set_maintenance_verifies_by_reading_back(fake: FakeHarness) -> None:
    # maintenance:on "succeeds" but the app still reads "off": the adapter must not trust rc 0.
    fake.fake('[ "$1" = maintenance ] && echo off\nexit 0')
    with pytest.raises(CutoverError, match="still off"):
        fake.adapter.set_maintenance(True)
    assert [a[1] for a in read_argv_log(fake.argv_log)] == ["maintenance:on", "maintenance"]


def test_scale_verifies_the_formation(fake: FakeHarness) -> None:
    fake.fake('[ "$#" = 3 ] && echo "web=2:standard-1X worker=1:standard-2X"\nexit 0')
    with pytest.raises(CutoverError, match="worker=1 after scaling to 0"):
        fake.adapter.scale("worker", 0)


def test_scale_many_is_one_call_verified_from_what_the_cli_reports(fake: FakeHarness) -> None:
    # commands/ps/scale.js: ux.action.stop(`done, now running ${type} at ${qty}:${size}, ...`)
    fake.fake(
        "printf 'Scaling dynos... done, now running clock at 0:Basic, worker at 0:Basic\\n' >&2"
    )
    assert fake.adapter.scale_many({"worker": 0, "clock": 0}) == {"clock": 0, "worker": 0}
    assert [a[1:-2] for a in read_argv_log(fake.argv_log)] == [["ps:scale", "clock=0", "worker=0"]]


def test_scale_many_refuses_what_the_cli_reports_otherwise(fake: FakeHarness) -> None:
    fake.fake("printf 'Scaling dynos... done, now running worker at 1:Basic\\n' >&2")
    with pytest.raises(CutoverError, match=r"worker=1 \(asked 0\)"):
        fake.adapter.scale_many({"worker": 0})


def test_scale_many_without_a_report_reads_the_formation_back(fake: FakeHarness) -> None:
    fake.fake('[ "$#" = 3 ] && echo "web=2:Basic worker=0:Basic"\nexit 0')
    assert fake.adapter.scale_many({"worker": 0})["worker"] == 0
    assert [a[1] for a in read_argv_log(fake.argv_log)] == ["ps:scale", "ps:scale"]


def test_stop_dyno_uses_the_dyno_name_flag_and_refuses_other_names(fake: FakeHarness) -> None:
    fake.adapter.stop_dyno("run.1234")  # commands/ps/stop.js: --dyno-name (DYNO is deprecated)
    assert read_argv_log(fake.argv_log)[0][1:] == ["ps:stop", "--dyno-name", "run.1234", "-a", APP]
    with pytest.raises(CutoverError, match="refusing to stop"):
        fake.adapter.stop_dyno("run.1; rm -rf /")


@pytest.mark.parametrize(
    ("ptype", "qty"), [("web;rm -rf /", 1), ("web", -1), ("", 1), ("web=1 worker", 0)]
)
def test_scale_refuses_bad_arguments_before_running_anything(
    fake: FakeHarness, ptype: str, qty: int
) -> None:
    with pytest.raises(CutoverError, match="refusing to scale"):
        fake.adapter.scale(ptype, qty)
    assert read_argv_log(fake.argv_log) == [] and fake.audit.events == []


def test_backup_capture_reads_the_backup_id(fake: FakeHarness) -> None:
    fake.fake(
        "echo 'Starting backup of postgresql-curly-12345... done' >&2\n"
        "echo 'Backing up DATABASE to b042... done' >&2\nexit 0"
    )
    assert fake.adapter.backup_capture("DATABASE", timeout=30) == "b042"


def test_backup_capture_names_the_attachment_capture_js(fake: FakeHarness, argv_log: Path) -> None:
    """pg/backups/capture.js takes ``[database]`` and, without it, backs up DATABASE_URL's
    database: the playbook's attachment must be passed, and the id read from the progress line
    (lib/pg/backups.js name(): ``b`` + number padded to 3 digits)."""
    fake.fake(
        'echo "$1 $2" > "$(dirname "$0")/args"\n'
        "echo 'Starting backup of postgresql-tidy-333... done' >&2\n"
        "echo 'Backing up HEROKU_POSTGRESQL_RED to b1234... done' >&2\nexit 0"
    )
    assert fake.adapter.backup_capture("HEROKU_POSTGRESQL_RED", timeout=30) == "b1234"
    assert (fake.bin_dir / "args").read_text() == "pg:backups:capture HEROKU_POSTGRESQL_RED\n"
    (argv,) = read_argv_log(argv_log)
    assert argv == ["heroku", "pg:backups:capture", "HEROKU_POSTGRESQL_RED", "-a", APP]


def test_backup_capture_without_an_id_is_an_error_not_latest(fake: FakeHarness) -> None:
    """No ``Backing up ... to bNNN`` line: refuse (a "latest" fallback would copy whatever
    backup is newest, pg/backups/url.js)."""
    fake.fake("echo 'Starting backup of postgresql-curly-12345... done' >&2\nexit 0")
    with pytest.raises(UnexpectedOutput, match="did not say which backup"):
        fake.adapter.backup_capture("DATABASE", timeout=30)


def test_backup_url_asks_for_the_captured_backup_url_js(fake: FakeHarness, argv_log: Path) -> None:
    """pg/backups/url.js: without ``backup_id`` it returns the newest successful backup of the
    app (a scheduled one may be newer than ours); the adapter always passes the id."""
    fake.fake(
        '[ "$2" = b007 ] || exit 9\n'
        + printing("https://storage.example/b007.dump?X-Amz-Signature=abc")
    )
    assert fake.adapter.backup_url("b007").endswith("/b007.dump?X-Amz-Signature=abc")
    assert read_argv_log(argv_log) == [["heroku", "pg:backups:url", "b007", "-a", APP]]
    with pytest.raises(CutoverError, match="not a backup id"):
        fake.adapter.backup_url("latest")


# What the CLI's colour libraries do (node_modules/ansis/index.cjs, supports-color/index.js):
# FORCE_COLOR present forces colour, NO_COLOR stops it otherwise. This fake colours like ansis.
COLOUR_AWARE = """
if [ -n "${FORCE_COLOR+set}" ] && [ "$FORCE_COLOR" != 0 ] && [ "$FORCE_COLOR" != false ]; then
  c1=$(printf '\033[36m'); c0=$(printf '\033[39m')
elif [ -n "$NO_COLOR" ]; then c1=''; c0=''
else c1=$(printf '\033[36m'); c0=$(printf '\033[39m')
fi
case "$1" in
  pg:backups:capture) echo "Backing up ${c1}DATABASE${c0} to ${c1}b042${c0}... done" >&2 ;;
  config) echo "{\\"${c1}A${c0}\\": \\"1\\"}" ;;
esac
exit 0
"""


@pytest.mark.parametrize("force", ["1", "", "3", "true"])
def test_force_color_in_the_operators_environment_is_removed(
    fake: FakeHarness, monkeypatch: pytest.MonkeyPatch, force: str
) -> None:
    """FORCE_COLOR=1 (or even empty: supports-color forces level 1) in the operator's shell
    would colour what the adapter parses: the child gets no FORCE_COLOR and NO_COLOR=1."""
    monkeypatch.setenv("FORCE_COLOR", force)
    monkeypatch.setenv("CI", "true")  # ansis colours pipes under CI unless NO_COLOR
    fake.fake(COLOUR_AWARE)
    assert fake.adapter.backup_capture("DATABASE", timeout=30) == "b042"
    assert fake.adapter.config() == {"A": "1"}
    env = fake.runner.environment(fake.adapter._env())
    assert "FORCE_COLOR" not in env and env["NO_COLOR"] == "1"


def test_backup_capture_strips_colour_codes_if_any_slip_through(fake: FakeHarness) -> None:
    fake.fake(
        "printf 'Backing up \\033[36mDATABASE\\033[39m to \\033[36mb042\\033[39m... "
        "done\\n' >&2\nexit 0"
    )
    assert fake.adapter.backup_capture("DATABASE", timeout=30) == "b042"


def test_backup_url_is_registered_before_validation(fake: FakeHarness) -> None:
    url = "http://127.0.0.1:1/backups/tok3n-abcdef/b001.dump"
    fake.fake(printing(url))
    with pytest.raises(UnexpectedOutput, match="https://"):
        fake.adapter.backup_url("b001")
    # Even a refused URL is a credential: it is masked from then on.
    assert url in fake.masker and url not in fake.masker.mask(f"see {url}")


def test_credentials_url_parsing(fake: FakeHarness) -> None:
    url = "postgres://u1:p%40ss%20w'rd@127.0.0.1:1/d1"
    fake.fake(
        printing(
            "Connection information for default credential.\nConnection info string:\n"
            '  "dbname=d1 host=127.0.0.1 port=1 user=u1 password=p@ss w\'rd sslmode=require"\n'
            f"Connection URL:\n  {url}\n"
        )
    )
    assert fake.adapter.credentials_url("DATABASE") == url
    assert "p@ss w'rd" in fake.masker and url in fake.masker
    assert read_argv_log(fake.argv_log)[0][1:] == ["pg:credentials:url", "DATABASE", "-a", APP]


def test_credentials_url_is_read_once_per_process_until_it_is_old(
    fake: FakeHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """freeze-writes, final-sync and verify-data each need the URL inside the window: one heroku
    CLI start (1.5 s and more) is paid once, before it; ``fresh`` or an old URL reads again."""
    url = "postgres://u1:pw1@127.0.0.1:1/d1"
    fake.fake(printing(f"Connection URL:\n  {url}\n"))
    assert fake.adapter.credentials_url("DATABASE") == url
    assert fake.adapter.credentials_url("DATABASE") == url
    assert len(read_argv_log(fake.argv_log)) == 1
    fake.adapter.credentials_url("HEROKU_POSTGRESQL_RED")  # another attachment: its own read
    assert len(read_argv_log(fake.argv_log)) == 2
    fake.adapter.credentials_url("DATABASE", fresh=True)
    assert len(read_argv_log(fake.argv_log)) == 3
    later = heroku_mod._now() + heroku_mod.CREDENTIALS_MAX_AGE + 1
    monkeypatch.setattr(heroku_mod, "_now", lambda: later)
    fake.adapter.credentials_url("DATABASE")
    assert len(read_argv_log(fake.argv_log)) == 4


def test_version_too_old_is_tool_missing(fake: FakeHarness) -> None:
    fake.fake(printing("heroku/7.60.2 linux-x64 node-v14.19.0"))
    with pytest.raises(ToolMissing, match="too old") as caught:
        fake.adapter.version()
    assert caught.value.resolution == heroku_mod.INSTALL_HINT


def test_missing_cli_is_tool_missing_with_install_hint(
    tmp_path: Path, audit: ListAudit, argv_log: Path
) -> None:
    masker = SecretMasker()
    runner = Runner(masker, audit=audit, base_env={"PATH": "", ARGV_LOG_ENV: str(argv_log)})
    adapter = HerokuAdapter(runner, masker, APP, tmp_path / "work")
    with pytest.raises(ToolMissing) as caught:
        adapter.version()
    assert caught.value.resolution == heroku_mod.INSTALL_HINT
    assert "heroku CLI is not installed" in caught.value.brief
    assert _raised_cleanly(caught.value)
    with pytest.raises(ToolMissing, match="heroku") as caught:
        adapter.app_info()
    assert "heroku" in caught.value.resolution
    assert read_argv_log(argv_log) == [] and audit.of("command") == []


@pytest.mark.parametrize(
    ("heroku_host", "env_extra", "git_host"),
    [
        ("heroku.com", {}, "git.heroku.com"),
        ("http://127.0.0.1:5555", {}, "127.0.0.1:5555"),
        ("", {}, "git.heroku.com"),
        ("heroku.com", {"HEROKU_GIT_HOST": "git.example.test"}, "git.example.test"),
    ],
    ids=["default", "loopback-emulator", "empty", "HEROKU_GIT_HOST"],
)
def test_private_gitconfig_holds_the_key_the_cli_reads(
    tmp_path: Path, heroku_host: str, env_extra: dict[str, str], git_host: str
) -> None:
    """The CLI runs ``git config --global --get credential.https://<httpGitHost>.helper`` on
    every call and rewrites the global gitconfig unless it is ``!heroku git:credentials``
    (reference §2.6; @heroku-cli/command lib/vars.js httpGitHost). The adapter pre-seeds a
    private GIT_CONFIG_GLOBAL so the CLI only reads it: the key must be the one the CLI reads.
    """
    masker = SecretMasker()
    runner = Runner(masker, base_env={"HEROKU_HOST": heroku_host, **env_extra})
    adapter = HerokuAdapter(runner, masker, APP, tmp_path / "work")
    env = adapter._env()
    gitconfig = Path(str(env["GIT_CONFIG_GLOBAL"]))
    assert stat.S_IMODE(gitconfig.stat().st_mode) == 0o600
    got = subprocess.run(
        [
            "git",
            "config",
            "--file",
            str(gitconfig),
            "--get",
            f"credential.https://{git_host}.helper",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert got.stdout.strip() == HELPER, gitconfig.read_text()


# ============================================================================================
# Slow tier: the real heroku CLI against the emulator


@dataclass
class Emulator(Running):
    db: AppDatabase = field(repr=False)

    def reset(self) -> None:
        save_state(self.state_path, make_state(self.db))

    def add_fault(self, fault: dict[str, Any]) -> None:
        with update_state(self.state_path) as state:
            state.setdefault("faults", []).append(fault)


def make_state(db: AppDatabase) -> dict[str, Any]:
    facts: dict[str, str | int] = {
        "host": "127.0.0.1",
        "port": db.cluster.port,
        "dbname": db.dbname,
        "user": db.owner,
        "password": db.password,
    }
    return default_state(
        APP, db=facts, domain=DOMAIN, heroku_dns_target=DNS_TARGET, api_key=API_KEY
    )


@pytest.fixture(scope="module")
def emulator(
    pg_source: PgCluster, tls_files: TlsFiles, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Emulator]:
    """The emulator as a real subprocess for this module; each test resets its state."""
    db = make_database(pg_source, "heroku")
    db.execute(*WIDGETS_SQL)
    folder = tmp_path_factory.mktemp("heroku-emulator")
    state_path, log_path, pid_file = folder / "state.json", folder / "emu.log", folder / "pid"
    save_state(state_path, make_state(db))
    started = spawn_emulator(
        state_path, tls_files.cert_file, tls_files.key_file, log_path, pid_file
    )
    try:
        yield Emulator(
            started.proc, started.port, started.backup_port, state_path, log_path, pid_file, db
        )
    finally:
        stop_emulator(started)


@dataclass
class Harness:
    emu: Emulator
    masker: SecretMasker
    audit: ListAudit
    runner: Runner
    adapter: HerokuAdapter
    argv_log: Path
    work_dir: Path
    home: Path
    sleeps: list[float]
    ca_file: Path
    seen_secrets: set[str] = field(default_factory=set)

    def runner_with(self, **base_env: str) -> Runner:
        env = {**self.runner.base_env, **base_env}
        return Runner(
            self.masker,
            audit=self.audit,
            base_env=env,
            path_prefix=list(self.runner.path_prefix),
            _sleep=self.sleeps.append,
        )

    def collect_secrets(self) -> set[str]:
        state = self.emu.state()
        values = {API_KEY, self.emu.db.password, quote(self.emu.db.password, safe="")}
        for entry in state["apps"].values():
            values |= {v for k, v in entry["config_vars"].items() if not is_public_config(k, v)}
            values |= {str(t.get("token")) for t in entry.get("transfers") or []}
        self.seen_secrets |= values
        return self.seen_secrets


@pytest.fixture
def hk(
    emulator: Emulator, tmp_path: Path, audit: ListAudit, argv_log: Path, tls_files: TlsFiles
) -> Iterator[Harness]:
    emulator.reset()
    home = tmp_path / "home"
    prepare_home(home, emulator.port)
    base_env = cli_env(emulator.port, API_KEY, home, tls_files.ca_file)
    base_env.pop("PATH")
    base_env[ARGV_LOG_ENV] = str(argv_log)
    masker = SecretMasker()
    sleeps: list[float] = []
    runner = Runner(
        masker, audit=audit, base_env=base_env, path_prefix=[str(HEROKU_BIN)], _sleep=sleeps.append
    )
    work = tmp_path / "work"
    harness = Harness(
        emulator,
        masker,
        audit,
        runner,
        HerokuAdapter(runner, masker, APP, work),
        argv_log,
        work,
        home,
        sleeps,
        tls_files.ca_file,
    )
    harness.collect_secrets()
    yield harness
    secrets_now = harness.collect_secrets()
    argvs = assert_argv_clean(argv_log, secrets_now)
    assert argvs, "the argv log hook recorded nothing"
    text = audit.text()
    leaked = [s for s in secrets_now if s in text]
    assert not leaked, "a secret reached the audit events"


@pytest.mark.slow
@needs_heroku_cli
def test_version(hk: Harness) -> None:
    assert hk.adapter.version() == (11, 10, 0)


@pytest.mark.slow
@needs_heroku_cli
def test_reads(hk: Harness) -> None:
    entry = hk.emu.state()["apps"][APP]
    info = hk.adapter.app_info()
    assert info["app"]["name"] == APP and info["app"]["id"] == entry["app"]["id"]
    assert [d["name"] for d in info["dynos"]] == ["web.1", "web.2", "worker.1"]

    assert hk.adapter.formation() == [
        FormationEntry("web", 2, "standard-1X"),
        FormationEntry("worker", 1, "standard-2X"),
    ]
    dynos = hk.adapter.dynos()
    assert [(d["name"], d["size"], d["state"]) for d in dynos] == [
        ("web.1", "standard-1X", "up"),
        ("web.2", "standard-1X", "up"),
        ("worker.1", "standard-2X", "up"),
    ]
    addons = hk.adapter.addons()
    assert [a["plan"]["name"] for a in addons] == [a["plan"]["name"] for a in entry["addons"]]
    assert [[att["name"] for att in a["attachments"]] for a in addons] == [
        ["DATABASE"],
        ["REDIS"],
        ["SCHEDULER"],
    ]
    assert all("database" not in a for a in addons)  # the backing DB facts never leave the API
    domains = {d["kind"]: d for d in hk.adapter.domains()}
    assert domains["custom"]["hostname"] == DOMAIN and domains["custom"]["cname"] == DNS_TARGET
    assert domains["heroku"]["hostname"].endswith(".herokuapp.com")

    commands = hk.audit.of("command")
    assert [c["argv"][1] for c in commands] == ["apps:info", "ps:scale", "ps", "addons", "domains"]
    assert all(c["outcome"] == "ok" and c["exit_code"] == 0 for c in commands)
    assert all(c["argv"][-2:] == ["-a", APP] for c in commands)
    assert hk.audit.of("retry") == []


@pytest.mark.slow
@needs_heroku_cli
def test_cli_leaves_the_private_gitconfig_untouched(hk: Harness) -> None:
    """The adapter pre-seeds GIT_CONFIG_GLOBAL so the CLI's credential-helper hook only reads
    it (reference §2.6): a CLI call must not rewrite it."""
    gitconfig = Path(str(hk.adapter._env()["GIT_CONFIG_GLOBAL"]))
    before = (gitconfig.stat().st_ino, gitconfig.read_text())
    assert hk.adapter.maintenance() is False
    after = (gitconfig.stat().st_ino, gitconfig.read_text())
    assert after == before, f"the heroku CLI rewrote {gitconfig}:\n{after[1]}"


@pytest.mark.slow
@needs_heroku_cli
def test_config_registers_secrets_and_500_html_is_not_retried(hk: Harness) -> None:
    expected = hk.emu.state()["apps"][APP]["config_vars"]
    config = hk.adapter.config()
    assert config == expected
    secret = config["SECRET_KEY_BASE"]
    assert secret in hk.masker and config["STRIPE_API_KEY"] in hk.masker
    assert config["RAILS_ENV"] == "production" and "production" not in hk.masker
    assert hk.masker.mask(f"x {secret} production") == f"x {MASK} production"
    db_password = hk.emu.db.password
    assert db_password in hk.masker  # from DATABASE_URL

    # Now the API answers with an HTML 500 that echoes the secret (a proxy error page, say).
    hk.emu.add_fault(
        {
            "method": "GET",
            "path": f"/apps/{APP}/config-vars",
            "status": 500,
            "body": f"<html>oops {secret} production</html>",
            "times": 3,  # a 5xx page is transient (issue 15): every attempt must meet it
        }
    )
    with pytest.raises(CommandError) as caught:
        hk.adapter.config()
    exc = caught.value
    assert exc.returncode == 1 and exc.transient
    assert f"HTTP Error 500 for GET http://127.0.0.1/apps/{APP}/config-vars" in exc.stderr_tail
    assert f"<html>oops {MASK} production</html>" in exc.stderr_tail
    assert secret not in str(exc) and secret not in exc.stderr_tail
    assert len(hk.audit.of("retry")) == 2
    last = hk.audit.of("command")[-1]
    assert last["outcome"] == "failed" and last["exit_code"] == 1
    assert f"oops {MASK} production" in last["stderr_tail"]
    assert secret not in hk.audit.text()
    assert hk.emu.state()["faults"] == []


@pytest.mark.slow
@needs_heroku_cli
def test_injected_500_json_is_retried_and_succeeds(hk: Harness) -> None:
    hk.emu.add_fault(
        {
            "method": "GET",
            "path": f"/apps/{APP}/config-vars",
            "status": 500,
            "body": {"id": "internal_server_error", "message": "Internal server error."},
        }
    )
    config = hk.adapter.config()
    assert config == hk.emu.state()["apps"][APP]["config_vars"]
    assert [c["outcome"] for c in hk.audit.of("command")] == ["failed", "ok"]
    assert hk.audit.of("command")[0]["exit_code"] == 2
    (retry,) = hk.audit.of("retry")
    assert retry["attempt"] == 1 and retry["argv"][1] == "config"
    assert "exit code 2" in retry["reason"]
    assert len(hk.sleeps) == 1 and 0 < hk.sleeps[0] <= 8
    assert hk.emu.state()["faults"] == []


@pytest.mark.slow
@needs_heroku_cli
def test_set_maintenance_on_is_verified(hk: Harness) -> None:
    hk.adapter.set_maintenance(True)
    assert hk.emu.state()["apps"][APP]["app"]["maintenance"] is True
    assert [c["argv"][1] for c in hk.audit.of("command")] == ["maintenance:on", "maintenance"]


@pytest.mark.slow
@needs_heroku_cli
def test_scale_worker_to_zero_is_verified(hk: Harness) -> None:
    hk.adapter.scale("worker", 0)
    formation = {p["type"]: p["quantity"] for p in hk.emu.state()["apps"][APP]["formation"]}
    assert formation == {"web": 2, "worker": 0}
    assert [c["argv"][1:] for c in hk.audit.of("command")] == [
        ["ps:scale", "worker=0", "-a", APP],
        ["ps:scale", "-a", APP],
    ]


@pytest.mark.slow
@needs_heroku_cli
def test_backup_capture_url_and_credentials(hk: Harness, tmp_path: Path) -> None:
    backup = hk.adapter.backup_capture("DATABASE", timeout=120)
    assert backup == "b001"
    (transfer,) = hk.emu.state()["apps"][APP]["transfers"]
    assert transfer["succeeded"] is True

    url = hk.adapter.backup_url(backup)
    assert url.startswith(f"https://127.0.0.1:{hk.emu.backup_port}/backups/")
    assert url.endswith("/b001.dump") and transfer["token"] in url
    assert url in hk.masker
    assert hk.masker.mask(f"GET {url}") == f"GET {MASK}"

    db = hk.emu.db
    cred = hk.adapter.credentials_url("DATABASE")
    assert cred == (
        f"postgres://{quote(db.owner, safe='')}:{quote(db.password, safe='')}"
        f"@127.0.0.1:{db.cluster.port}/{db.dbname}"
    )
    assert cred in hk.masker and db.password in hk.masker

    # The URL really serves the dump: cutover's own downloader and pg_restore --list agree.
    dest = tmp_path / "dl" / "backup.dump"
    size, digest = HttpClient(hk.masker, ca_file=str(hk.ca_file)).download(url, dest)
    dump = hk.emu.state_path.parent / "backups" / "b001.dump"
    assert size == dump.stat().st_size and dest.read_bytes() == dump.read_bytes()
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600 and len(digest) == 64
    assert PostgresAdapter(hk.runner, hk.masker).list_dump(dest) > 0
    assert [c["argv"][1] for c in hk.audit.of("command")][:3] == [
        "pg:backups:capture",
        "pg:backups:url",
        "pg:credentials:url",
    ]


@pytest.mark.slow
@needs_heroku_cli
def test_real_cli_parses_with_force_color_in_the_operators_environment(
    hk: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real heroku 11.10.0 with FORCE_COLOR=1 and CI set in the operator's shell: capture.js
    colours the backup name through ansis (color.cyan); the adapter clears FORCE_COLOR and sets
    NO_COLOR=1, so the id and every --json output still parse."""
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("CI", "true")
    assert hk.adapter.backup_capture("DATABASE", timeout=120) == "b001"
    assert hk.adapter.app_info()["app"]["name"] == APP
    assert isinstance(hk.adapter.config(), dict)
    assert hk.adapter.maintenance() is False


@pytest.mark.slow
@needs_heroku_cli
def test_unknown_app_is_command_error_rc2(hk: Harness) -> None:
    adapter = HerokuAdapter(hk.runner, hk.masker, "missing", hk.work_dir)
    with pytest.raises(CommandError) as caught:
        adapter.config()
    exc = caught.value
    assert exc.returncode == 2 and not exc.transient
    assert "Couldn't find that app." in exc.stderr_tail
    assert "Error ID: not_found" in exc.stderr_tail
    assert "heroku config --json -a missing" in str(exc)
    assert hk.audit.of("retry") == [] and len(hk.audit.of("command")) == 1


@pytest.mark.slow
@needs_heroku_cli
def test_wrong_api_key_is_command_error_rc1(hk: Harness) -> None:
    runner = hk.runner_with(HEROKU_API_KEY="not-the-right-key")
    adapter = HerokuAdapter(runner, hk.masker, APP, hk.work_dir)
    with pytest.raises(CommandError) as caught:
        adapter.maintenance()
    exc = caught.value
    assert exc.returncode == 1 and not exc.transient
    assert "The token provided to HEROKU_API_KEY is invalid." in exc.stderr_tail
    assert hk.audit.of("retry") == [] and len(hk.audit.of("command")) == 1
