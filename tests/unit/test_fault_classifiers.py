"""Issue 15: what is tried again after network trouble, and what is not.

The texts are what the real tools print: the heroku CLI 11.10.0's were recorded from the real
CLI against the emulator's faults (tests/sandbox/test_heroku_api_faults.py runs them live); the
convox ones come from the stand-in's fault builders, which cite the convox source.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from cutover.adapters import convox, heroku, pgstaging
from cutover.adapters.postgres import ConnInfo
from cutover.errors import CommandError, CutoverError
from cutover.runcapture import Tail
from cutover.runner import Result
from cutover.sandbox.convox_fake import faults as cx
from cutover.secrets import SecretMasker
from cutover.steps import dataretry


def result(stderr: str, stdout: str = "") -> Result:
    return Result(["x"], 1, stdout, stderr, 0.0)


# -- heroku -------------------------------------------------------------------------------------
HEROKU_TRANSIENT = {
    "json 503 (exit 2)": " \u203a   Error: The API is temporarily unavailable. Please try again"
    " in a few minutes.\n \u203a\n \u203a   Error ID: service_unavailable\n",
    "html 502 (exit 1)": "    Error: HTTP Error 502 for GET http://127.0.0.1/apps/myapp/config-vars"
    "\n    <html><head><title>502 Service Unavailable</title></head></html>\n",
    "reset after the CLI's 5 retries": "    Error: read ECONNRESET\n    Code: ECONNRESET\n",
    "refused": "    Error: connect ECONNREFUSED 127.0.0.1:5000\n    Code: ECONNREFUSED\n",
    "http-call's 60 s timeout": "    Error: Request timed out\n",
}
HEROKU_PERMANENT = {
    "not found": " \u203a   Error: Couldn't find that app.\n \u203a\n"
    " \u203a   Error ID: not_found\n",
    "bad token": "    Error: The token provided to HEROKU_API_KEY is invalid.\n",
    "4xx page": "    Error: HTTP Error 404 for GET http://127.0.0.1/x\n    <html></html>\n",
    "a 503 in a message": " \u203a   Error: Couldn't find dyno web.503.\n \u203a   Error ID: "
    "not_found\n",
}


@pytest.mark.parametrize("text", HEROKU_TRANSIENT.values(), ids=HEROKU_TRANSIENT.keys())
def test_heroku_network_trouble_is_transient(text: str) -> None:
    assert heroku._transient(result(text))


@pytest.mark.parametrize("text", HEROKU_PERMANENT.values(), ids=HEROKU_PERMANENT.keys())
def test_heroku_api_refusals_are_permanent(text: str) -> None:
    assert not heroku._transient(result(text))
    assert not heroku._not_sent(result(text))


def test_heroku_only_a_refused_connection_counts_as_not_sent() -> None:
    assert heroku._not_sent(result(HEROKU_TRANSIENT["refused"]))
    for key in ("json 503 (exit 2)", "html 502 (exit 1)", "reset after the CLI's 5 retries"):
        assert not heroku._not_sent(result(HEROKU_TRANSIENT[key]))


# -- convox -------------------------------------------------------------------------------------
CONVOX_FAULTS = {
    "refused": cx.refused("apps"),
    "dial timeout": cx.dial_timeout("apps"),
    "502 page": cx.server_error("apps", status=502),
    "empty 503": cx.server_error("apps", status=503),
    "EOF": cx.dropped("apps"),
}


@pytest.mark.parametrize("fault", CONVOX_FAULTS.values(), ids=CONVOX_FAULTS.keys())
def test_convox_network_trouble_is_transient(fault: dict[str, Any]) -> None:
    assert convox._transient(result(str(fault["stderr"])))


def test_convox_not_sent_is_a_dial_failure_only() -> None:
    assert convox._not_sent(result(str(CONVOX_FAULTS["refused"]["stderr"])))
    assert convox._not_sent(result(str(CONVOX_FAULTS["dial timeout"]["stderr"])))
    for key in ("502 page", "empty 503", "EOF"):
        assert not convox._not_sent(result(str(CONVOX_FAULTS[key]["stderr"])))


def test_convox_a_build_refused_after_it_started_is_not_sent_again() -> None:
    refused = str(CONVOX_FAULTS["refused"]["stderr"])
    assert convox._ship_not_sent(result(refused, "Packaging source... OK\n"))
    started = "Packaging source... OK\nUploading source... OK\nStarting build... OK\n"
    assert not convox._ship_not_sent(result(refused, started))


def test_convox_a_build_whose_log_outgrew_the_stderr_bound_is_never_sent_again() -> None:
    # `--id` sends the build's log to stderr; the runner keeps its last MiB (runcapture.Tail),
    # so "Starting build... OK" may be gone: a refusal then may come after the build started.
    tail = Tail(1024)
    tail.write(b"Starting build... OK\n" + b"step output\n" * 400)
    tail.write(str(CONVOX_FAULTS["refused"]["stderr"]).encode())
    assert convox._not_sent(result(tail.text()))
    assert not convox._ship_not_sent(result(tail.text()))


def test_convox_a_promote_refused_after_it_was_sent_is_not_sent_again() -> None:
    # pkg/cli/releases.go releasePromote: AppGet, then "Promoting <id>", ReleasePromote, then
    # the rollout wait, whose polls can be refused after the promote was sent.
    refused = str(CONVOX_FAULTS["refused"]["stderr"])
    assert convox._promote_not_sent(result(refused))
    assert not convox._promote_not_sent(result(refused, "Promoting RABCDEFGH... \n"))


@pytest.mark.parametrize(
    "text",
    [
        "ERROR: listen tcp 127.0.0.1:45030: bind: address already in use",  # was transient
        "ERROR: build failed",
        "ERROR: no such resource: database",
        "ERROR: release R5034ABCDE not found",
        "ERROR: rollback: timeout",  # a promote the rack rolled back
    ],
)
def test_convox_permanent_errors(text: str) -> None:
    assert not convox._transient(result(text))


# -- the data step's restore and download --------------------------------------------------------
LOST = (
    "pg_restore: error: could not execute query: server closed the connection unexpectedly\n"
    "\tThis probably means the server terminated abnormally\n"
)


def lost(text: str = LOST, **kw: Any) -> CommandError:
    return CommandError(["pg_restore", "--dbname", "db__cutover_next"], 1, text, **kw)


def test_connection_lost_is_only_a_lost_server() -> None:
    assert dataretry.connection_lost(lost())
    assert dataretry.connection_lost(lost("pg_restore: error: SSL SYSCALL error: EOF detected"))
    assert not dataretry.connection_lost(lost(timed_out=True))
    assert not dataretry.connection_lost(
        lost('pg_restore: error: could not execute query: ERROR:  relation "x" already exists')
    )
    assert not dataretry.connection_lost(CutoverError(LOST))
    # libpq says "connection to server at ... failed" for a wrong password or database too.
    at = 'pg_restore: error: connection to server at "127.0.0.1", port 5433 failed: '
    assert dataretry.connection_lost(lost(at + "Connection refused"))
    assert not dataretry.connection_lost(lost(at + "FATAL:  password authentication failed"))
    assert not dataretry.connection_lost(lost(at + 'FATAL:  database "d" does not exist'))


class FakeCtx(SimpleNamespace):
    pass


def fake_ctx(sleeps: list[float], notes: list[str]) -> Any:
    return FakeCtx(
        runner=SimpleNamespace(_sleep=sleeps.append),
        masker=SecretMasker(),
        postgres=object(),
        note=notes.append,
        http=None,
    )


def test_a_lost_restore_recreates_staging_and_restores_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recreated: list[str] = []
    monkeypatch.setattr(pgstaging, "create_staging", lambda pg, conn: recreated.append(conn.dbname))
    sleeps: list[float] = []
    notes: list[str] = []
    calls = iter([lost(), lost(), 42])

    def restore() -> int:
        outcome = next(calls)
        if isinstance(outcome, Exception):
            raise outcome
        return cast(int, outcome)

    staging = ConnInfo("127.0.0.1", 5, "u", "app__cutover_next", "pw")
    assert dataretry.restore_retrying(fake_ctx(sleeps, notes), staging, restore) == 42
    assert recreated == ["app", "app"]  # create_staging takes <db> and makes <db>__cutover_next
    assert len(sleeps) == 2
    assert "app is untouched" in notes[0] and "attempt 2 of 3" in notes[0]


def test_a_restore_error_of_the_data_is_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pgstaging, "create_staging", lambda pg, conn: pytest.fail("recreated"))
    staging = ConnInfo("127.0.0.1", 5, "u", "app__cutover_next", "pw")
    bad = lost('pg_restore: error: COPY failed for table "t": ERROR:  invalid input syntax')

    def restore() -> int:
        raise bad

    with pytest.raises(CommandError) as caught:
        dataretry.restore_retrying(fake_ctx([], []), staging, restore)
    assert caught.value is bad


@pytest.mark.parametrize(
    ("message", "again"),
    [
        ("downloading the backup failed: HTTP 503 from https://127.0.0.1:1/backups/x", True),
        ("downloading the backup failed: Server disconnected without sending a response.", True),
        ("downloading the backup failed: [Errno 111] Connection refused", True),
        ("downloading the backup failed: HTTP 404 from https://127.0.0.1:1/backups/x", False),
        ("the backup download is incomplete: got 1 of 2 bytes", False),
    ],
)
def test_download_retry_classification(message: str, again: bool) -> None:
    assert dataretry.download_failed_transiently(CutoverError(message)) is again


def test_a_download_is_tried_again_after_a_5xx(tmp_path: Path) -> None:
    attempts: list[str] = []

    def download(url: str, dest: Path) -> tuple[int, str]:
        attempts.append(url)
        if len(attempts) == 1:
            raise CutoverError(f"downloading the backup failed: HTTP 503 from {url}")
        return 7, "sha"

    sleeps: list[float] = []
    notes: list[str] = []
    ctx = fake_ctx(sleeps, notes)
    ctx.http = SimpleNamespace(download=download)
    assert dataretry.download_retrying(ctx, "https://h/b", tmp_path / "d") == (7, "sha")
    assert len(attempts) == 2 and len(sleeps) == 1
    assert "downloading again (attempt 2 of 3)" in notes[0]


def test_heroku_a_capture_is_repeated_only_before_heroku_named_the_backup() -> None:
    # pg/backups/capture.js prints "Backing up DATABASE to b042" once the POST returned; a
    # network failure while it then polls must not start a second backup.
    html_502 = HEROKU_TRANSIENT["html 502 (exit 1)"]
    assert heroku._capture_not_started(result(html_502))
    named = (
        "Backing up DATABASE to b042... \n" + HEROKU_TRANSIENT["reset after the CLI's 5 retries"]
    )
    assert not heroku._capture_not_started(result(named))
    assert not heroku._capture_not_started(result(HEROKU_PERMANENT["not found"]))
