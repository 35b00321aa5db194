"""Translate a Heroku app (sources + live facts) into a convox.yml manifest and findings.

The mapping follows the guide's concept table (docs: "Migrating from Heroku") and fixes what
the table leaves out: commands that need a shell, process type names Convox refuses, ``release``
running at every pod start, resource names that decide which variables get injected. The pieces
live in their own modules: :mod:`~cutover.translate.model` (options, findings, defaults),
:mod:`~cutover.translate.shell` (commands), :mod:`~cutover.translate.resources` (add-ons),
:mod:`~cutover.translate.envplan` (environment), :mod:`~cutover.translate.schedules` (timers),
:mod:`~cutover.translate.build` (build, registry images, domains),
:mod:`~cutover.translate.formation` (scale), :mod:`~cutover.translate.boot` (variables a dyno
gets at boot), :mod:`~cutover.translate.defaults` (buildpack default processes, Procfile
pointers, process managers), :mod:`~cutover.translate.extensions` (PostGIS, pgvector, TLS);
this module orders them.
"""

from __future__ import annotations

import re
from typing import Any, Final

from cutover.catalog import DynoSize, dyno_size, dyno_sizes
from cutover.translate.bashsyntax import scan, variables_used
from cutover.translate.boot import boot_defaults
from cutover.translate.build import (
    build_findings,
    build_for,
    buildpack_scripts,
    domain_findings,
    registry_app,
    registry_findings,
    registry_image,
)
from cutover.translate.defaults import default_processes, process_manager, procfile_elsewhere
from cutover.translate.envplan import environment
from cutover.translate.facts import LiveFacts
from cutover.translate.formation import Formation
from cutover.translate.formation import formation as plan_formation
from cutover.translate.formation import scale as plan_scale
from cutover.translate.model import (
    DEFAULT_HEALTH_PATH,
    DEFAULT_PORT,
    NAME_RULE,
    RAILS_HEALTH_PATH,
    Finding,
    FindingLog,
    ReleaseAs,
    Severity,
    TimerSpec,
    TranslateOptions,
    Translation,
    convox_name,
    input_error,
)
from cutover.translate.pgclient import plan_pg_client
from cutover.translate.release import plan_release
from cutover.translate.resources import ResourcePlanner, is_mapped
from cutover.translate.runtime import runtime_findings
from cutover.translate.schedules import (
    parse_schedule,
    parse_timer_option,
    plan_timers,
    timer_specs_from_playbook,
)
from cutover.translate.shell import PORT_REF, convert_command, web_port
from cutover.translate.sources import ProcessType, ReleaseSpec, SourceTree

__all__ = [
    "DEFAULT_HEALTH_PATH",
    "DEFAULT_PORT",
    "DYNO_SIZES",
    "NAME_RULE",
    "DynoSize",
    "Finding",
    "ReleaseAs",
    "Severity",
    "TimerSpec",
    "TranslateOptions",
    "Translation",
    "convert_command",
    "convox_name",
    "dyno_size",
    "parse_schedule",
    "parse_timer_option",
    "timer_specs_from_playbook",
    "translate",
]

DYNO_SIZES: Final[dict[str, DynoSize]] = dyno_sizes()

# gunicorn (settings.py, `workers`: default int(os.environ.get("WEB_CONCURRENCY", 1))) and
# uvicorn (`--workers`: default $WEB_CONCURRENCY) size themselves from WEB_CONCURRENCY, which
# heroku-buildpack-python sets at boot from the dyno's memory.
_IMPLICIT_CONCURRENCY: Final = re.compile(r"(?:^|[\s/])(gunicorn|uvicorn)\b")
_WORKERS_FLAG: Final = re.compile(r"(?:\s-w\s*\S|--workers\b|WEB_CONCURRENCY)")

_SINGLETON_NAMES: Final = frozenset({"clock", "beat", "scheduler", "cron", "clockwork"})
_SINGLETON_COMMAND: Final = re.compile(r"\bcelery\b.*\bbeat\b|\bclockwork\b|\bclock\.(py|rb|js)\b")


