"""Webhook notifications: the playbook's ``notify.webhook_env`` names an environment variable
holding a webhook URL; cutover posts one JSON message to it when the window starts (the
``step-start`` of maintenance-on), a gate waits (``gate-waiting``), a step fails
(``step-failed``), a rollback starts (``rollback-start``) and the cutover completes
(``run-complete``)::

    {"text": "...", "event": "step-failed", "step": "final-sync", "app": "myapp"}

``text`` is what Slack's incoming webhooks show (their payload's ``text`` field, with ``&``,
``<`` and ``>`` escaped as Slack's message formatting asks); other services read the rest.

How it hooks in: a subscriber on the run's :class:`~cutover.engine.audit.AuditLog` (attached by
engine/context.py's ``build_context``, so ``cutover run`` and the rollback, which emits its
``rollback-*`` events through the same AuditLog, both notify), fed the masked audit records.

What it guarantees:

* the URL is a secret: registered in the masker before anything is posted or printed, never
  written to the state, the audit log or the terminal (failures name the variable, not the URL);
* a failed notification (refused, a non-2xx answer, no answer in ``timeout`` = 5 s, a name that
  does not resolve) never fails the run: each is audited (``notify-failed``) and the first is
  noted on the terminal once;
* posts go out on a background thread in order, so a hanging webhook never holds up the window;
  pending posts get one last ``timeout`` when the process exits.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import queue
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cutover.engine.audit import AuditLog
    from cutover.playbook import LoadedPlaybook
    from cutover.secrets import SecretMasker
    from cutover.steps.base import Reporter

NOTIFY_TIMEOUT = 5.0
WINDOW_STARTS = "maintenance-on"  # its step-start is the window's start
EVENTS = ("step-start", "gate-waiting", "step-failed", "rollback-start", "run-complete")


def slack_escape(text: str) -> str:
    """Slack's message formatting: ``&``, ``<`` and ``>`` as HTML entities."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def message(record: dict[str, Any], app: str) -> dict[str, Any] | None:
    """The JSON payload for an audit record, None for records that notify nobody."""
    kind = str(record.get("kind", ""))
    step = record.get("step")
    step = str(step) if step is not None else None
    if kind not in EVENTS or (kind == "step-start" and step != WINDOW_STARTS):
        return None
    if kind == "step-start":
        text = (
            f"cutover {app}: the window starts: Heroku goes into maintenance now "
            "(users see its maintenance page until the switch)"
        )
    elif kind == "gate-waiting":
        text = f"cutover {app}: waiting for a confirmation before {step}: {record.get('question')}"
    elif kind == "step-failed":
        error = str(record.get("error") or "").strip().splitlines()
        text = f"cutover {app}: step {step} failed" + (f": {error[0]}" if error else "")
    elif kind == "rollback-start":
        text = f"cutover {app}: rollback started"
    else:
        text = f"cutover {app}: cutover complete"
        downtime = record.get("downtime_seconds")
        predicted = record.get("predicted_downtime_seconds")
        if downtime is not None:
            text += f"; downtime {downtime}s"
            if predicted is not None:
                text += f" (predicted {predicted}s)"
    return {"text": slack_escape(text), "event": kind, "step": step, "app": app}


class Notifier:
    """Posts the payloads of :func:`message` to one URL, in order, on a background thread."""

    def __init__(
        self,
        url: str,
        *,
        app: str,
        env_name: str,
        audit: AuditLog,
        masker: SecretMasker,
        reporter: Reporter,
        timeout: float = NOTIFY_TIMEOUT,
    ) -> None:
        masker.add(url)  # first: nothing below may show it
        self._url = url
        self.app = app
        self.env_name = env_name
        self.audit = audit
        self.masker = masker
        self.reporter = reporter
        self.timeout = timeout
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue()
        self._pending = 0
        self._idle = threading.Condition()
        self._thread: threading.Thread | None = None
        self._noted = False
        self.sent = 0
        self.failed = 0

    def __call__(self, record: dict[str, Any]) -> None:
        """The AuditLog subscriber: queue the record's message, if it has one."""
        payload = message(record, self.app)
        if payload is None:
            return
        try:
            with self._idle:
                if self._thread is None:
                    thread = threading.Thread(target=self._work, name="cutover-notify", daemon=True)
                    thread.start()
                    self._thread = thread
                self._pending += 1
        except RuntimeError as exc:  # no thread to be had: this message fails, the run goes on
            self._failed(payload, f"cannot start the notifier's thread: {exc}")
            return
        self._queue.put(payload)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued message was posted or failed (at most ``timeout``, default
        one post's timeout and a second); True when none is left."""
        deadline = time.monotonic() + (self.timeout + 1 if timeout is None else timeout)
        with self._idle:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def _work(self) -> None:
        while True:
            payload = self._queue.get()
            try:
                self._post(payload)
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def _post(self, payload: dict[str, Any]) -> None:
        import httpx  # noqa: PLC0415 - start-up: only when a message goes out

        try:
            response = httpx.post(
                self._url, json=payload, timeout=self.timeout, follow_redirects=False
            )
        except httpx.TimeoutException:
            self._failed(payload, f"no answer within {self.timeout:g}s")
            return
        except (httpx.HTTPError, OSError, ValueError) as exc:
            self._failed(payload, f"{type(exc).__name__}: {exc}")
            return
        if not 200 <= response.status_code < 300:
            self._failed(payload, f"the webhook answered HTTP {response.status_code}")
            return
        self.sent += 1

    def _failed(self, payload: dict[str, Any], reason: str) -> None:
        reason = self.masker.mask(reason)
        # A broken audit log is the run's to report (its next write fails); never a notice's.
        with contextlib.suppress(OSError):
            self.audit.event(
                "notify-failed", event=payload["event"], step=payload["step"], error=reason
            )
        if not self._noted:
            self._noted = True
            self.reporter.note(
                f"notification ({payload['event']}) to the webhook in ${self.env_name} failed: "
                f"{reason}; the run goes on (further failures only in the audit log)"
            )
        self.failed += 1  # last: a reader of the count sees the audit and the note done


def attach(
    audit: AuditLog, playbook: LoadedPlaybook, masker: SecretMasker, reporter: Reporter
) -> Notifier | None:
    """Subscribe a notifier to ``audit`` when the playbook asks for one and its variable holds
    a URL; otherwise say why not (once, audited) and notify nobody."""
    section = playbook.model.notify
    if section is None:
        return None
    url = os.environ.get(section.webhook_env, "").strip()
    masker.add(url)
    problem = None
    if not url:
        problem = f"${section.webhook_env} (notify.webhook_env) is not set or empty"
    elif not url.lower().startswith(("https://", "http://")):
        problem = f"${section.webhook_env} (notify.webhook_env) does not hold an http(s) URL"
    if problem is not None:
        audit.event("notify-disabled", reason=problem)
        reporter.note(f"no notifications: {problem}")
        return None
    notifier = Notifier(
        url,
        app=playbook.model.heroku.app,
        env_name=section.webhook_env,
        audit=audit,
        masker=masker,
        reporter=reporter,
    )
    audit.subscribe(notifier)
    atexit.register(notifier.flush)
    return notifier
