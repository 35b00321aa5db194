"""The playbook (``cutover.yml``): what to migrate and how. Unknown keys are refused.

Secrets never live here: config values come from Heroku, database passwords from the platforms,
DNS credentials from the environment (``CUTOVER_DNS_TSIG_SECRET`` or the sandbox).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from cutover.errors import InvalidInput
from cutover.playbook_dns import DnsSection, TlsSection
from cutover.playbook_mysql import MysqlSection
from cutover.playbook_redis import RedisSection
from cutover.playbook_yaml import MAX_PLAYBOOK_BYTES, parse_yaml, read_limited

DEFAULT_PLAYBOOK = "cutover.yml"
_APP_NAME = re.compile(r"^[a-z][a-z0-9-]*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Heroku app names: a lowercase letter, then lowercase letters, digits and dashes, 3 to 30
# characters in all: the rule of Heroku's docs as the project brief states it. No source on
# this machine states it: the heroku CLI (src/commands/apps/create.ts in the heroku/cli mirror)
# passes the name to the API unchecked and @heroku-cli/schema's types carry no pattern. It also
# bounds what goes into every heroku argv (a 10 MB name made plan take 74 s).
_HEROKU_APP = re.compile(r"^[a-z][a-z0-9-]{2,29}$")
# Convox: pkg/cli/helpers.go (9e02452) checks ^[a-z][a-z0-9-]*$; the app is a Kubernetes
# namespace "<rack>-<app>" (provider/k8s), a DNS label of 63 characters at most.
_CONVOX_NAME_MAX = 63


class HerokuSection(_Model):
    app: Annotated[str, Field(description="The Heroku app to migrate.")]

    @field_validator("app")
    @classmethod
    def _app_name(cls, value: str) -> str:
        if not _HEROKU_APP.fullmatch(value):
            shown = value if len(value) <= 40 else f"{value[:40]}... ({len(value)} characters)"
            raise ValueError(
                f"{shown!r} is not a Heroku app name: 3 to 30 characters, a lowercase letter "
                "first, then lowercase letters, digits and dashes"
            )
        return value


class ConvoxSection(_Model):
    app: Annotated[str, Field(description="The Convox app to create and deploy.")]
    rack: str | None = Field(default=None, description="Rack name passed as -r; default: current.")
    manifest: str = Field(default="convox.yml", description="Manifest file inside `source`.")
    source: str = Field(default=".", description="Folder to deploy, relative to the playbook.")
    adopt: bool = Field(
        default=False,
        description="Deploy into an existing app cutover did not create (its env differences "
        "are shown at a gate first); without it an existing app is refused.",
    )

    @field_validator("app")
    @classmethod
    def _app_name(cls, value: str) -> str:
        if len(value) > _CONVOX_NAME_MAX:
            raise ValueError(f"is {len(value)} characters long; at most {_CONVOX_NAME_MAX}")
        if not _APP_NAME.match(value):
            raise ValueError("must match ^[a-z][a-z0-9-]*$ (lowercase letters, digits, dashes)")
        return value


class EnvSection(_Model):
    exclude: list[str] = Field(default_factory=list, description="Names or globs not copied.")
    override: dict[str, str] = Field(
        default_factory=dict, description="Non-secret values set instead of Heroku's."
    )

    @field_validator("override")
    @classmethod
    def _names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not _ENV_NAME.match(name):
                raise ValueError(f"{name!r} is not a valid environment variable name")
        return value


class DatabaseSection(_Model):
    resource: str = Field(default="database", description="Convox resource to restore into.")
    heroku_attachment: str = Field(default="DATABASE", description="Heroku attachment name.")
    method: Literal["backup", "direct", "in-rack"] = Field(
        default="backup",
        description="How the data moves: 'backup' (the guide: capture a Heroku backup, download "
        "it, pg_restore through the proxy), 'direct' (pg_dump from Heroku over TLS straight into "
        "the resource, in parallel), 'in-rack' (the dump and restore run in the rack as a "
        "one-off, so the data never leaves the cloud).",
    )
    final_sync: Literal["full", "changed-tables", "changed-rows"] = Field(
        default="full",
        description="'full' copies everything again in the window; 'changed-tables' copies only "
        "the tables that changed since the initial sync (and every sequence); 'changed-rows' "
        "installs change capture on Heroku before the initial sync (step capture-changes: a "
        "schema _cutover and triggers logging each changed row's key) and applies only the "
        "logged rows in the window (and any time before it with `cutover catch-up`).",
    )
    catchup_batch_keys: int = Field(
        default=50_000,
        ge=1,
        description="changed-rows: keys fetched from Heroku and written to Convox per batch "
        "(one transaction on the Convox database each).",
    )
    restore_jobs: int = Field(
        default=2, ge=1, le=32, description="Parallel jobs for the restore and table copies."
    )
    verify: Literal["counts", "checksums"] = Field(
        default="checksums", description="How verify-data compares the databases."
    )
    verify_counts_only_above_mb: int | None = Field(
        default=None,
        ge=1,
        description="Tables larger than this (MB, on Heroku) are compared by row count only.",
    )
    skip_extensions: list[str] = Field(
        default_factory=lambda: ["pg_stat_statements"],
        description="Extensions not created on the target when its role may not create them "
        "(each skip is reported as a finding); any other extension the target cannot create "
        "stops the data preflight, before the window.",
    )
    in_rack_service: str = Field(
        default="pgclient",
        description="in-rack: the convox.yml service run as the one-off (its image must carry "
        "pg_dump and pg_restore of the server's major, e.g. postgres:16; scale count 0).",
    )
    timeout: int = Field(default=3600, ge=10, description="Seconds allowed for dump or restore.")


class SmokeCheck(_Model):
    path: str = "/"
    status: int = Field(default=200, ge=100, le=599)
    contains: str | None = None

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with /")
        return value


class SmokeSection(_Model):
    service: str = "web"
    checks: list[SmokeCheck] = Field(default_factory=lambda: [SmokeCheck(path="/")])
    timeout: int = Field(default=180, ge=1, description="Seconds to keep retrying a fresh deploy.")


class WindowSection(_Model):
    scale_down: list[str] | None = Field(
        default=None,
        description="Heroku process types stopped in the window; default: every process type "
        "of the formation but web (read in scale-down).",
    )
    drain_seconds: int = Field(default=30, ge=0, description="Wait for workers to finish jobs.")
    ttl_wait_max: int = Field(
        default=300,
        ge=0,
        description="wait-ttl waits up to this long for caches to drop the old TTL.",
    )
    stop_one_off: list[str] = Field(
        default_factory=list,
        description="One-off dynos scale-down stops (`heroku ps:stop --dyno-name`): shell-style "
        "patterns matched against the dyno's name (run.1234) or its command; other running "
        "one-off dynos are listed and waited for.",
    )
    freeze_writes: bool = Field(
        default=True,
        description="freeze-writes: make Heroku's database read-only for every client but "
        "cutover (default_transaction_read_only on the database) before the final sync.",
    )
    freeze_quiet_seconds: int = Field(
        default=5,
        ge=0,
        description="freeze-writes waits until the database statistics stood still this long.",
    )
    freeze_timeout: int = Field(
        default=120,
        ge=1,
        description="freeze-writes fails when the statistics do not stand still within this.",
    )
    rehearsal: str | None = Field(
        default=None,
        description="The .cutover folder (holding state.json) of a rehearsal: the same playbook "
        "run against staging or the sandbox. Its measured step durations predict this run's "
        "(data steps scaled by database size); relative to the playbook.",
    )


class ReleaseSection(_Model):
    """A release command run once per release (``translate --release-as one-off``) with
    ``convox run SERVICE --release R --timeout TIMEOUT -- COMMAND``: before the promote, except
    for the app's first release, which must be promoted first (steps/ship.py, docs/design.md).
    ``timeout`` is how long the rack lets it run (the run pod sleeps that long)."""

    command: str = Field(min_length=1)
    service: str = "web"
    timeout: int = Field(default=1800, ge=10)


class TimerEntry(_Model):
    """A Heroku Scheduler job, read by ``cutover translate``/``init`` to write a timer."""

    name: str
    schedule: str
    command: str
    service: str | None = None


class NotifySection(_Model):
    """Webhook notifications (cutover/notify.py): the URL is a secret, so the playbook names
    only the environment variable holding it."""

    webhook_env: str = Field(
        description="Environment variable holding the webhook URL (Slack-compatible JSON)."
    )

    @field_validator("webhook_env")
    @classmethod
    def _env_name(cls, value: str) -> str:
        if not _ENV_NAME.match(value):
            raise ValueError(f"{value!r} is not a valid environment variable name")
        return value


class Playbook(_Model):
    version: Literal[1] = 1
    heroku: HerokuSection
    convox: ConvoxSection
    env: EnvSection = Field(default_factory=EnvSection)
    database: DatabaseSection | None = Field(default_factory=DatabaseSection)
    smoke: SmokeSection | None = Field(default_factory=SmokeSection)
    dns: DnsSection | None = None
    window: WindowSection = Field(default_factory=WindowSection)
    release: ReleaseSection | None = None
    timers: list[TimerEntry] = Field(default_factory=list)
    sandbox: str | None = Field(
        default=None, description="Sandbox folder (cutover sandbox up), relative to the playbook."
    )
    notify: NotifySection | None = None
    tls: TlsSection = Field(default_factory=TlsSection)
    redis: RedisSection = Field(default_factory=RedisSection)
    mysql: MysqlSection = Field(default_factory=MysqlSection)

    @field_validator("version", mode="before")
    @classmethod
    def _strict_version(cls, value: Any) -> Any:
        """``version: true`` is YAML's boolean, equal to 1 in Python: refused, not version 1."""
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"must be the integer 1 (got {type(value).__name__} {value!r})")
        return value