class _Translator:
    def __init__(self, tree: SourceTree, facts: LiveFacts | None, options: TranslateOptions):
        self.tree = tree
        self.facts = facts
        self.options = options
        self.findings = FindingLog()
        self.planner = ResourcePlanner(tree, facts, options, self.findings)
        self.inputs: list[str] = list(tree.files)
        if facts is not None:
            self.inputs.append(f"live facts of {facts.app}" if facts.app else "live facts")
        self.command_port = options.port or DEFAULT_PORT
        self.registry_app = registry_app(tree, facts)
        # the shell Heroku runs commands with: bash in buildpack slugs, the image's sh otherwise
        uses_images = tree.heroku_yml is not None and bool(tree.heroku_yml.processes)
        self.heroku_shell = "sh" if uses_images or self.registry_app else "bash"
        self.injected: set[str] = set()
        self.command_defaults: dict[str, str] = {}
        self.command_vars: dict[str, list[str]] = {}  # $NAME a command reads -> subjects

    def add(
        self, code: str, severity: Severity, subject: str, message: str, advice: str = ""
    ) -> None:
        self.findings.add(code, severity, subject, message, advice)

    # -- processes ----------------------------------------------------------------------------

    def processes(self) -> tuple[list[ProcessType], ReleaseSpec | None]:
        tree = self.tree
        if self.registry_app is not None and self.facts is not None and self.facts.formation:
            if tree.procfile is not None:
                self.add(
                    "procfile-ignored",
                    "info",
                    "Procfile",
                    "the app runs on Heroku's container stack: its dynos run the released "
                    "images' CMD, not the Procfile, and so does this translation",
                )
            return [
                ProcessType(f.type, None, source="live formation (container stack)")
                for f in self.facts.formation
            ], None
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
        elsewhere = procfile_elsewhere(
            tree, self.facts.config_var_names if self.facts else [], self.findings
        )
        if elsewhere is not None and elsewhere[0]:
            return elsewhere
        if tree.procfile is not None:
            if not tree.procfile:
                raise input_error(
                    "Procfile", "no process types (only release, comments or blank lines)"
                )
            return list(tree.procfile), tree.release
        if (self.facts is None or not self.facts.formation) and (
            defaults := default_processes(tree.root)
        ) is not None:
            self.add(
                "processes-from-buildpack",
                "guess",
                "Procfile",
                f"the folder has no Procfile; the web process is the {defaults[0].source}: "
                f"`{defaults[0].command}`",
                "Heroku runs a buildpack's default process types when no Procfile names them; "
                "commit a Procfile so the command is explicit.",
            )
            return defaults, None
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
        raise input_error(
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
                raise input_error(
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

    def convert(self, command: str, subject: str, where: str, line: int | None) -> str:
        """Convert a command (see :func:`convert_command`), keeping its findings and defaults."""
        result = convert_command(
            command,
            port=self.command_port,
            subject=subject,
            where=where,
            line=line,
            injected=frozenset(self.injected),
            heroku_shell=self.heroku_shell,
        )
        self.findings.extend(result.findings)
        used = variables_used(scan(command).text) - {"PORT"}
        if _IMPLICIT_CONCURRENCY.search(command) and not _WORKERS_FLAG.search(command):
            used.add("WEB_CONCURRENCY")  # gunicorn and uvicorn read it from the env themselves
        for name in used:
            self.command_vars.setdefault(name, []).append(subject)
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

    def known_names(self) -> set[str]:
        """Config var names the sources declare or the live app has."""
        tree = self.tree
        names = {e.name for e in (tree.app_json.env if tree.app_json else [])}
        names |= {e.name for e in (tree.heroku_yml.config if tree.heroku_yml else [])}
        if self.facts is not None:
            names |= set(self.facts.config_var_names)
        return names

    def run(self) -> Translation:
        processes, release = self.processes()
        names = self.names(processes)
        counts, formation_source = plan_formation(self.tree, self.facts, processes, self.findings)
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

        addons = self.planner.addons()
        resources, addon_vars = self.planner.resources(addons)
        for resource in resources:
            self.injected |= resource.injected
        resource_specs = {r.name: self.planner.resource_spec(r) for r in resources}
        links = [r.link for r in resources]

        services: dict[str, dict[str, Any]] = {}
        for process in processes:
            services[names[process.name]] = self.service(
                process,
                names[process.name],
                process is web,
                port,
                links,
                counts,
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
        one_off = (
            plan_release(
                release, web, services, names, self.options.release_as, self.findings, self.convert
            )
            if release is not None
            else None
        )

        timers, timer_specs = plan_timers(
            self.options, services, names, links, processes, self.findings, self.convert
        )
        if self.registry_app is not None:
            registry_findings(self.registry_app, self.findings)
        else:
            build_findings(self.tree, processes, self.findings)
        domain_findings(self.facts, self.findings)
        unmapped_vars = [v for a in addons if not is_mapped(a) for v in a.vars]
        known = self.known_names() | self.injected | set(unmapped_vars)
        self.command_defaults.update(
            boot_defaults(
                self.command_vars,
                known | set(self.command_defaults),
                _memory(services, names.get("web")),
                self.findings,
            )
        )
        env, dropped = environment(
            self.tree,
            self.facts,
            self.findings,
            self.injected,
            addon_vars,
            unmapped_vars,
            self.command_defaults,
        )

        database = next((r for r in resources if r.kind == "postgres"), None)
        if self.options.pg_client:
            plan_pg_client(
                services, database.name if database else None, resource_specs, self.findings
            )

        manifest: dict[str, Any] = {}
        if env:
            manifest["environment"] = env
        if resource_specs:
            manifest["resources"] = resource_specs
        manifest["services"] = services
        if timers:
            manifest["timers"] = timers

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
                for name, (quantity, _size) in counts.items()
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
        formation_map: Formation,
        formation_source: str | None,
    ) -> dict[str, Any]:
        service: dict[str, Any] = (
            {"image": registry_image(self.registry_app, process.name)}
            if self.registry_app is not None
            else {"build": build_for(process)}
        )
        if process.command:
            buildpack_scripts(self.findings, name, process.command)
            if self.registry_app is None:
                runtime_findings(self.tree, self.findings, name, process)
            process_manager(process.command, self.tree.root, name, self.findings)
            service["command"] = self.convert(process.command, name, process.source, process.line)
        elif process.source.startswith(("heroku.y", "live formation (container")):
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
        service["scale"] = plan_scale(self.findings, process, name, formation_map, formation_source)
        if links:
            service["resources"] = list(links)
        return service

    # -- pieces -------------------------------------------------------------------------------

    def web_port(self, web: ProcessType) -> int:
        if self.options.port is not None:
            if not 1 <= self.options.port <= 65535:
                raise input_error("--port", f"{self.options.port} is not a TCP port")
            return self.options.port
        found, how = web_port(web.command)
        if found is not None and 1 <= found <= 65535:
            self.add(
                "port-from-command",
                "info" if how and how.startswith("$") else "guess",
                "web",
                f"port {found}, from {how} in the web command",
                "Pass --port to choose another one.",
            )
            return found
        if web.command is None or not PORT_REF.search(web.command):
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
                raise input_error(
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


def _memory(services: dict[str, dict[str, Any]], web: str | None) -> int:
    """The web service's scale.memory (else the first service's), else Convox's 512 MB."""
    for name in [web, *services]:
        if name is not None and name in services:
            memory = services[name].get("scale", {}).get("memory")
            if isinstance(memory, int):
                return memory
    return 512


def translate(
    tree: SourceTree, facts: LiveFacts | None, options: TranslateOptions | None = None
) -> Translation:
    """Translate sources (+ live facts) into a manifest and findings.

    Raises :class:`cutover.errors.InvalidInput` when the inputs are invalid or contradict each
    other.
    """
    return _Translator(tree, facts, options or TranslateOptions()).run()
