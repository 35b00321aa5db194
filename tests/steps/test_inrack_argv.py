"""The in-rack copy's command line, as the real convox CLI and rack take it apart.

pkg/cli/run.go ``Run``: ``command := strings.Join(c.Args[1:], " ")``; provider/k8s/process.go
``ProcessExec``: ``shellquote.Split(command)`` and the exec of that argv (no shell). The flags
come from cutover/adapters/convox_cli.json (pkg/cli/run.go's registered flags).
"""

from __future__ import annotations

import shlex

import pytest

from cutover.adapters import convox_cli
from cutover.adapters.convox import ConvoxAdapter
from cutover.errors import CutoverError
from cutover.playbook import Playbook
from cutover.runner import Runner
from cutover.secrets import SecretMasker
from cutover.steps import inrack
from cutover.steps.inrack import parse_client, sync_in_rack
from cutover.steps.inrack_script import MARKER, build_script, run_command, stdin_payload


def test_the_run_argv_parses_and_the_rack_execs_sh_with_the_whole_script() -> None:
    script = build_script("DATABASE", "appdb__cutover_next", ["pg_stat_statements"])
    adapter = ConvoxAdapter(Runner(SecretMasker()), SecretMasker(), "demo", "acme/prod")
    argv = adapter.run_argv("pgclient", run_command(script), None, 3600)
    parsed = convox_cli.parse(argv[1:])
    assert parsed.command is not None and parsed.command.name == "run"
    assert parsed.flags["timeout"] == 3600 and parsed.flags["app"] == "demo"
    assert parsed.flags["rack"] == "acme/prod"
    service, *words = parsed.args
    assert service == "pgclient"
    # Join with spaces (run.go), split like a POSIX shell (shellquote), exec without a shell.
    assert shlex.split(" ".join(words)) == ["sh", "-c", script]


def test_the_script_names_the_resource_variables_and_the_target_only() -> None:
    script = build_script("MAIN_DB", "main__cutover_next", ["pg_stat_statements", "pg_buffercache"])
    assert '"$MAIN_DB_HOST"' in script and '"${MAIN_DB_PASS:-}"' in script
    assert "TARGET_DB=main__cutover_next" in script
    assert 'SKIP="pg_stat_statements pg_buffercache"' in script
    assert "pg_dump -Fc --no-owner --no-acl" in script
    assert "pg_restore --verbose --no-owner --no-acl --exit-on-error --use-list" in script
    assert f'echo "{MARKER} $*"' in script


@pytest.mark.parametrize(
    ("prefix", "target", "skip"),
    [
        ("database", "x", []),
        ("DATABASE", "x'; drop", []),
        ("DATABASE", "x", ["pg$(id)"]),
        ("DATABASE", "x y", []),
    ],
)
def test_names_that_would_need_quoting_are_refused(
    prefix: str, target: str, skip: list[str]
) -> None:
    with pytest.raises(ValueError):
        build_script(prefix, target, skip)


def test_the_connection_goes_on_stdin_one_field_a_line() -> None:
    payload = stdin_payload("h.example", 5432, "u", "p@ss:w/rd", "d", "require")
    assert payload == "h.example\n5432\nu\np@ss:w/rd\nd\nrequire\n"
    with pytest.raises(ValueError):
        stdin_payload("h", 5432, "u", "two\nlines", "d", "require")


class _Ctx:
    """What :func:`parse_client` reads of a Context: the playbook's database section."""

    def __init__(self) -> None:
        self.model = Playbook.model_validate(
            {"version": 1, "heroku": {"app": "hk-app"}, "convox": {"app": "demo"}, "database": {}}
        )


def _manifest(service: str) -> str:
    return f"resources:\n  database:\n    type: postgres\nservices:\n  pgclient:\n{service}"


@pytest.mark.parametrize(
    ("service", "major"),
    [
        ("    image: postgres:16\n    resources: [database]\n", 16),
        ("    image: postgres:15.6-bookworm\n    resources: [database]\n", 15),
        ("    image: docker.io/library/postgres:14-alpine\n    resources: [database]\n", 14),
        ("    image: postgis/postgis:16-3.4\n    resources: [database]\n", 16),
    ],
)
def test_parse_client_reads_the_image_major(service: str, major: int) -> None:
    client = parse_client(_Ctx(), _manifest(service), "convox.yml")  # type: ignore[arg-type]
    assert (client.name, client.major, client.env_prefix) == ("pgclient", major, "DATABASE")


@pytest.mark.parametrize(
    ("service", "message"),
    [
        ("    image: redis:7\n    resources: [database]\n", "needs a PostgreSQL image"),
        ("    image: postgres\n    resources: [database]\n", "with its major pinned"),
        ("    build: .\n    resources: [database]\n", "is 'not set'"),
        ("    image: postgres:16\n    resources: [database:PG_URL]\n", "does not link"),
        ("    image: postgres:16\n", "(it has: none)"),
    ],
)
def test_parse_client_refuses_what_cannot_copy(service: str, message: str) -> None:
    with pytest.raises(CutoverError) as caught:
        parse_client(_Ctx(), _manifest(service), "convox.yml")  # type: ignore[arg-type]
    assert message in caught.value.brief
    assert "image: postgres:<Heroku's major>" in caught.value.resolution


