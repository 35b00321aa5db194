"""Translate a Heroku app (sources + live facts) into a convox.yml manifest and findings.

The mapping follows the guide's concept table (docs: "Migrating from Heroku") and fixes what
the table leaves out: commands that need a shell, process type names Convox refuses, ``release``
running at every pod start, resource names that decide which variables get injected.

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
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Final, Literal, NamedTuple

from cutover.translate.facts import LiveFacts
from cutover.translate.sources import (
    AddonSpec,
    EnvSpec,
    ProcessType,
    ReleaseSpec,
    SourceTree,
    TranslateInputError,
)

__all__ = [
    "ADDONS",
    "DEFAULT_HEALTH_PATH",
    "DEFAULT_PORT",
    "DYNO_SIZES",
    "AddonKind",
    "DynoSize",
    "Finding",
    "ReleaseAs",
    "Severity",
    "TimerSpec",
    "TranslateOptions",
    "Translation",
    "convox_name",
    "parse_schedule",
    "parse_timer_option",
    "timer_specs_from_playbook",
    "translate",
]

Severity = Literal["info", "change", "guess", "unmapped", "warning"]
ReleaseAs = Literal["init-container", "one-off"]

DEFAULT_PORT: Final = 3000
DEFAULT_HEALTH_PATH: Final = "/healthz"
RAILS_HEALTH_PATH: Final = "/up"

NAME_RULE: Final = re.compile(r"^[a-z][a-z0-9-]*$")  # convox validate.go, services/resources/timers
MANAGED_NAME_RULE: Final = re.compile(r"^[a-z]([a-z0-9-]*[a-z0-9])?$")  # RDS/ElastiCache, <= 20
MANAGED_NAME_MAX: Final = 20


# --------------------------------------------------------------------------------------------
# Public data types


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


# --------------------------------------------------------------------------------------------
# Tables


class DynoSize(NamedTuple):
    name: str  # Heroku's spelling
    cpu: int  # millicores (scale.cpu)
    memory: int  # MB (scale.memory)


# Heroku dyno size -> Convox scale.cpu / scale.memory.
# Basis: memory is the dyno's RAM in MB as Heroku publishes it (512 MB, 1 GB, 2.5 GB, 14 GB,
# 30 GB, 62 GB, 126 GB). cpu: dedicated dynos (performance-*, private-/shield- M and up) get
# their vCPU count x 1000 (M: 2, L: 8, L-RAM: 4, XL: 8, 2XL: 16 vCPU). Shared dynos (eco, basic,
# standard-*) have no published vCPU figure, only a compute share: they get Convox's default
# request of 250 millicores per 1X share (standard-2X and private/shield-S: 500). Lookup is
# case-insensitive; legacy names (1X, 2X, PX, free, hobby) are aliases.
DYNO_SIZES: Final[dict[str, DynoSize]] = {
    "eco": DynoSize("eco", 250, 512),
    "basic": DynoSize("basic", 250, 512),
    "standard-1x": DynoSize("standard-1X", 250, 512),
    "standard-2x": DynoSize("standard-2X", 500, 1024),
    "performance-m": DynoSize("performance-M", 2000, 2560),
    "performance-l": DynoSize("performance-L", 8000, 14336),
    "performance-l-ram": DynoSize("performance-L-RAM", 4000, 30720),
    "performance-xl": DynoSize("performance-XL", 8000, 63488),
    "performance-2xl": DynoSize("performance-2XL", 16000, 129024),
    "private-s": DynoSize("private-S", 500, 1024),
    "private-m": DynoSize("private-M", 2000, 2560),
    "private-l": DynoSize("private-L", 8000, 14336),
    "private-l-ram": DynoSize("private-L-RAM", 4000, 30720),
    "private-xl": DynoSize("private-XL", 8000, 63488),
    "private-2xl": DynoSize("private-2XL", 16000, 129024),
    "shield-s": DynoSize("shield-S", 500, 1024),
    "shield-m": DynoSize("shield-M", 2000, 2560),
    "shield-l": DynoSize("shield-L", 8000, 14336),
    "shield-l-ram": DynoSize("shield-L-RAM", 4000, 30720),
    "shield-xl": DynoSize("shield-XL", 8000, 63488),
    "shield-2xl": DynoSize("shield-2XL", 16000, 129024),
    # legacy names
    "free": DynoSize("free", 250, 512),
    "hobby": DynoSize("hobby", 250, 512),
    "1x": DynoSize("1X", 250, 512),
    "2x": DynoSize("2X", 500, 1024),
    "px": DynoSize("PX", 8000, 14336),
}


def dyno_size(name: str) -> DynoSize | None:
    return DYNO_SIZES.get(name.strip().lower())


ResourceKind = Literal["postgres", "redis", "mysql", "mariadb", "memcached"]


class AddonKind(NamedTuple):
    resource: ResourceKind | None  # None: no Convox equivalent
    category: str
    default_vars: tuple[str, ...]  # what the add-on sets when we only know its plan
    advice: str = ""


_KEEP_ACCOUNT = (
    "The service works from anywhere: copy its config vars (they stay in `environment`). "
    "Add-on accounts are billed through and deleted with the Heroku app: move to a direct "
    "account with the provider before you delete the Heroku app."
)
_LOGGING = (
    "Convox has no log add-ons: read logs with `convox logs -a APP`. To keep the provider, "
    "open a direct account and forward the rack's logs to it (Convox racks can send logs to a "
    "syslog endpoint; see the rack parameters); the add-on's drain ends with the Heroku app."
)
ADDONS: Final[dict[str, AddonKind]] = {
    "heroku-postgresql": AddonKind("postgres", "database", ("DATABASE_URL",)),
    "heroku-redis": AddonKind("redis", "key-value store", ("REDIS_URL",)),
    "heroku-key-value": AddonKind("redis", "key-value store", ("REDIS_URL",)),
    "rediscloud": AddonKind("redis", "key-value store", ("REDISCLOUD_URL",)),
    "redistogo": AddonKind("redis", "key-value store", ("REDISTOGO_URL",)),
    "redisgreen": AddonKind("redis", "key-value store", ("REDISGREEN_URL",)),
    "openredis": AddonKind("redis", "key-value store", ("OPENREDIS_URL",)),
    "jawsdb": AddonKind("mysql", "database", ("JAWSDB_URL",)),
    "jawsdb-maria": AddonKind("mariadb", "database", ("JAWSDB_MARIA_URL",)),
    "cleardb": AddonKind("mysql", "database", ("CLEARDB_DATABASE_URL",)),
    "memcachier": AddonKind(
        "memcached",
        "cache",
        ("MEMCACHIER_SERVERS", "MEMCACHIER_USERNAME", "MEMCACHIER_PASSWORD"),
    ),
    "memcachedcloud": AddonKind(
        "memcached",
        "cache",
        ("MEMCACHEDCLOUD_SERVERS", "MEMCACHEDCLOUD_USERNAME", "MEMCACHEDCLOUD_PASSWORD"),
    ),
    "scheduler": AddonKind(None, "scheduler", ()),
    "advanced-scheduler": AddonKind(None, "scheduler", ("ADVANCED_SCHEDULER_URL",)),
    "heroku-kafka": AddonKind(
        None,
        "event streaming",
        (
            "KAFKA_URL",
            "KAFKA_TRUSTED_CERT",
            "KAFKA_CLIENT_CERT",
            "KAFKA_CLIENT_CERT_KEY",
            "KAFKA_PREFIX",
        ),
        "Convox has no Kafka resource. Apache Kafka on Heroku is billed and deleted with the "
        "Heroku app (and Private Space clusters are reachable only from the space): keep the "
        "add-on through the cutover, then move topics to a managed Kafka (Amazon MSK, "
        "Confluent Cloud) and point the KAFKA_* variables at it.",
    ),
    "cloudamqp": AddonKind(None, "message queue", ("CLOUDAMQP_URL",), _KEEP_ACCOUNT),
    "papertrail": AddonKind(None, "logging", ("PAPERTRAIL_API_TOKEN",), _LOGGING),
    "logdna": AddonKind(None, "logging", ("LOGDNA_KEY",), _LOGGING),
    "mezmo": AddonKind(None, "logging", ("MEZMO_KEY",), _LOGGING),
    "logentries": AddonKind(None, "logging", ("LOGENTRIES_TOKEN",), _LOGGING),
    "sumologic": AddonKind(None, "logging", (), _LOGGING),
    "coralogix": AddonKind(None, "logging", ("CORALOGIX_PRIVATE_KEY",), _LOGGING),
    "solarwinds": AddonKind(None, "logging", ("SOLARWINDS_TOKEN",), _LOGGING),
    "sendgrid": AddonKind(None, "mail", ("SENDGRID_API_KEY",), _KEEP_ACCOUNT),
    "mailgun": AddonKind(
        None,
        "mail",
        ("MAILGUN_API_KEY", "MAILGUN_DOMAIN", "MAILGUN_SMTP_LOGIN", "MAILGUN_SMTP_PASSWORD"),
        _KEEP_ACCOUNT,
    ),
    "postmark": AddonKind(None, "mail", ("POSTMARK_API_TOKEN",), _KEEP_ACCOUNT),
    "mailtrap": AddonKind(None, "mail", ("MAILTRAP_API_TOKEN",), _KEEP_ACCOUNT),
    "newrelic": AddonKind(
        None, "monitoring", ("NEW_RELIC_LICENSE_KEY", "NEW_RELIC_LOG"), _KEEP_ACCOUNT
    ),
    "scout": AddonKind(None, "monitoring", ("SCOUT_KEY", "SCOUT_MONITOR"), _KEEP_ACCOUNT),
    "appsignal": AddonKind(None, "monitoring", ("APPSIGNAL_PUSH_API_KEY",), _KEEP_ACCOUNT),
    "skylight": AddonKind(None, "monitoring", ("SKYLIGHT_AUTHENTICATION",), _KEEP_ACCOUNT),
    "librato": AddonKind(None, "monitoring", ("LIBRATO_USER", "LIBRATO_TOKEN"), _KEEP_ACCOUNT),
    "sentry": AddonKind(None, "error tracking", ("SENTRY_DSN",), _KEEP_ACCOUNT),
    "rollbar": AddonKind(None, "error tracking", ("ROLLBAR_ACCESS_TOKEN",), _KEEP_ACCOUNT),
    "honeybadger": AddonKind(None, "error tracking", ("HONEYBADGER_API_KEY",), _KEEP_ACCOUNT),
    "bugsnag": AddonKind(None, "error tracking", ("BUGSNAG_API_KEY",), _KEEP_ACCOUNT),
    "bonsai": AddonKind(None, "search", ("BONSAI_URL",), _KEEP_ACCOUNT),
    "searchbox": AddonKind(None, "search", ("SEARCHBOX_URL",), _KEEP_ACCOUNT),
    "bucketeer": AddonKind(
        None,
        "object storage",
        ("BUCKETEER_AWS_ACCESS_KEY_ID", "BUCKETEER_AWS_SECRET_ACCESS_KEY", "BUCKETEER_BUCKET_NAME"),
        "Bucketeer is an S3 bucket owned by the add-on: copy the objects to a bucket you own "
        "(aws s3 sync) and point the app at it, or keep the add-on until then.",
    ),
    "cloudinary": AddonKind(None, "media", ("CLOUDINARY_URL",), _KEEP_ACCOUNT),
}

# Options for the --managed types: a starting instance class per Heroku plan tier (a guess).
_RDS_CLASS_BY_TIER: Final[dict[str, str]] = {
    "0": "db.t4g.medium",
    "2": "db.m6g.large",
    "3": "db.m6g.xlarge",
    "4": "db.m6g.2xlarge",
    "5": "db.m6g.4xlarge",
    "6": "db.m6g.8xlarge",
}
_SMALL_RDS_CLASS: Final = "db.t4g.micro"
_CACHE_CLASS: Final = "cache.t4g.micro"
# Heroku Postgres plan storage limits in GB (essential-*, standard/premium/private/shield-N).
_POSTGRES_STORAGE_GB: Final[dict[str, int]] = {
    "essential-0": 1,
    "essential-1": 10,
    "essential-2": 32,
    "0": 64,
    "2": 256,
    "3": 512,
    "4": 768,
    "5": 1024,
    "6": 1536,
    "7": 2048,
    "8": 3072,
    "9": 4096,
}
_DEFAULT_STORAGE_GB: Final[dict[bool, int]] = {False: 10, True: 20}  # in-cluster / rds

_RESOURCE_TYPES: Final[dict[ResourceKind, tuple[str, str]]] = {
    "postgres": ("postgres", "rds-postgres"),
    "redis": ("redis", "elasticache-redis"),
    "mysql": ("mysql", "rds-mysql"),
    "mariadb": ("mariadb", "rds-mariadb"),
    "memcached": ("memcached", "elasticache-memcached"),
}
_FALLBACK_NAMES: Final[dict[ResourceKind, str]] = {
    "postgres": "database",
    "redis": "redis",
    "mysql": "mysql",
    "mariadb": "mariadb",
    "memcached": "memcached",
}
_INJECTED_SUFFIXES: Final = ("_URL", "_USER", "_PASS", "_HOST", "_PORT", "_NAME")

# Values Heroku's buildpacks set as config vars; as manifest defaults they are harmless (the
# copied app env overrides them) and keep the manifest deployable before the copy.
_BUILDPACK_DEFAULTS: Final[dict[str, str]] = {
    "RAILS_ENV": "production",
    "RACK_ENV": "production",
    "NODE_ENV": "production",
    "LANG": "en_US.UTF-8",
    "RAILS_LOG_TO_STDOUT": "enabled",
    "RAILS_SERVE_STATIC_FILES": "enabled",
}
_SECRET_NAME: Final = re.compile(
    r"(^|_)(KEY|SECRET|TOKEN|PASSWORD|PASSWD|PASS|PWD|CREDENTIALS?|PRIVATE|AUTH|SALT|"
    r"SIGNATURE|CERT|DSN|LICENSE|URL|URI)(_|$)"
)

# Commands that exist only inside a Heroku buildpack's slug.
_BUILDPACK_SCRIPTS: Final[dict[str, str]] = {
    "heroku-php-apache2": (
        "the PHP buildpack's Apache launcher: in a Dockerfile use an Apache+PHP image "
        "(e.g. php:8.3-apache, `apache2-foreground`) listening on the service port with the "
        "document root the command names"
    ),
    "heroku-php-nginx": (
        "the PHP buildpack's Nginx+FPM launcher: in a Dockerfile run php-fpm behind nginx "
        "listening on the service port"
    ),
    "bin/start-nginx": "the nginx buildpack's launcher: install nginx in the image and start it",
    "bin/start-pgbouncer": "the pgbouncer buildpack's launcher: install pgbouncer in the image",
    "bin/start-stunnel": "the stunnel buildpack's launcher: install stunnel in the image",
}

_SINGLETON_NAMES: Final = frozenset({"clock", "beat", "scheduler", "cron", "clockwork"})
_SINGLETON_COMMAND: Final = re.compile(r"\bcelery\b.*\bbeat\b|\bclockwork\b|\bclock\.(py|rb|js)\b")


# --------------------------------------------------------------------------------------------
# Names


def convox_name(name: str) -> str:
    """A Convox-acceptable name (``^[a-z][a-z0-9-]*$``): ``worker_high`` -> ``worker-high``."""
    out = re.sub(r"[^a-z0-9-]", "-", name.lower())
    if not out or not out[0].isalpha():
        out = f"p-{out}"
    return out


# --------------------------------------------------------------------------------------------
# Schedules and timers


_CRON_FIELD: Final = re.compile(r"^[0-9A-Za-z*/,?-]+$")


def parse_schedule(text: str, *, where: str, field_name: str) -> tuple[str, str | None]:
    """Turn a schedule into 5-field cron (UTC). Returns the cron and a note when it was changed.

    Accepts cron and Heroku Scheduler's wording: ``every 10 minutes``, ``hourly at :30``
    (or ``every hour at :30``), ``daily at 06:00`` (or ``every day at 6:00 [UTC]``).
    """
    raw = " ".join(text.strip().split())
    lower = raw.lower().removesuffix(" utc")
    match = re.fullmatch(r"every (10|ten) minutes", lower)
    if match:
        return "*/10 * * * *", f'Heroku Scheduler "{raw}"'
    match = re.fullmatch(r"(?:hourly|every hour) at :?(\d{1,2})", lower)
    if match and int(match.group(1)) < 60:
        return f"{int(match.group(1))} * * * *", f'Heroku Scheduler "{raw}"'
    match = re.fullmatch(r"(?:daily|every day) at (\d{1,2}):(\d{2})(?: ?(am|pm))?", lower)
    if match:
        hour, minute = int(match.group(1)), int(match.group(2))
        if match.group(3) == "pm" and hour < 12:
            hour += 12
        elif match.group(3) == "am" and hour == 12:
            hour = 0
        if hour < 24 and minute < 60:
            return f"{minute} {hour} * * *", f'Heroku Scheduler "{raw}"'
    fields = raw.split(" ")
    if len(fields) != 5 or not all(_CRON_FIELD.match(f) for f in fields):
        raise TranslateInputError(
            where,
            f'expected 5-field cron (UTC) like "0 6 * * *" or "daily at 06:00", got "{raw}"',
            field=field_name,
        )
    if "?" in raw:
        return raw.replace("?", "*"), '"?" replaced by "*" (convox refuses "?")'
    return raw, None


def parse_timer_option(assignment: str, command: str, service: str | None = None) -> TimerSpec:
    """Parse ``--timer NAME='CRON' 'COMMAND'`` (the CLI passes the two values)."""
    name, sep, schedule = assignment.partition("=")
    if not sep or not name.strip() or not schedule.strip():
        raise TranslateInputError(
            "--timer", f'expected NAME="CRON" followed by the command, got "{assignment}"'
        )
    if not command.strip():
        raise TranslateInputError("--timer", "the command is empty", field=name.strip())
    return TimerSpec(name.strip(), schedule.strip(), command.strip(), service, source="--timer")


def timer_specs_from_playbook(items: Sequence[Any], source: str = "cutover.yml") -> list[TimerSpec]:
    """Read the playbook's ``timers:`` list (``{name, schedule, command, service?}`` each)."""
    specs: list[TimerSpec] = []
    for index, item in enumerate(items):
        at = f"timers[{index}]"
        if not isinstance(item, dict):
            raise TranslateInputError(source, "expected a mapping", field=at)
        values: dict[str, str | None] = {}
        for key in ("name", "schedule", "command", "service"):
            value = item.get(key)
            if value is not None and not isinstance(value, str):
                raise TranslateInputError(source, "expected a string", field=f"{at}.{key}")
            if value is None and key != "service":
                raise TranslateInputError(source, f'missing "{key}"', field=at)
            values[key] = value
        specs.append(
            TimerSpec(
                str(values["name"]),
                str(values["schedule"]),
                str(values["command"]),
                values["service"],
                source=source,
            )
        )
    return specs


