"""Heroku Scheduler jobs -> Convox timers: schedules (cron or Scheduler's words, UTC), the
``--timer`` option, the playbook's ``timers:`` list, and the manifest's ``timers`` section."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, Final

from cutover.translate.model import (
    FindingLog,
    TimerSpec,
    TranslateOptions,
    convox_name,
    input_error,
)
from cutover.translate.sources import ProcessType

__all__ = ["parse_schedule", "parse_timer_option", "plan_timers", "timer_specs_from_playbook"]

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
        raise input_error(
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
        raise input_error(
            "--timer", f'expected NAME="CRON" followed by the command, got "{assignment}"'
        )
    if not command.strip():
        raise input_error("--timer", "the command is empty", field=name.strip())
    return TimerSpec(name.strip(), schedule.strip(), command.strip(), service, source="--timer")


def timer_specs_from_playbook(items: Sequence[Any], source: str = "cutover.yml") -> list[TimerSpec]:
    """Read the playbook's ``timers:`` list (``{name, schedule, command, service?}`` each)."""
    specs: list[TimerSpec] = []
    for index, item in enumerate(items):
        at = f"timers[{index}]"
        if not isinstance(item, dict):
            raise input_error(source, "expected a mapping", field=at)
        values: dict[str, str | None] = {}
        for key in ("name", "schedule", "command", "service"):
            value = item.get(key)
            if value is not None and not isinstance(value, str):
                raise input_error(source, "expected a string", field=f"{at}.{key}")
            if value is None and key != "service":
                raise input_error(source, f'missing "{key}"', field=at)
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


Convert = Callable[[str, str, str, "int | None"], str]


def plan_timers(
    options: TranslateOptions,
    services: dict[str, dict[str, Any]],
    names: dict[str, str],
    links: list[str],
    processes: list[ProcessType],
    log: FindingLog,
    convert: Convert,
) -> tuple[dict[str, dict[str, Any]], list[TimerSpec]]:
    """The manifest's timers (adding a ``jobs`` service when asked) and the resolved specs.
    ``convert(command, subject, where, line)`` turns a Heroku command into a manifest one."""
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
        log.add(
            "jobs-service",
            "change",
            jobs,
            f'a "{jobs}" service at count 0 runs the timers (the guide\'s one-off-dyno pattern)',
            "It runs no containers of its own; each timer starts one from its image.",
        )
    reverse = {v: v for v in services}
    for heroku_name, service_name in names.items():
        reverse[heroku_name] = service_name
    for spec in options.timers:
        name = convox_name(spec.name)
        where = spec.source
        if name in out:
            raise input_error(where, "duplicate timer", field=f"timers.{spec.name}")
        if name != spec.name:
            log.add(
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
                raise input_error(
                    where,
                    f'no service "{spec.service}" (services: {", ".join(services)})',
                    field=f"timers.{spec.name}.service",
                )
            target = reverse[spec.service]
        else:
            target = _timer_target(services, jobs, names)
            log.add(
                "timer-service-guessed",
                "guess",
                f"timer {name}",
                f'runs in the "{target}" service',
                "A timer starts a new container of that service (image, env, resources) "
                "to run its command; name another with the timer's service.",
            )
        command = convert(spec.command, f"timer {name}", where, None)
        out[name] = {"schedule": schedule, "command": command, "service": target}
        specs.append(TimerSpec(name, schedule, spec.command, target, source=where))
        log.add(
            "timer-mapped",
            "change",
            f"timer {name}",
            f'Scheduler job became a timer "{schedule}" (UTC) on {target}'
            + (f"; schedule from {note}" if note else ""),
            "Disable the Heroku Scheduler job at cutover so it does not run twice.",
        )
    return out, specs


def _timer_target(
    services: dict[str, dict[str, Any]], jobs: str | None, names: dict[str, str]
) -> str:
    if jobs is not None:
        return jobs
    if "worker" in services:
        return "worker"
    web = names.get("web")
    others = [s for s in services if s != web]
    return others[0] if others else next(iter(services))
