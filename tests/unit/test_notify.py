"""cutover/notify.py against real HTTP servers on 127.0.0.1: one that records the posts, one that
answers 500, a port nothing listens on, and one that accepts and never answers. The notifier
is fed by a real AuditLog; a failed notification never raises, is noted once and audited, and
the URL (a secret) is in no event, note or error."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.webhook import Received, webhook_receiver

from cutover.engine.audit import AuditLog, read_events
from cutover.notify import NOTIFY_TIMEOUT, Notifier, attach, message
from cutover.playbook import LoadedPlaybook, Playbook
from cutover.secrets import SecretMasker

TOKEN = "T0KEN-b7f3c9d1e5a24f68"  # the secret part of the webhook URL


@pytest.fixture
def webhook() -> Iterator[tuple[str, Received]]:
    with webhook_receiver(TOKEN) as served:
        yield served


@pytest.fixture
def refusing() -> Iterator[tuple[str, Received]]:
    with webhook_receiver(TOKEN, status=500) as served:
        yield served


@pytest.fixture
def hanging() -> Iterator[str]:
    """Accepts connections (the kernel's backlog) and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/hooks/{TOKEN}"
    finally:
        sock.close()


@pytest.fixture
def down() -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    return f"http://127.0.0.1:{port}/hooks/{TOKEN}"


class Notes:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def note(self, message: str) -> None:
        self.lines.append(message)


def notifier(
    tmp_path: Path, url: str, timeout: float = NOTIFY_TIMEOUT
) -> tuple[Notifier, AuditLog, Notes]:
    masker = SecretMasker()
    audit = AuditLog(tmp_path / ".cutover", masker, "run1")
    notes = Notes()
    notify = Notifier(
        url,
        app="acme-shop",
        env_name="CUTOVER_WEBHOOK",
        audit=audit,
        masker=masker,
        reporter=notes,
        timeout=timeout,
    )
    audit.subscribe(notify)
    return notify, audit, notes


def the_run(audit: AuditLog) -> None:
    """The events a run with a failure and a rollback writes, notified or not."""
    audit.event("run-start", playbook="cutover.yml")
    audit.event("step-start", step="preflight", attempt=1)
    audit.event("step-start", step="maintenance-on", attempt=1)
    audit.event("command", step="maintenance-on", argv=["heroku", "maintenance:on"])
    audit.event("gate-waiting", step="final-sync", question="Copy <all> data & replace?")
    audit.event("step-failed", step="switch-dns", error="DNS update refused\nREFUSED by server")
    audit.event("rollback-start")
    audit.event("run-complete", downtime_seconds=19.2, predicted_downtime_seconds=20.0)


def events_text(tmp_path: Path) -> str:
    return (tmp_path / ".cutover" / "events.jsonl").read_text()


def wait_for(predicate: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.02)


def test_the_window_start_a_gate_a_failure_a_rollback_and_the_end_are_posted(
    tmp_path: Path, webhook: tuple[str, list[dict[str, Any]]]
) -> None:
    url, received = webhook
    notify, audit, notes = notifier(tmp_path, url)

    the_run(audit)

    assert notify.flush(30)
    bodies = [r["body"] for r in received]
    assert [(b["event"], b["step"]) for b in bodies] == [
        ("step-start", "maintenance-on"),
        ("gate-waiting", "final-sync"),
        ("step-failed", "switch-dns"),
        ("rollback-start", None),
        ("run-complete", None),
    ]
    assert {b["app"] for b in bodies} == {"acme-shop"}
    assert all(r["type"] == "application/json" and r["path"] == f"/hooks/{TOKEN}" for r in received)
    assert "window starts" in bodies[0]["text"]
    # Slack's formatting: & < > escaped in text.
    assert "Copy &lt;all&gt; data &amp; replace?" in bodies[1]["text"]
    assert bodies[2]["text"] == "cutover acme-shop: step switch-dns failed: DNS update refused"
    assert bodies[4]["text"] == (
        "cutover acme-shop: cutover complete; downtime 19.2s (predicted 20.0s)"
    )
    assert notify.sent == 5 and notify.failed == 0
    assert notes.lines == []
    assert TOKEN not in events_text(tmp_path)


def test_a_refused_notification_is_noted_once_and_audited_each_time(
    tmp_path: Path, refusing: tuple[str, list[dict[str, Any]]]
) -> None:
    url, received = refusing
    notify, audit, notes = notifier(tmp_path, url)

    the_run(audit)  # never raises

    assert notify.flush(30)
    assert len(received) == 5
    failed = [
        e
        for e in read_events(tmp_path / ".cutover" / "events.jsonl")
        if e["kind"] == "notify-failed"
    ]
    assert [e["event"] for e in failed] == [
        "step-start",
        "gate-waiting",
        "step-failed",
        "rollback-start",
        "run-complete",
    ]
    assert {e["error"] for e in failed} == {"the webhook answered HTTP 500"}
    assert len(notes.lines) == 1
    assert "$CUTOVER_WEBHOOK failed: the webhook answered HTTP 500" in notes.lines[0]
    assert "the run goes on" in notes.lines[0]
    assert TOKEN not in events_text(tmp_path) + notes.lines[0]


def test_a_webhook_nobody_listens_on_never_fails_the_run(tmp_path: Path, down: str) -> None:
    notify, audit, notes = notifier(tmp_path, down)

    the_run(audit)

    assert notify.flush(30)
    assert notify.failed == 5 and notify.sent == 0
    failed = [
        e
        for e in read_events(tmp_path / ".cutover" / "events.jsonl")
        if e["kind"] == "notify-failed"
    ]
    assert len(failed) == 5
    assert all(e["error"].startswith("ConnectError") for e in failed)
    assert len(notes.lines) == 1
    assert TOKEN not in events_text(tmp_path) + notes.lines[0]


def test_a_hanging_webhook_times_out_without_holding_up_the_run(
    tmp_path: Path, hanging: str
) -> None:
    notify, audit, notes = notifier(tmp_path, hanging, timeout=0.5)

    audit.event("step-start", step="maintenance-on", attempt=1)
    # The run goes on while the post waits: the next event is written at once.
    audit.event("command", step="maintenance-on", argv=["heroku", "maintenance:on"])
    kinds = [e["kind"] for e in read_events(tmp_path / ".cutover" / "events.jsonl")]
    assert kinds[:2] == ["step-start", "command"]

    wait_for(lambda: notify.failed == 1)
    failed = [
        e
        for e in read_events(tmp_path / ".cutover" / "events.jsonl")
        if e["kind"] == "notify-failed"
    ]
    assert [e["error"] for e in failed] == ["no answer within 0.5s"]
    assert notes.lines and "no answer within 0.5s" in notes.lines[0]


def test_the_default_timeout_is_five_seconds(
    tmp_path: Path, webhook: tuple[str, list[dict[str, Any]]]
) -> None:
    raw = {
        "heroku": {"app": "acme-shop"},
        "convox": {"app": "shop"},
        "notify": {"webhook_env": "CUTOVER_TEST_WEBHOOK"},
    }
    pb = LoadedPlaybook(tmp_path / "cutover.yml", Playbook.model_validate(raw), raw)
    masker = SecretMasker()
    audit = AuditLog(tmp_path / ".cutover", masker)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CUTOVER_TEST_WEBHOOK", webhook[0])
        notify = attach(audit, pb, masker, Notes())
    assert notify is not None and notify.timeout == 5.0
    assert masker.mask(webhook[0]) == "****"  # registered: never shown
    audit.event("rollback-start")
    assert notify.flush(30)
    assert [r["body"]["event"] for r in webhook[1]] == ["rollback-start"]


@pytest.mark.parametrize(
    ("value", "why"),
    [(None, "is not set or empty"), ("ftp://hooks.example/x", "does not hold an http(s) URL")],
)
def test_without_a_usable_url_nothing_is_posted_and_the_run_is_told_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str | None, why: str
) -> None:
    raw = {
        "heroku": {"app": "acme-shop"},
        "convox": {"app": "shop"},
        "notify": {"webhook_env": "CUTOVER_TEST_WEBHOOK"},
    }
    pb = LoadedPlaybook(tmp_path / "cutover.yml", Playbook.model_validate(raw), raw)
    if value is None:
        monkeypatch.delenv("CUTOVER_TEST_WEBHOOK", raising=False)
    else:
        monkeypatch.setenv("CUTOVER_TEST_WEBHOOK", value)
    notes = Notes()
    masker = SecretMasker()
    audit = AuditLog(tmp_path / ".cutover", masker)

    assert attach(audit, pb, masker, notes) is None

    assert notes.lines == [f"no notifications: $CUTOVER_TEST_WEBHOOK (notify.webhook_env) {why}"]
    events = list(read_events(tmp_path / ".cutover" / "events.jsonl"))
    assert [e["kind"] for e in events] == ["notify-disabled"]
    assert "hooks.example" not in events_text(tmp_path)


def test_only_the_events_that_matter_to_people_make_a_message() -> None:
    assert message({"kind": "step-start", "step": "final-sync"}, "a") is None
    assert message({"kind": "command", "step": "maintenance-on"}, "a") is None
    assert message({"kind": "notify-failed", "event": "run-complete"}, "a") is None
    got = message({"kind": "run-complete", "downtime_seconds": None}, "a")
    assert got == {
        "text": "cutover a: cutover complete",
        "event": "run-complete",
        "step": None,
        "app": "a",
    }


def test_the_playbook_refuses_a_bad_variable_name() -> None:
    raw = {"heroku": {"app": "a"}, "convox": {"app": "b"}, "notify": {"webhook_env": "NOT-A-NAME"}}
    with pytest.raises(ValueError, match="not a valid environment variable name"):
        Playbook.model_validate(raw)
