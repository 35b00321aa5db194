"""Heroku add-ons -> Convox resources: names (which decide the injected variables), types,
options (version, storage, class), and findings for the add-ons Convox has no resource for.

The add-on table is :mod:`cutover.catalog` (shared with set-env's exclusions)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from cutover.catalog import AddonKind, ResourceKind, shared_advice
from cutover.catalog import addons as addon_table
from cutover.translate.extensions import (
    IMAGE_ONLY,
    POSTGIS,
    VECTOR,
    postgis_version,
    ssl_required,
)
from cutover.translate.facts import LiveFacts
from cutover.translate.model import (
    MANAGED_NAME_MAX,
    MANAGED_NAME_RULE,
    NAME_RULE,
    FindingLog,
    TranslateOptions,
)
from cutover.translate.sources import AddonSpec, SourceTree

__all__ = ["Addon", "Resource", "ResourcePlanner", "addon_subject", "is_mapped"]

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


@dataclass
class Addon:
    service: str
    plan: str | None
    name: str
    vars: tuple[str, ...]
    attachments: tuple[str, ...]
    source: str
    options: tuple[tuple[str, str], ...] = ()  # app.json/heroku.yml add-on options


@dataclass
class Resource:
    name: str
    link: str  # what services list: "name" or "name:VAR"
    kind: ResourceKind
    addon: Addon
    injected: set[str]
    primary_var: str


def _tier(plan: str | None) -> str:
    tier = (plan or "").partition(":")[2].lower()
    for prefix in ("standard-", "premium-", "private-", "shield-"):
        if tier.startswith(prefix):
            return tier.removeprefix(prefix)
    return tier


class ResourcePlanner:
    """Maps one translation's add-ons to resources, logging findings."""

    def __init__(
        self,
        tree: SourceTree,
        facts: LiveFacts | None,
        options: TranslateOptions,
        log: FindingLog,
    ) -> None:
        self.tree = tree
        self.facts = facts
        self.options = options
        self.add = log.add

    def addons(self) -> list[Addon]:
        if self.facts is not None:
            return [
                Addon(a.service, a.plan, a.name, a.config_vars, a.attachments, "live add-ons")
                for a in self.facts.addons
            ]
        specs: list[AddonSpec] = []
        if self.tree.app_json is not None:
            specs.extend(self.tree.app_json.addons)
        if self.tree.heroku_yml is not None:
            specs.extend(self.tree.heroku_yml.addons)
        out: list[Addon] = []
        seen: set[tuple[str, str | None]] = set()
        for spec in specs:
            key = (spec.service, spec.as_name)
            if key in seen:
                continue
            seen.add(key)
            kind = addon_table().get(spec.service)
            if spec.as_name:
                variables: tuple[str, ...] = (f"{spec.as_name.upper()}_URL",)
            else:
                variables = kind.default_vars if kind else ()
            attachments = (spec.as_name.upper(),) if spec.as_name else ()
            out.append(
                Addon(
                    spec.service,
                    spec.plan,
                    spec.service,
                    variables,
                    attachments,
                    spec.source,
                    spec.options,
                )
            )
        return out

    def resources(self, addons: list[Addon]) -> tuple[list[Resource], set[str]]:
        """Mapped resources, plus every config var name of the mapped add-ons."""
        resources: list[Resource] = []
        taken: set[str] = set()
        addon_vars: set[str] = set()
        for addon in addons:
            kind = addon_table().get(addon.service)
            if kind is None:
                self.add(
                    "addon-unknown",
                    "unmapped",
                    addon_subject(addon),
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

    def unmapped(self, addon: Addon, kind: AddonKind) -> None:
        if kind.category == "scheduler":
            if not self.options.timers:
                self.add(
                    "scheduler-jobs",
                    "unmapped",
                    addon_subject(addon),
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
            addon_subject(addon),
            f"{kind.category} add-on with no Convox resource; its config vars stay in "
            f"`environment` to copy{listed}",
            kind.advice or shared_advice("keep-account"),
        )

    def resource(self, addon: Addon, kind: ResourceKind, taken: set[str]) -> Resource:
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
        subject = addon_subject(addon)
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
        resource = Resource(name, link, kind, addon, injected, primary)
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

    def resource_spec(self, resource: Resource) -> dict[str, Any]:
        managed = self.options.managed
        rtype = _RESOURCE_TYPES[resource.kind][1 if managed else 0]
        options: dict[str, str] = {}
        addon = resource.addon
        tier = _tier(addon.plan)
        asked = self.addon_options(resource.name, addon)
        image: str | None = None
        if resource.kind == "postgres":
            version = self.facts.postgres_version if self.facts else None
            if not version and asked.get("version"):
                version = asked["version"]
                self.add(
                    "postgres-version-from-options",
                    "info",
                    resource.name,
                    f"PostgreSQL {version}, from the add-on's options.version in {addon.source}",
                )
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
        if resource.kind == "postgres":
            rtype, image = self.postgres_extensions(resource.name, rtype, options)
            self.postgres_tls(resource.name)
        if resource.kind == "redis":
            self.redis_version(resource.name, asked, options)
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
        if image is not None:
            spec["image"] = image
        if options:
            spec["options"] = options
        return spec

    # -- environment -----------------------------------------------------------------------------

    def addon_options(self, name: str, addon: Addon) -> dict[str, str]:
        """The add-on's app.json/heroku.yml options; the ones Convox cannot take are named."""
        asked = dict(addon.options)
        ignored = sorted(k for k in asked if k != "version")
        if ignored:
            self.add(
                "addon-options-unmapped",
                "info",
                name,
                f"add-on options with no Convox equivalent: {', '.join(ignored)} "
                f"(from {addon.source})",
                "Convox resources take type, image and options (version, storage, class...); "
                "fork/follow/rollback of a Heroku database become the data copy cutover does.",
            )
        return asked

    def postgres_tls(self, name: str) -> None:
        evidence = ssl_required(self.tree.root)
        if evidence is None or self.options.managed:
            return
        self.add(
            "postgres-tls-required",
            "warning",
            name,
            f"{evidence} makes the app require TLS to the database (Heroku Postgres accepts "
            "nothing else); Convox's in-cluster postgres runs without TLS",
            "Make TLS depend on an env var (e.g. require it only when DATABASE_SSLMODE=require) "
            'or use --managed (rds-postgres serves TLS); otherwise the app fails with "server '
            'does not support SSL, but SSL was required".',
        )

    def redis_version(self, name: str, asked: dict[str, str], options: dict[str, str]) -> None:
        if asked.get("version"):
            options["version"] = asked["version"]
        elif not self.options.managed:
            self.add(
                "redis-version",
                "warning",
                name,
                "the in-cluster redis resource runs Convox's default image (redis 4.0.10) "
                "unless options.version is set",
                'Set options.version to the Redis version Heroku runs (e.g. "7"); clients such '
                "as Sidekiq 7 refuse Redis older than 6.2.",
            )

    def postgres_extensions(
        self, name: str, rtype: str, options: dict[str, str]
    ) -> tuple[str, str | None]:
        """The resource type and image for the extensions the app needs (see
        :mod:`cutover.translate.extensions`); ``options`` may get a postgis version."""
        needed = dict(self.tree.postgres_extensions)
        for extension in self.facts.postgres_extensions if self.facts else []:
            needed.setdefault(extension, "the live database (pg_extension)")
        postgis = sorted(e for e in needed if e in POSTGIS)
        vector = VECTOR in needed
        others = sorted(e for e in needed if e in IMAGE_ONLY)
        evidence = ", ".join(f"{e} ({needed[e]})" for e in sorted(needed))
        if not needed:
            return rtype, None
        if self.options.managed:
            self.add(
                "postgres-extensions",
                "info" if not others else "warning",
                name,
                f"the app uses {evidence}",
                "Amazon RDS for PostgreSQL supports postgis and vector: `CREATE EXTENSION` "
                "works after the restore."
                + (f" Check that RDS supports {', '.join(others)}." if others else ""),
            )
            return rtype, None
        major = options.get("version")
        image: str | None = None
        if postgis:
            rtype = "postgis"
            if major:
                options["version"] = postgis_version(major)
            self.add(
                "postgres-postgis",
                "change",
                name,
                f"the app uses {evidence}: the resource is `type: postgis` "
                f"(image postgis/postgis:{options.get('version', '10-3.2')}), not postgres",
                "Convox's postgres image has no PostGIS; the first restore would stop at "
                "CREATE EXTENSION postgis. Check that the postgis/postgis tag exists for your "
                "PostgreSQL and PostGIS versions (`heroku pg:psql -c 'SELECT postgis_version()'`).",
            )
        elif vector:
            tag = f"pg{major.split('.')[0]}" if major else "pg16"
            image = f"pgvector/pgvector:{tag}"
            self.add(
                "postgres-pgvector",
                "change" if major else "guess",
                name,
                f"the app uses {evidence}: the resource runs the image {image} "
                "(PostgreSQL with pgvector)",
                "Convox's postgres image has no pgvector; the first restore would stop at "
                "CREATE EXTENSION vector. The image must match the Heroku PostgreSQL major.",
            )
        if (vector and postgis) or others:
            missing = (["vector"] if vector and postgis else []) + others
            self.add(
                "postgres-extension-image",
                "warning",
                name,
                f"no stock image has {', '.join(missing)} "
                + ("next to PostGIS" if postgis else "in PostgreSQL"),
                "Build an image FROM the resource's image that installs them (e.g. Debian "
                "package postgresql-16-pgvector), push it to a registry the rack can pull from, "
                "and set the resource's `image:` to it.",
            )
        return rtype, image


def addon_subject(addon: Addon) -> str:
    return addon.service if addon.name == addon.service else f"{addon.service} ({addon.name})"


def is_mapped(addon: Addon) -> bool:
    kind = addon_table().get(addon.service)
    return kind is not None and kind.resource is not None
