"""The data translation works with: options, findings, the result, names and input errors.

Defaults, documented here once:

- the web service listens on :data:`DEFAULT_PORT` (3000) unless ``--port``, ``${PORT:-N}`` in
  the web command, or a literal ``-p N``/``--bind host:N`` (when the command has no ``$PORT``)
  says otherwise;
- its health check path is ``--health``, else ``/up`` when the Rails app routes
  ``rails_health_check``, else :data:`DEFAULT_HEALTH_PATH` (``/healthz``, the guide's choice and
  the playbook's smoke check) reported as a guess: the app must answer 2xx/3xx there;
- ``release`` becomes the web service's ``initContainer`` (``--release-as one-off`` records it in
  the playbook instead);
- every service links every resource; a process type with no known formation starts with
  ``scale.count`` 1.

Bad input raises :class:`cutover.errors.InvalidInput` (exit 2) built by :func:`input_error`,
whose message reads like a compiler's: ``Procfile:3: expected "name: command", got "oops"``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from cutover.errors import InvalidInput

__all__ = [
    "DEFAULT_HEALTH_PATH",
    "DEFAULT_PORT",
    "MANAGED_NAME_MAX",
    "MANAGED_NAME_RULE",
    "NAME_RULE",
    "RAILS_HEALTH_PATH",
    "Finding",
    "FindingLog",
    "ReleaseAs",
    "Severity",
    "SourceInputError",
    "TimerSpec",
    "TranslateOptions",
    "Translation",
    "convox_name",
    "input_error",
]

Severity = Literal["info", "change", "guess", "unmapped", "warning"]
ReleaseAs = Literal["init-container", "one-off"]

DEFAULT_PORT: Final = 3000
DEFAULT_HEALTH_PATH: Final = "/healthz"
RAILS_HEALTH_PATH: Final = "/up"

NAME_RULE: Final = re.compile(r"^[a-z][a-z0-9-]*$")  # convox validate.go, services/resources/timers
MANAGED_NAME_RULE: Final = re.compile(r"^[a-z]([a-z0-9-]*[a-z0-9])?$")  # RDS/ElastiCache, <= 20
MANAGED_NAME_MAX: Final = 20


class SourceInputError(InvalidInput):
    """:class:`cutover.errors.InvalidInput` (exit 2, the one error boundary in cli.py) that also
    keeps the place as data, so ``--json`` can give ``path``/``line``/``field``/``reason`` to a
    program that would otherwise have to parse the message."""

    def __init__(self, path: str, reason: str, line: int | None, field: str | None) -> None:
        where = path if line is None else f"{path}:{line}"
        super().__init__(f"{where}: {field}: {reason}" if field else f"{where}: {reason}")
        self.path, self.line, self.field, self.reason = path, line, field, reason

    def place(self) -> dict[str, str | int | None]:
        return {"path": self.path, "line": self.line, "field": self.field, "reason": self.reason}


def input_error(
    path: str, reason: str, *, line: int | None = None, field: str | None = None
) -> InvalidInput:
    """The project's invalid-input error (exit 2) for a place in the app's description:
    ``Procfile:3: reason``, ``app.json:12: formation.clock: reason``, ``--timer: reason``."""
    return SourceInputError(path, reason, line, field)


@dataclass(frozen=True)
class Finding:
    """Something translation changed, guessed or could not map, with advice for the operator."""

    code: str
    severity: Severity
    subject: str
    message: str
    advice: str = ""

    def as_dict(self) -> dict[str, str]:
        return {
            "code": self.code,
            "severity": self.severity,
            "subject": self.subject,
            "message": self.message,
            "advice": self.advice,
        }


@dataclass(frozen=True)
class TimerSpec:
    """A Heroku Scheduler job: name, schedule (cron, UTC, or Scheduler's words), command and
    optionally the service to run it in (Heroku process type or Convox service name)."""

    name: str
    schedule: str
    command: str
    service: str | None = None
    source: str = "--timer"


@dataclass(frozen=True)
class TranslateOptions:
    """How to translate. Every field has a documented default (see the module docstring)."""

    port: int | None = None  # None: from the web command, else DEFAULT_PORT
    health: str | None = None  # None: /up for Rails apps routing rails_health_check, else /healthz
    managed: bool = False  # rds-/elasticache- resource types instead of in-cluster ones
    release_as: ReleaseAs = "init-container"
    timers: tuple[TimerSpec, ...] = ()
    jobs_service: bool = False  # add a `jobs` service at count 0 and point timers at it
    pg_client: bool = False  # add a `pgclient` service (postgres:<major>, count 0) for in-rack


@dataclass
class Translation:
    """The manifest (plain data, ordered as the guide) plus what ``init`` needs for the playbook."""

    manifest: dict[str, Any]
    findings: list[Finding]
    service_names: dict[str, str]  # Heroku process type -> Convox service
    web_service: str | None
    health_path: str | None
    port: int | None
    release_command: str | None = None  # only with release_as="one-off"
    release_service: str | None = None
    timers: list[TimerSpec] = field(default_factory=list)  # resolved: Convox names, cron
    database_resource: str | None = None
    database_attachment: str | None = None
    excluded_env: list[str] = field(default_factory=list)  # config vars not to copy
    scale_down: list[str] = field(default_factory=list)  # Heroku types to drain at cutover
    inputs: list[str] = field(default_factory=list)


class FindingLog(list[Finding]):
    """The findings of one translation, in the order they were made."""

    def add(
        self, code: str, severity: Severity, subject: str, message: str, advice: str = ""
    ) -> None:
        self.append(Finding(code, severity, subject, message, advice))


def convox_name(name: str) -> str:
    """A Convox-acceptable name (``^[a-z][a-z0-9-]*$``): ``worker_high`` -> ``worker-high``.

    It must also end with a letter or digit: the rack names the service's Kubernetes objects
    and labels after it (convox provider/k8s/template/app/service.yml.tmpl ``name:
    {{.Service.Name}}``, ``service: {{.Service.Name}}``), and Kubernetes refuses a DNS-1035
    label or label value that ends with ``-``, so ``worker_`` would pass convox's validation and
    fail at deploy."""
    out = re.sub(r"[^a-z0-9-]", "-", name.lower()).rstrip("-")
    if not out or not out[0].isalpha():
        out = f"p-{out}".rstrip("-")
    return out