# --------------------------------------------------------------------------------------------
# Commands


class _Converted(NamedTuple):
    command: str
    findings: list[Finding]
    defaults: dict[str, str]  # ${VAR:-x} fallbacks, to become environment defaults


_PORT_REF: Final = re.compile(r"\$\{PORT(?::?[-=][^}]*)?\}|\$PORT(?![A-Za-z0-9_])")
_PORT_FALLBACK: Final = re.compile(r"\$\{PORT:?-(\d+)\}")
_LITERAL_PORT: Final = re.compile(
    r"(?:^|\s)(?:-p|--port)[ =](\d{2,5})\b|(?:--bind|-b|--listen|-l)[ =]\S*:(\d{2,5})\b"
)
_BRACED: Final = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}$`]*))?\}")
_EXPANSION: Final = re.compile(r"\$[A-Za-z_{(]|`")
_ASSIGNMENT: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_SHELLS: Final = frozenset({"sh", "bash", "/bin/sh", "/bin/bash", "/usr/bin/bash", "dash"})
_OPERATOR_CHARS: Final = frozenset(";&|<>()")


def _tokens(command: str, where: str, line: int | None, subject: str) -> list[str]:
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    try:
        return list(lexer)
    except ValueError as exc:
        raise TranslateInputError(
            where, f"cannot split the command: {exc}", line=line, field=subject
        ) from None