class LoadedPlaybook:
    """A validated playbook with where it came from and its fingerprint."""

    def __init__(self, path: Path, model: Playbook, raw: dict[str, Any]) -> None:
        self.path = path
        self.model = model
        self.raw = raw

    @property
    def folder(self) -> Path:
        return self.path.parent

    @property
    def state_dir(self) -> Path:
        return self.folder / ".cutover"

    def resolve(self, relative: str) -> Path:
        return (self.folder / relative).resolve()

    def flat(self) -> dict[str, str]:
        """Every leaf field as ``dotted.path -> JSON value``, defaults included."""
        return _flatten(self.model.model_dump(mode="json"))

    def fingerprint(self) -> str:
        blob = json.dumps(self.model.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()


def load_playbook(path: Path) -> LoadedPlaybook:
    """Read and validate a playbook; every problem is an InvalidInput naming file and field."""
    path = path.resolve()
    try:
        text = read_limited(path, MAX_PLAYBOOK_BYTES, "playbook")
    except FileNotFoundError:
        raise InvalidInput(
            f"{path}: playbook not found",
            resolution="Pass -f PATH, or create one with `cutover init` "
            "(see playbooks/example.yml).",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{path}: cannot read playbook: {exc}") from None
    raw = parse_yaml(text, path)
    if not isinstance(raw, dict):
        raise InvalidInput(f"{path}: a playbook must be a YAML mapping (got {type(raw).__name__})")
    try:
        model = Playbook.model_validate(raw)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "(top level)"
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = "unknown field"
            elif err["type"] == "missing":
                msg = "required field is missing"
            lines.append(f"  {field}: {msg}")
        raise InvalidInput(
            f"{path}: invalid playbook",
            details="\n".join(lines),
            resolution="See README: Playbook reference.",
        ) from None
    return LoadedPlaybook(path, model, raw)


def changed_fields(old: dict[str, str], new: dict[str, str]) -> list[str]:
    """Dotted field paths whose value differs between two ``flat()`` snapshots."""
    keys = sorted(set(old) | set(new))
    return [k for k in keys if old.get(k) != new.get(k)]


def _flatten(value: Any, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    if isinstance(value, dict) and value:
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    else:
        out[prefix] = json.dumps(value, sort_keys=True)
    return out