def test_parse_client_refuses_a_manifest_without_the_service() -> None:
    with pytest.raises(CutoverError) as caught:
        parse_client(_Ctx(), "services:\n  web:\n    build: .\n", "convox.yml")  # type: ignore[arg-type]
    assert caught.value.brief == "database.in_rack_service: no service 'pgclient' in the convox.yml"
    assert "`cutover translate --pg-client` writes it" in caught.value.resolution


class _Untouchable:
    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"{name} used before the input was checked")


class _SyncCtx(_Ctx):
    """Enough of a Context for sync_in_rack to check its input; anything else fails the test."""

    def __init__(self) -> None:
        super().__init__()
        self.masker = SecretMasker()
        self.postgres = _Untouchable()
        self.convox = _Untouchable()
        self.notes: list[str] = []

    def note(self, message: str) -> None:
        self.notes.append(message)


@pytest.mark.parametrize(
    ("url", "target", "skip", "message"),
    [
        ("postgres://u:two%0Alines@h:5432/d", "d__cutover_next", [], "line break"),
        ("postgres://u:p%0D@h:5432/d", "d__cutover_next", [], "line break"),
        ("postgres://u:pw@h:5432/d", "d b", [], "'d b'"),
        ("postgres://u:pw@h:5432/d", "d__cutover_next", ["pg$(id)"], "'pg$(id)'"),
    ],
)
def test_input_the_script_cannot_carry_is_refused_before_anything_runs(
    url: str, target: str, skip: list[str], message: str
) -> None:
    ctx = _SyncCtx()
    with pytest.raises(CutoverError) as caught:
        sync_in_rack(ctx, url, target, skip)  # type: ignore[arg-type]
    assert message in caught.value.brief
    assert "two\nlines" not in str(caught.value) and not ctx.notes


class _FakeRun:
    """A Background whose output arrives in chunks over several polls, lines split across
    chunks; it counts what the watcher reads."""

    def __init__(self, chunks: list[str], code: int) -> None:
        self.chunks, self.code, self.polls, self.read = chunks, code, 0, 0
        self.stderr = ""

    def exit_code(self) -> int | None:
        self.polls += 1
        return self.code if self.polls > len(self.chunks) else None

    def read_stdout(self, start: int) -> tuple[str, int]:
        arrived = self.chunks[start : self.polls]
        self.read += sum(map(len, arrived))
        return "".join(arrived), start + len(arrived)

    def stop(self) -> None:
        raise AssertionError("stopped a run that ended")


def test_the_watcher_reads_each_chunk_once_and_rejoins_split_lines(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(inrack, "_POLL", 0)
    body = "".join(f'pg_restore: creating TABLE "public.t{i}"\n' for i in range(3000))
    text = (
        f"{MARKER} start\n{MARKER} objects 4000\n{body}{MARKER} entries 1000\n"
        f"{MARKER} done bytes=123 objects=4000 seconds=2"  # the last line has no newline
    )
    chunks = [text[i : i + 977] for i in range(0, len(text), 977)]
    run = _FakeRun(chunks, 0)
    ctx = _SyncCtx()
    code, watch = inrack._watch(ctx, run, float("inf"))  # type: ignore[arg-type]
    assert code == 0 and run.read == len(text)
    assert (watch.total, watch.entries, watch.large_objects) == (4000, 3000, 1000)
    assert watch.done == {"bytes": 123, "objects": 4000}
    assert ctx.notes == ["in-rack copy: 4000 objects to restore"]


class _Processes:
    def __init__(self, rows: list[dict[str, str]]) -> None:
        self.rows = rows

    def processes(self, service: str) -> list[dict[str, str]]:
        return [r for r in self.rows if r["SERVICE"] == service]


def test_only_running_one_off_pods_of_the_service_count_as_an_earlier_copy() -> None:
    # provider/k8s/process.go processFromPod: phase Succeeded -> complete, Failed -> failed;
    # controller_pod.go deletes those 5 s later. A pod whose sleep has ended copies nothing.
    rows = [
        {
            "ID": "pgclient-aaaaa",
            "SERVICE": "pgclient",
            "STATUS": "running",
            "COMMAND": "sleep 3600",
        },
        {"ID": "pgclient-bbbbb", "SERVICE": "pgclient", "STATUS": "pending", "COMMAND": "sleep 60"},
        {
            "ID": "pgclient-ccccc",
            "SERVICE": "pgclient",
            "STATUS": "complete",
            "COMMAND": "sleep 10",
        },
        {"ID": "pgclient-ddddd", "SERVICE": "pgclient", "STATUS": "failed", "COMMAND": "sleep 10"},
        {"ID": "pgclient-eeeee", "SERVICE": "pgclient", "STATUS": "crashed", "COMMAND": "sleep 10"},
        {"ID": "web-fffff", "SERVICE": "web", "STATUS": "running", "COMMAND": "sleep 3600"},
    ]
    ctx = _SyncCtx()
    ctx.convox = _Processes(rows)  # type: ignore[assignment]
    assert inrack.leftover_pods(ctx, "pgclient") == ["pgclient-aaaaa", "pgclient-bbbbb"]  # type: ignore[arg-type]