def _web_port(command: str | None) -> tuple[int | None, str | None]:
    """The port a web command says it wants, and how we know."""
    if not command:
        return None, None
    fallback = _PORT_FALLBACK.search(command)
    if fallback:
        return int(fallback.group(1)), f"${{PORT:-{fallback.group(1)}}}"
    if _PORT_REF.search(command):
        return None, None
    literal = _LITERAL_PORT.search(command)
    if literal:
        value = literal.group(1) or literal.group(2)
        return int(value), f"the literal port {value}"
    return None, None


def convert_command(
    command: str,
    *,
    port: int,
    subject: str,
    where: str,
    line: int | None,
    injected: frozenset[str] = frozenset(),
) -> _Converted:
    """Make a Heroku command (run by bash on Heroku) runnable as a convox.yml ``command`` (split
    by shellquote and exec'd without a shell, after ``${...}`` interpolation from the app env).
    """
    findings: list[Finding] = []
    defaults: dict[str, str] = {}
    if _PORT_REF.search(command):
        forms = sorted(set(_PORT_REF.findall(command)))
        command = _PORT_REF.sub(str(port), command)
        findings.append(
            Finding(
                "port-fixed",
                "change",
                subject,
                f"{', '.join(forms)} replaced by the fixed port {port}",
                "Convox sets PORT to the declared port, but nothing expands $PORT (commands run "
                "without a shell) and convox.yml interpolates ${...} from the app env (where "
                "PORT is unset), so the port is written out.",
            )
        )
    tokens = _tokens(command, where, line, subject)
    has_ops = any(tok and set(tok) <= _OPERATOR_CHARS for tok in tokens)
    has_expansion = bool(_EXPANSION.search(command))
    is_shell = (
        len(tokens) >= 2
        and tokens[0] in _SHELLS
        and tokens[1].startswith("-")
        and ("c" in tokens[1])
    )
    leading_assignment = bool(tokens) and bool(_ASSIGNMENT.match(tokens[0]))

    if has_expansion:

        def rewrite(match: re.Match[str]) -> str:
            name, operator, word = match.group(1), match.group(2), match.group(3)
            if operator is not None and name not in injected and word:
                defaults.setdefault(name, word)
            end = match.end()
            follows = command[end : end + 1]
            return f'${name}""' if follows and (follows.isalnum() or follows == "_") else f"${name}"

        command = _BRACED.sub(rewrite, command)
        unsupported = re.findall(r"\$\{[^}]*\}", command)
        if defaults:
            findings.append(
                Finding(
                    "command-env-default",
                    "change",
                    subject,
                    "shell fallbacks became environment defaults: "
                    + ", ".join(f"{k}={v}" for k, v in defaults.items()),
                    "convox.yml would read ${NAME:-x} as the variable 'NAME:-x' (always empty); "
                    "the command now reads $NAME and the manifest declares the default.",
                )
            )
        if unsupported:
            findings.append(
                Finding(
                    "command-unsupported-expansion",
                    "warning",
                    subject,
                    f"{', '.join(sorted(set(unsupported)))} cannot be written in convox.yml "
                    "(it interpolates every ${...} from the app env)",
                    "Move the command into a script in the image (e.g. bin/start) and use that "
                    "script as the command.",
                )
            )

    if is_shell:
        return _Converted(command, findings, defaults)
    if not has_ops and not has_expansion:
        if leading_assignment:
            findings.append(
                Finding(
                    "command-env-prefix",
                    "change",
                    subject,
                    "leading variable assignments now go through `env`",
                    "Convox runs commands without a shell, so `NAME=value cmd` needs `env`.",
                )
            )
            command = f"env {command}"
        return _Converted(command, findings, defaults)

    body = command
    if not has_ops and tokens[0] != "exec":
        body = f"exec env {body}" if leading_assignment else f"exec {body}"
    wrapped = f"sh -c {shlex.quote(body)}"
    reason = "shell operators" if has_ops else "variable expansion"
    findings.append(
        Finding(
            "command-shell",
            "change",
            subject,
            f"the command uses {reason}; it now runs through `sh -c`",
            "Heroku runs every command with bash; Convox splits the command into words and runs "
            "it without a shell. The image needs /bin/sh"
            + ("" if has_ops else "; `exec` keeps the process the signal receiver")
            + ".",
        )
    )
    return _Converted(wrapped, findings, defaults)


# --------------------------------------------------------------------------------------------
# The translation


@dataclass
class _Addon:
    service: str
    plan: str | None
    name: str
    vars: tuple[str, ...]
    attachments: tuple[str, ...]
    source: str


@dataclass
class _Resource:
    name: str
    link: str  # what services list: "name" or "name:VAR"
    kind: ResourceKind
    addon: _Addon
    injected: set[str]
    primary_var: str


def _tier(plan: str | None) -> str:
    tier = (plan or "").partition(":")[2].lower()
    for prefix in ("standard-", "premium-", "private-", "shield-"):
        if tier.startswith(prefix):
            return tier.removeprefix(prefix)
    return tier


class _EnvPlan:
    """Sorts the names the app needs into the manifest's environment and the findings."""

    def __init__(self) -> None:
        self.defaults: dict[str, str] = {}
        self.lists: dict[str, list[str]] = {
            key: []
            for key in (
                "constants",
                "guessed",
                "secret",
                "generated",
                "omitted",
                "dropped",
                "required",
            )
        }

    def classify(self, name: str, spec: EnvSpec | None, *, in_live: bool) -> None:
        value = spec.value if spec is not None else None
        if value is not None and _usable_default(name, value):
            self.defaults[name] = value
            self.lists["constants"].append(name)
            return
        if value:
            self.lists["secret"].append(name)
        if spec is not None and not spec.required and value is None and not in_live:
            self.lists["omitted"].append(name)
        elif name in _BUILDPACK_DEFAULTS:
            self.defaults[name] = _BUILDPACK_DEFAULTS[name]
            self.lists["guessed"].append(name)
        else:
            if spec is not None and spec.generator == "secret" and not in_live:
                self.lists["generated"].append(name)
            self.lists["required"].append(name)


_ENV_FINDINGS: Final[tuple[tuple[str, Severity, str, str, str], ...]] = (
    (
        "env-default",
        "change",
        "constants",
        "non-secret values from the sources became defaults: ",
        "Defaults apply only when the app env lacks the name; copied values override.",
    ),
    (
        "env-default-guessed",
        "guess",
        "guessed",
        "defaults assumed from what Heroku's buildpacks set: ",
        "The values copied from Heroku override them; change them if the app differs.",
    ),
    (
        "env-secret-value",
        "info",
        "secret",
        "values in the sources were not used as defaults (secret-looking names, or values "
        "convox.yml cannot hold): ",
        "Set them with `convox env set` (cutover copies them from Heroku).",
    ),
    (
        "env-generate-secret",
        "info",
        "generated",
        "app.json generates these secrets: ",
        "Generate a value (e.g. `openssl rand -hex 64`) and set it with "
        "`convox env set NAME=... -a APP` before the first deploy.",
    ),
    (
        "env-optional-omitted",
        "info",
        "omitted",
        "optional variables without a value are not declared: ",
        "Convox v3 passes the whole app env to every service; declare a name only to require "
        "it or give it a default.",
    ),
    (
        "env-dropped",
        "change",
        "dropped",
        "not declared, and not to be copied: ",
        "Resources inject their own connection variables; HEROKU_* describe the Heroku dyno "
        "and add-ons; PORT comes from `port:`.",
    ),
    (
        "env-required",
        "info",
        "required",
        "{count} to set before the first deploy: ",
        "cutover copies the values from Heroku (the playbook's env section); by hand: "
        "`heroku config -s -a HEROKU_APP` then `convox env set ... -a APP`.",
    ),
)


class _Translator:
    def __init__(self, tree: SourceTree, facts: LiveFacts | None, options: TranslateOptions):
        self.tree = tree
        self.facts = facts
        self.options = options
        self.findings: list[Finding] = []
        self.inputs: list[str] = list(tree.files)
        if facts is not None:
            self.inputs.append(f"live facts of {facts.app}" if facts.app else "live facts")
        self.command_port = options.port or DEFAULT_PORT
        self.injected: set[str] = set()
        self.command_defaults: dict[str, str] = {}

    def add(
        self, code: str, severity: Severity, subject: str, message: str, advice: str = ""
    ) -> None:
        self.findings.append(Finding(code, severity, subject, message, advice))

    # -- processes ----------------------------------------------------------------------------

    def processes(self) -> tuple[list[ProcessType], ReleaseSpec | None]:
        tree = self.tree
        if tree.heroku_yml is not None and tree.heroku_yml.processes:
            if tree.procfile is not None:
                self.add(
                    "procfile-ignored",
                    "info",
                    "Procfile",
                    f"{tree.heroku_yml.path} defines the processes; Heroku ignores the Procfile "
                    "for container apps, and so does this translation",
                )
            return list(tree.heroku_yml.processes), tree.heroku_yml.release
        if tree.procfile is not None:
            if not tree.procfile:
                raise TranslateInputError(
                    "Procfile", "no process types (only release, comments or blank lines)"
                )
            return list(tree.procfile), tree.release
        if self.facts is not None and self.facts.formation:
            processes = [
                ProcessType(f.type, f.command, source="live formation")
                for f in self.facts.formation
            ]
            self.add(
                "processes-from-live",
                "guess",
                "Procfile",
                "the folder has no Procfile or heroku.yml; the process types and commands "
                "come from the running app's formation",
                "Commit a Procfile (or rely on the image's CMD) so the next translation does not "
                "depend on what happens to run on Heroku now.",
            )
            return processes, None
        raise TranslateInputError(
            "Procfile",
            f"not found in {tree.root}: the folder has no Procfile or heroku.yml, so nothing "
            "says which processes run",
        )

    def names(self, processes: list[ProcessType]) -> dict[str, str]:
        mapping: dict[str, str] = {}
        owner: dict[str, ProcessType] = {}
        for process in processes:
            name = convox_name(process.name)
            if name in owner:
                raise TranslateInputError(
                    process.source,
                    f'process types "{owner[name].name}" and "{process.name}" would both become '
                    f'the Convox service "{name}"',
                    line=process.line,
                    field=process.name,
                )
            owner[name] = process
            mapping[process.name] = name
            if name != process.name:
                self.add(
                    "process-renamed",
                    "change",
                    name,
                    f'process type "{process.name}" renamed to "{name}"',
                    "Convox service names must match ^[a-z][a-z0-9-]*$. Scripts and dashboards "
                    f'that say "{process.name}" (e.g. `convox scale {name}`) need the new name.',
                )
        return mapping

    # -- formation -----------------------------------------------------------------------------

    def formation(
        self, processes: list[ProcessType]
    ) -> tuple[dict[str, tuple[int | None, str | None]], str | None]:
        """Heroku type -> (quantity, size), and where it came from."""
        known = {p.name for p in processes}
        if self.facts is not None and self.facts.formation:
            out: dict[str, tuple[int | None, str | None]] = {}
            for fact in self.facts.formation:
                if fact.type not in known:
                    if fact.quantity > 0:
                        self.add(
                            "formation-extra",
                            "warning",
                            fact.type,
                            f'Heroku runs {fact.quantity} "{fact.type}" dyno(s), but the '
                            "sources define no such process type",
                            "The deployed code is not this folder's code, or the type was removed "
                            "without scaling it down; translate the code you will deploy.",
                        )
                    continue
                out[fact.type] = (fact.quantity, fact.size)
            return out, "live formation"
        app_json = self.tree.app_json
        if app_json is not None and app_json.formation:
            out = {}
            for spec in app_json.formation:
                if spec.type not in known:
                    raise TranslateInputError(
                        app_json.path,
                        f'process type "{spec.type}" is not in the '
                        f"{'heroku.yml' if self.tree.heroku_yml else 'Procfile'}",
                        line=spec.line,
                        field=f"formation.{spec.type}",
                    )
                out[spec.type] = (spec.quantity, spec.size)
            return out, app_json.path
        return {}, None

    def scale(
        self,
        process: ProcessType,
        service: str,
        formation: dict[str, tuple[int | None, str | None]],
        formation_source: str | None,
    ) -> dict[str, Any]:
        quantity, size = formation.get(process.name, (None, None))
        scale: dict[str, Any] = {}
        if quantity is None:
            quantity = 1
            if formation_source == "live formation":
                self.add(
                    "formation-missing",
                    "guess",
                    service,
                    f'the running app has no formation for "{process.name}"; count 1 assumed',
                    "The process type is new (not deployed on Heroku yet): check the count.",
                )
        scale["count"] = quantity
        if size:
            known = dyno_size(size)
            if known is None:
                self.add(
                    "dyno-size-unknown",
                    "warning",
                    service,
                    f'dyno size "{size}" is not in the size table; cpu and memory left to '
                    "Convox's defaults (250 millicores, 512 MB)",
                    "Set scale.cpu (millicores) and scale.memory (MB) to what the process needs.",
                )
            else:
                scale["cpu"] = known.cpu
                scale["memory"] = known.memory
        return scale

    # -- add-ons and resources ------------------------------------------------------------------

    def addons(self) -> list[_Addon]:
        if self.facts is not None:
            return [
                _Addon(a.service, a.plan, a.name, a.config_vars, a.attachments, "live add-ons")
                for a in self.facts.addons
            ]
        specs: list[AddonSpec] = []
        if self.tree.app_json is not None:
            specs.extend(self.tree.app_json.addons)
        if self.tree.heroku_yml is not None:
            specs.extend(self.tree.heroku_yml.addons)
        out: list[_Addon] = []
        seen: set[tuple[str, str | None]] = set()
        for spec in specs:
            key = (spec.service, spec.as_name)
            if key in seen:
                continue
            seen.add(key)
            kind = ADDONS.get(spec.service)
            if spec.as_name:
                variables: tuple[str, ...] = (f"{spec.as_name.upper()}_URL",)
            else:
                variables = kind.default_vars if kind else ()
            attachments = (spec.as_name.upper(),) if spec.as_name else ()
            out.append(
                _Addon(spec.service, spec.plan, spec.service, variables, attachments, spec.source)
            )
        return out

    def resources(self, addons: list[_Addon]) -> tuple[list[_Resource], set[str]]:
        """Mapped resources, plus every config var name of the mapped add-ons."""
        resources: list[_Resource] = []
        taken: set[str] = set()
        addon_vars: set[str] = set()
        for addon in addons:
            kind = ADDONS.get(addon.service)
            if kind is None:
                self.add(
                    "addon-unknown",
                    "unmapped",
                    _addon_subject(addon),
                    "no Convox resource is known for this add-on; its config vars stay in "
                    "`environment` to copy" + (f": {', '.join(addon.vars)}" if addon.vars else ""),
                    "If the provider is reachable from outside Heroku, keep it (with a direct "
                    "account); otherwise replace it before the cutover.",
                )
                continue
            if kind.resource is None:
                self.unmapped(addon, kind)
                continue
            resources.append(self.resource(addon, kind.resource, taken))
            addon_vars.update(addon.vars)
        return resources, addon_vars

    def unmapped(self, addon: _Addon, kind: AddonKind) -> None:
        if kind.category == "scheduler":
            if not self.options.timers:
                self.add(
                    "scheduler-jobs",
                    "unmapped",
                    _addon_subject(addon),
                    "Heroku Scheduler jobs are not visible through the heroku CLI, so no "
                    "timers were made from them",
                    "Copy each job from the dashboard (`heroku addons:open scheduler`) into the "
                    "playbook's `timers:` or pass --timer NAME='CRON' 'COMMAND' (UTC), then "
                    "translate again. Disable the Heroku jobs at cutover.",
                )
            return
        listed = f": {', '.join(addon.vars)}" if addon.vars else ""
        self.add(
            "addon-unmapped",
            "unmapped",
            _addon_subject(addon),
            f"{kind.category} add-on with no Convox resource; its config vars stay in "
            f"`environment` to copy{listed}",
            kind.advice or _KEEP_ACCOUNT,
        )

    def resource(self, addon: _Addon, kind: ResourceKind, taken: set[str]) -> _Resource:
        managed = self.options.managed
        variables = [v for v in addon.vars if not v.startswith("HEROKU_")] or list(addon.vars)
        preferred = [f"{a}_URL" for a in addon.attachments] + ["DATABASE_URL"]
        primary = next((v for v in preferred if v in variables), None)
        if primary is None:
            urls = [v for v in variables if v.endswith("_URL") and not v.endswith("_TLS_URL")]
            servers = [v for v in variables if v.endswith("_SERVERS")]
            primary = (urls or servers or variables or [f"{_FALLBACK_NAMES[kind].upper()}_URL"])[0]
        prefix = primary.rsplit("_", 1)[0] if "_" in primary else primary
        candidate = prefix.lower().replace("_", "-")
        rule_ok = bool(NAME_RULE.match(candidate)) and (
            not managed
            or (bool(MANAGED_NAME_RULE.match(candidate)) and len(candidate) <= MANAGED_NAME_MAX)
        )
        subject = _addon_subject(addon)
        if rule_ok and candidate not in taken and primary.endswith("_URL"):
            name, link = candidate, candidate
            injected = {f"{prefix}{suffix}" for suffix in _INJECTED_SUFFIXES}
        else:
            base = _FALLBACK_NAMES[kind] if not rule_ok else candidate
            name = base
            counter = 2
            while name in taken:
                name = f"{base}-{counter}"
                counter += 1
            if primary.endswith("_URL"):
                link = f"{name}:{primary}"
                injected = {primary}
            else:
                link = name
                injected = {f"{name.upper().replace('-', '_')}{s}" for s in _INJECTED_SUFFIXES}
        taken.add(name)
        rtype = _RESOURCE_TYPES[kind][1 if managed else 0]
        resource = _Resource(name, link, kind, addon, injected, primary)
        env_prefix = name.upper().replace("-", "_")
        injects = (
            f"{env_prefix}_URL, plus _USER, _PASS, _HOST, _PORT, _NAME"
            if link == name
            else f"{primary}, through the alias {link}"
        )
        self.add(
            "addon-mapped",
            "change",
            subject,
            f'became the {rtype} resource "{name}" (injects {injects})',
            "Every service links it. Do not copy the add-on's config vars to Convox: a "
            f"{env_prefix}_URL in the app env makes Convox skip the resource and use that URL.",
        )
        extra = sorted(v for v in variables if v not in injected)
        if kind == "memcached" and extra:
            self.add(
                "addon-vars-differ",
                "warning",
                subject,
                f"the app reads {', '.join(extra)}; the {rtype} resource injects "
                f"{name.upper().replace('-', '_')}_URL, _HOST and _PORT instead",
                "Point the memcache client at the injected host and port (e.g. "
                f"{prefix}_SERVERS set from {name.upper().replace('-', '_')}_HOST:_PORT in the "
                "app's config); Convox's memcached has no SASL user or password.",
            )
        elif extra:
            self.add(
                "addon-extra-vars",
                "warning",
                subject,
                f"{', '.join(extra)} from this add-on will not exist on Convox",
                f"Make the app read {primary} instead (or link the resource a second time with "
                f"an alias, `{name}:{extra[0]}`).",
            )
        return resource

    def resource_spec(self, resource: _Resource) -> dict[str, Any]:
        managed = self.options.managed
        rtype = _RESOURCE_TYPES[resource.kind][1 if managed else 0]
        options: dict[str, str] = {}
        addon = resource.addon
        tier = _tier(addon.plan)
        if resource.kind == "postgres":
            version = self.facts.postgres_version if self.facts else None
            if managed:
                options["class"] = _RDS_CLASS_BY_TIER.get(tier, _SMALL_RDS_CLASS)
            if version:
                options["version"] = version
            else:
                self.add(
                    "postgres-version-unknown",
                    "warning",
                    resource.name,
                    "the Heroku Postgres version is unknown; "
                    + (
                        "rds-postgres requires `version`"
                        if managed
                        else "Convox's postgres default (10.5) is far older than Heroku's"
                    ),
                    "Read `PG Version` from `heroku pg:info -a APP` and set options.version to its "
                    'major version (e.g. "16"): pg_restore cannot load a newer server\'s dump.',
                )
            plan_key = (addon.plan or "").partition(":")[2].lower()
            storage = _POSTGRES_STORAGE_GB.get(plan_key) or _POSTGRES_STORAGE_GB.get(tier)
            if storage and storage > _DEFAULT_STORAGE_GB[managed]:
                options["storage"] = str(storage)
                self.add(
                    "storage-from-plan",
                    "guess",
                    resource.name,
                    f"storage {storage} GB, the limit of the Heroku plan {addon.plan}",
                    "Size it to the real data size (`heroku pg:info`: Data Size) plus growth.",
                )
        elif managed:
            options["class"] = (
                _CACHE_CLASS if resource.kind in ("redis", "memcached") else (_SMALL_RDS_CLASS)
            )
        if resource.kind == "redis" and not managed:
            self.add(
                "redis-version",
                "warning",
                resource.name,
                "the in-cluster redis resource runs Convox's default image (redis 4.0.10) "
                "unless options.version is set",
                'Set options.version to the Redis version Heroku runs (e.g. "7"); clients such '
                "as Sidekiq 7 refuse Redis older than 6.2.",
            )
        if managed and "class" in options:
            self.add(
                "managed-class",
                "guess",
                resource.name,
                f"{rtype} class {options['class']}, a starting point for the Heroku plan "
                f"{addon.plan}",
                "Pick the instance class from real load; consider options durable (Multi-AZ), "
                "encrypted and deletionProtection for production.",
            )
        spec: dict[str, Any] = {"type": rtype}
        if options:
            spec["options"] = options
        return spec

    # -- environment -----------------------------------------------------------------------------

    def environment(
        self,
        injected: set[str],
        addon_vars: set[str],
        extra_vars: list[str],
        command_defaults: dict[str, str],
    ) -> tuple[list[str], list[str]]:
        """The manifest's environment list and the config var names not to copy."""
        specs: dict[str, EnvSpec] = {}
        declared = [
            *(self.tree.app_json.env if self.tree.app_json else []),
            *(self.tree.heroku_yml.config if self.tree.heroku_yml else []),
        ]
        for declared_spec in declared:
            specs.setdefault(declared_spec.name, declared_spec)
        live = set(self.facts.config_var_names) if self.facts else set()
        names: list[str] = []
        for name in [
            *specs,
            *(self.facts.config_var_names if self.facts else []),
            *extra_vars,
            *command_defaults,
        ]:
            if name not in names:
                names.append(name)

        plan = _EnvPlan()
        not_copied = injected | addon_vars
        for name in names:
            spec = specs.get(name)
            if name in not_copied or (name.startswith("HEROKU_") and name not in extra_vars):
                plan.lists["dropped"].append(name)
            elif name == "PORT":
                self.add(
                    "env-port",
                    "warning",
                    "PORT",
                    "PORT is set as a config var on Heroku; it is left out",
                    "The app env overrides the PORT Convox derives from `port:`; do not copy it.",
                )
                plan.lists["dropped"].append(name)
            elif name in command_defaults:
                plan.defaults[name] = command_defaults[name]
            else:
                plan.classify(name, spec, in_live=name in live)
        self.env_findings(plan)
        entries = sorted(plan.lists["required"]) + [
            f"{n}={plan.defaults[n]}" for n in sorted(plan.defaults)
        ]
        return entries, plan.lists["dropped"]

    def env_findings(self, plan: _EnvPlan) -> None:
        lists = plan.lists
        for code, severity, key, message, advice in _ENV_FINDINGS:
            names = lists[key]
            if not names:
                continue
            if key == "guessed":
                shown = ", ".join(f"{n}={plan.defaults[n]}" for n in names)
            else:
                shown = ", ".join(sorted(names) if key == "required" else names)
            count = f"{len(names)} variable{'s' if len(names) != 1 else ''}"
            self.add(code, severity, "environment", message.format(count=count) + shown, advice)

    # -- everything --------------------------------------------------------------------------------

    def convert(self, command: str, subject: str, where: str, line: int | None) -> str:
        """Convert a command (see :func:`convert_command`), keeping its findings and defaults."""
        result = convert_command(
            command,
            port=self.command_port,
            subject=subject,
            where=where,
            line=line,
            injected=frozenset(self.injected),
        )
        self.findings.extend(result.findings)
        for key, value in result.defaults.items():
            if self.command_defaults.setdefault(key, value) != value:
                self.add(
                    "command-env-default-conflict",
                    "warning",
                    subject,
                    f"{key} falls back to {value} here and to {self.command_defaults[key]} "
                    "elsewhere; the manifest keeps the first",
                    "Use one default, or set the value in the app env.",
                )
        return result.command

    def run(self) -> Translation:
        processes, release = self.processes()
        names = self.names(processes)
        formation, formation_source = self.formation(processes)
        if formation_source is None:
            self.add(
                "scale-default",
                "guess",
                "scale",
                "no formation is known (neither the running app's nor app.json's): every "
                "service starts with count 1",
                "Pass --heroku-app to read the running formation. scale.count applies on the "
                "first deploy only; later use `convox scale SERVICE --count N`.",
            )
        web = next((p for p in processes if p.name == "web"), None)
        port = self.web_port(web) if web is not None else None
        self.command_port = port if port is not None else (self.options.port or DEFAULT_PORT)

        addons = self.addons()
        resources, addon_vars = self.resources(addons)
        for resource in resources:
            self.injected |= resource.injected
        resource_specs = {r.name: self.resource_spec(r) for r in resources}
        links = [r.link for r in resources]

        services: dict[str, dict[str, Any]] = {}
        for process in processes:
            services[names[process.name]] = self.service(
                process,
                names[process.name],
                process is web,
                port,
                links,
                formation,
                formation_source,
            )
        if web is None:
            self.add(
                "no-web",
                "info",
                "services",
                "no web process type: no service gets a port or a load balancer",
                "HTTP smoke checks cannot run; check the services with `convox ps` instead.",
            )
        one_off = self.release(release, web, services, names) if release is not None else None

        timers, timer_specs = self.timers(services, names, links, processes)
        self.build_findings(processes)
        self.domain_findings()
        env, dropped = self.environment(
            self.injected,
            addon_vars,
            [v for a in addons if not _is_mapped(a) for v in a.vars],
            self.command_defaults,
        )

        manifest: dict[str, Any] = {}
        if env:
            manifest["environment"] = env
        if resource_specs:
            manifest["resources"] = resource_specs
        manifest["services"] = services
        if timers:
            manifest["timers"] = timers

        database = next((r for r in resources if r.kind == "postgres"), None)
        live_names = set(self.facts.config_var_names) if self.facts else set()
        return Translation(
            manifest=manifest,
            findings=self.findings,
            service_names=names,
            web_service=names.get("web"),
            health_path=services[names["web"]]["health"] if web is not None else None,
            port=port,
            release_command=one_off[0] if one_off else None,
            release_service=one_off[1] if one_off else None,
            timers=timer_specs,
            database_resource=database.name if database else None,
            database_attachment=(
                database.primary_var.removesuffix("_URL") if database is not None else None
            ),
            excluded_env=[n for n in dropped if n in live_names] if self.facts else dropped,
            scale_down=[
                name
                for name, (quantity, _size) in formation.items()
                if name != "web" and (quantity or 0) > 0
            ],
            inputs=self.inputs,
        )

    def service(
        self,
        process: ProcessType,
        name: str,
        is_web: bool,
        port: int | None,
        links: list[str],
        formation: dict[str, tuple[int | None, str | None]],
        formation_source: str | None,
    ) -> dict[str, Any]:
        service: dict[str, Any] = {"build": self.build_for(process)}
        if process.command:
            self.buildpack_scripts(name, process.command)
            service["command"] = self.convert(process.command, name, process.source, process.line)
        elif process.source.startswith("heroku.y"):
            self.add(
                "command-from-image",
                "info",
                name,
                "no `run` command: the image's CMD runs, as on Heroku",
            )
        if is_web:
            service["port"] = port
            service["health"] = self.health_path()
        if self.is_singleton(process):
            service["singleton"] = True
            self.add(
                "singleton",
                "change",
                name,
                "looks like a scheduler process (must never run twice): `singleton: true`",
                "A singleton service stops the old container before starting the new one "
                "during deploys, so scheduled tasks are not enqueued twice.",
            )
        service["scale"] = self.scale(process, name, formation, formation_source)
        if links:
            service["resources"] = list(links)
        return service

    def release(
        self,
        release: ReleaseSpec,
        web: ProcessType | None,
        services: dict[str, dict[str, Any]],
        names: dict[str, str],
    ) -> tuple[str, str] | None:
        """Apply the release command; returns (command, service) when it runs as a one-off."""
        target = names[web.name] if web is not None else next(iter(services))
        converted = self.convert(
            release.command, f"release ({target})", release.source, release.line
        )
        if release.image is not None and web is not None and release.image != web.name:
            self.add(
                "release-image",
                "warning",
                "release",
                f'heroku.yml runs release in the "{release.image}" image; on Convox it runs '
                f"in {target}'s image",
                f"Make sure {target}'s image contains what the release command needs.",
            )
        if web is None:
            self.add(
                "release-target",
                "guess",
                "release",
                f"no web process: the release command runs with {target}",
            )
        if self.options.release_as == "one-off":
            self.add(
                "release-one-off",
                "change",
                "release",
                "the release command runs once per release, before promote (playbook "
                "`release:`), not in convox.yml",
                "By hand: `convox build --id -a APP` (prints the release id R), then "
                f"`convox run {target} --release R -a APP -- {shlex.quote(converted)}`, then "
                "`convox releases promote R -a APP`.",
            )
            return converted, target
        services[target]["initContainer"] = {"command": converted}
        replicas = services[target]["scale"].get("count", 1)
        at_once = f", {replicas} at a time" if isinstance(replicas, int) and replicas > 1 else ""
        self.add(
            "release-init-container",
            "change",
            "release",
            f"the release command became {target}'s initContainer: it runs before every "
            f"{target} container starts (each deploy, restart and scale-up{at_once}), not once "
            "per release",
            "It must be idempotent and safe to run concurrently (Rails and Django migrations "
            "lock; custom scripts may not). To run it once per release before promote instead, "
            "use --release-as one-off.",
        )
        return None

    # -- pieces -------------------------------------------------------------------------------

    def web_port(self, web: ProcessType) -> int:
        if self.options.port is not None:
            if not 1 <= self.options.port <= 65535:
                raise TranslateInputError("--port", f"{self.options.port} is not a TCP port")
            return self.options.port
        found, how = _web_port(web.command)
        if found is not None and 1 <= found <= 65535:
            self.add(
                "port-from-command",
                "info" if how and how.startswith("$") else "guess",
                "web",
                f"port {found}, from {how} in the web command",
                "Pass --port to choose another one.",
            )
            return found
        if web.command is None or not _PORT_REF.search(web.command):
            self.add(
                "port-assumed",
                "guess",
                "web",
                f"the web command does not name a port; port {DEFAULT_PORT} assumed",
                f"The app must listen on $PORT (Convox sets PORT={DEFAULT_PORT}) or on "
                f"{DEFAULT_PORT}; pass --port if it listens elsewhere.",
            )
        return DEFAULT_PORT

    def health_path(self) -> str:
        if self.options.health:
            if not self.options.health.startswith("/") or any(
                c.isspace() for c in self.options.health
            ):
                raise TranslateInputError(
                    "--health", f'"{self.options.health}" is not a URL path like /healthz'
                )
            return self.options.health
        if self.tree.rails_health_route:
            self.add(
                "health-detected",
                "info",
                "web",
                f"health check path {RAILS_HEALTH_PATH}: config/routes.rb routes "
                "rails_health_check",
            )
            return RAILS_HEALTH_PATH
        self.add(
            "health-assumed",
            "guess",
            "web",
            f"health check path {DEFAULT_HEALTH_PATH} assumed",
            "Convox routes traffic only to containers that answer 2xx/3xx there: add the "
            "endpoint, or pass --health PATH (e.g. --health /).",
        )
        return DEFAULT_HEALTH_PATH

    def is_singleton(self, process: ProcessType) -> bool:
        if process.name.lower() in _SINGLETON_NAMES:
            return True
        return bool(process.command and _SINGLETON_COMMAND.search(process.command))

    def buildpack_scripts(self, service: str, command: str) -> None:
        for script, advice in _BUILDPACK_SCRIPTS.items():
            if script in command:
                self.add(
                    "command-buildpack-script",
                    "warning",
                    service,
                    f"{script} exists only in a Heroku buildpack's slug",
                    f"It is {advice}; change the command to match the Dockerfile.",
                )

    def build_for(self, process: ProcessType) -> str | dict[str, str]:
        if process.dockerfile is None:
            return "."
        path = PurePosixPath(process.dockerfile.replace("\\", "/"))
        folder = str(path.parent) if str(path.parent) not in ("", ".") else "."
        if path.name == "Dockerfile":
            return folder
        return {"path": folder, "manifest": path.name}

    def timers(
        self,
        services: dict[str, dict[str, Any]],
        names: dict[str, str],
        links: list[str],
        processes: list[ProcessType],
    ) -> tuple[dict[str, dict[str, Any]], list[TimerSpec]]:
        options = self.options
        out: dict[str, dict[str, Any]] = {}
        specs: list[TimerSpec] = []
        if not options.timers and not options.jobs_service:
            return out, specs
        jobs: str | None = None
        if options.jobs_service:
            jobs = "jobs"
            counter = 2
            while jobs in services:
                jobs = f"jobs-{counter}"
                counter += 1
            template = services[names.get("web") or names[processes[0].name]]
            jobs_service: dict[str, Any] = {"build": template["build"], "scale": {"count": 0}}
            if links:
                jobs_service["resources"] = list(links)
            services[jobs] = jobs_service
            self.add(
                "jobs-service",
                "change",
                jobs,
                f'a "{jobs}" service at count 0 runs the timers (the guide\'s one-off-dyno '
                "pattern)",
                "It runs no containers of its own; each timer starts one from its image.",
            )
        reverse = {v: v for v in services}
        for heroku_name, service_name in names.items():
            reverse[heroku_name] = service_name
        for spec in options.timers:
            name = convox_name(spec.name)
            where = spec.source
            if name in out:
                raise TranslateInputError(where, "duplicate timer", field=f"timers.{spec.name}")
            if name != spec.name:
                self.add(
                    "timer-renamed",
                    "change",
                    f"timer {name}",
                    f'timer "{spec.name}" renamed to "{name}"',
                    "Convox timer names must match ^[a-z][a-z0-9-]*$.",
                )
            schedule, note = parse_schedule(
                spec.schedule, where=where, field_name=f"timers.{spec.name}.schedule"
            )
            if spec.service is not None:
                if spec.service not in reverse:
                    raise TranslateInputError(
                        where,
                        f'no service "{spec.service}" (services: {", ".join(services)})',
                        field=f"timers.{spec.name}.service",
                    )
                target = reverse[spec.service]
            else:
                target = self.timer_target(services, jobs, names)
                self.add(
                    "timer-service-guessed",
                    "guess",
                    f"timer {name}",
                    f'runs in the "{target}" service',
                    "A timer starts a new container of that service (image, env, resources) "
                    "to run its command; name another with the timer's service.",
                )
            command = self.convert(spec.command, f"timer {name}", where, None)
            out[name] = {"schedule": schedule, "command": command, "service": target}
            specs.append(TimerSpec(name, schedule, spec.command, target, source=where))
            self.add(
                "timer-mapped",
                "change",
                f"timer {name}",
                f'Scheduler job became a timer "{schedule}" (UTC) on {target}'
                + (f"; schedule from {note}" if note else ""),
                "Disable the Heroku Scheduler job at cutover so it does not run twice.",
            )
        return out, specs

    def timer_target(
        self, services: dict[str, dict[str, Any]], jobs: str | None, names: dict[str, str]
    ) -> str:
        if jobs is not None:
            return jobs
        if "worker" in services:
            return "worker"
        web = names.get("web")
        others = [s for s in services if s != web]
        return others[0] if others else next(iter(services))

    def build_findings(self, processes: list[ProcessType]) -> None:
        tree = self.tree
        if tree.heroku_yml is not None and tree.heroku_yml.processes:
            for dockerfile in sorted({p.dockerfile for p in processes if p.dockerfile}):
                if not (tree.root / dockerfile).is_file():
                    self.add(
                        "dockerfile-missing",
                        "warning",
                        dockerfile,
                        f"{tree.heroku_yml.path} builds from {dockerfile}, which is not in the "
                        "folder",
                        "Add it (or fix the path) before `convox build`.",
                    )
            for process in processes:
                if process.target:
                    self.add(
                        "build-target",
                        "unmapped",
                        convox_name(process.name),
                        f'heroku.yml builds the "{process.target}" stage of {process.dockerfile}; '
                        "convox.yml has no build target",
                        "Make that stage the last one of the Dockerfile, or give it a Dockerfile "
                        "of its own.",
                    )
            if tree.heroku_yml.build_config:
                self.add(
                    "build-config",
                    "warning",
                    "build",
                    "heroku.yml build.config sets build-time variables: "
                    + ", ".join(tree.heroku_yml.build_config),
                    "Declare them as ARG in the Dockerfile and pass them with `convox build "
                    "--build-args NAME=value` (or `convox deploy --build-args`).",
                )
            return
        stacks = tree.stacks
        detected = (
            ", ".join(f"{s.stack} ({s.evidence})" for s in stacks) if stacks else "no known stack"
        )
        notes: list[str] = []
        if tree.runtime_pins:
            notes.append("pin the runtime the app uses: " + ", ".join(tree.runtime_pins))
        if tree.aptfile:
            notes.append("apt-get install the packages listed in Aptfile")
        if len(stacks) > 1:
            notes.append(
                "install every runtime in one image (a multi-stage build can copy the "
                "build-only ones' output, e.g. compiled assets)"
            )
        extra = ("; " + "; ".join(notes)) if notes else ""
        if not tree.has_dockerfile:
            self.add(
                "dockerfile-needed",
                "warning",
                "build",
                f"the app builds with Heroku buildpacks (detected: {detected}); Convox builds "
                "from a Dockerfile and there is none",
                "Write a Dockerfile at the folder's root: install dependencies, copy the app, run "
                f"the asset build, set CMD{extra}. Every service builds from it (`build: .`).",
            )
        else:
            self.add(
                "dockerfile-unverified",
                "warning",
                "build",
                f"Heroku builds this app with buildpacks (detected: {detected}), not with the "
                "folder's Dockerfile, which Convox will use",
                "Check that the Dockerfile produces what the buildpacks produce (runtime "
                f"version, assets, system packages){extra}.",
            )

    def domain_findings(self) -> None:
        if self.facts is None:
            return
        for domain in self.facts.custom_domains:
            if domain.hostname.startswith("*."):
                self.add(
                    "custom-domain-wildcard",
                    "warning",
                    domain.hostname,
                    "wildcard custom domain on Heroku; convox.yml leaves it out",
                    "Check that the rack can route and certify a wildcard name before the "
                    "cutover; cutover moves one record, so move this one yourself.",
                )
                continue
            self.add(
                "custom-domain",
                "info",
                domain.hostname,
                "custom domain on Heroku"
                + (f" (CNAME {domain.cname})" if domain.cname else "")
                + "; convox.yml leaves it out until the DNS step",
                f"At cutover add `domain: {domain.hostname}` to the web service and point the "
                "record at the rack router (cutover init writes it as the playbook's dns.record).",
            )


def _addon_subject(addon: _Addon) -> str:
    return addon.service if addon.name == addon.service else f"{addon.service} ({addon.name})"


def _is_mapped(addon: _Addon) -> bool:
    kind = ADDONS.get(addon.service)
    return kind is not None and kind.resource is not None


def _usable_default(name: str, value: str) -> bool:
    """A constant from the sources that may be written into convox.yml as a default."""
    if _SECRET_NAME.search(name.upper()):
        return False
    return bool(value) and "\n" not in value and "${" not in value and len(value) <= 200


def translate(
    tree: SourceTree, facts: LiveFacts | None, options: TranslateOptions | None = None
) -> Translation:
    """Translate sources (+ live facts) into a manifest and findings.

    Raises :class:`TranslateInputError` when the inputs are invalid or contradict each other.
    """
    return _Translator(tree, facts, options or TranslateOptions()).run()
