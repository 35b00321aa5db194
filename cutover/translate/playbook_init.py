"""The text of ``cutover.yml`` written by ``cutover init``: a commented playbook pre-filled from
the translation and the live facts, with every guess marked ``REVIEW``.

Shape (the playbook schema in ``cutover/playbook.py`` is authoritative)::

    version: 1
    heroku: {app}
    convox: {rack, app, manifest, source}
    env: {exclude: [...], override: {}}
    database: {resource, heroku_attachment}        # when a postgres resource exists
    smoke: {service, checks: [{path, status}]}     # when there is a web service
    dns: {provider, zone, record, ttl}             # when Heroku has a custom domain
    window: {drain_seconds, scale_down: [...]}
    release: {command, service}                    # only with --release-as one-off
    timers: [{name, schedule, command, service}]   # Scheduler jobs, if any
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cutover.translate.facts import DomainFact, LiveFacts
from cutover.translate.manifest import render_block
from cutover.translate.mapping import Translation

__all__ = ["PlaybookDraft", "build_playbook", "guess_zone"]

DEFAULT_TTL = 60
DEFAULT_DRAIN_SECONDS = 30


@dataclass
class PlaybookDraft:
    text: str
    data: dict[str, Any]  # what the text parses to (without comments)
    review: list[str] = field(default_factory=list)  # what the operator should check


def guess_zone(hostname: str) -> str:
    """``www.example.com`` -> ``example.com``; an apex name is its own zone (a guess: public
    suffixes such as ``co.uk`` are not known here)."""
    labels = hostname.rstrip(".").split(".")
    return ".".join(labels[1:]) if len(labels) > 2 else ".".join(labels)


def _pick_domain(domains: list[DomainFact]) -> tuple[DomainFact | None, list[str]]:
    usable = [d for d in domains if not d.hostname.startswith("*.")]
    preferred = sorted(usable, key=lambda d: (not d.hostname.startswith("www."), d.hostname))
    chosen = preferred[0] if preferred else None
    others = [d.hostname for d in domains if chosen is None or d.hostname != chosen.hostname]
    return chosen, others


_Section = tuple[list[str], dict[str, Any]]  # comment lines, body


def _convox_section(
    convox_app: str, convox_rack: str | None, manifest: str, source: str, review: list[str]
) -> _Section:
    convox: dict[str, Any] = {}
    notes = ["The Convox side. source is relative to this file, manifest to source."]
    if convox_rack:
        convox["rack"] = convox_rack
        notes.append(f"rack: the current rack of `convox switch` ({convox_rack}).")
    else:
        notes.append("REVIEW: no current rack (`convox switch RACK`); add `rack: NAME`.")
        review.append("convox.rack: no current rack was found; add the rack name.")
    convox.update({"app": convox_app, "manifest": manifest, "source": source})
    return notes, {"convox": convox}


def _database_section(translation: Translation, facts: LiveFacts, review: list[str]) -> _Section:
    if not translation.database_resource:
        return ["No Heroku Postgres add-on: no database copy step."], {"database": None}
    notes = ["The Heroku Postgres database copied into the Convox resource during the window."]
    if len([a for a in facts.addons if a.service == "heroku-postgresql"]) > 1:
        notes.append(
            "REVIEW: the app has several Heroku Postgres add-ons; only this one is copied."
        )
        review.append("database: several Heroku Postgres add-ons; only one is copied.")
    body = {
        "resource": translation.database_resource,
        "heroku_attachment": translation.database_attachment or "DATABASE",
    }
    return notes, {"database": body}


def _smoke_section(translation: Translation, review: list[str]) -> _Section:
    if not translation.web_service:
        return ["No web service: no HTTP smoke checks."], {"smoke": None}
    path = translation.health_path or "/"
    if path != "/":
        review.append(f"smoke.checks: the app must answer 200 on {path}.")
    return (
        ["Checked on the Convox app before DNS moves; add paths that must answer."],
        {"smoke": {"service": translation.web_service, "checks": [{"path": path, "status": 200}]}},
    )


def _dns_section(facts: LiveFacts, review: list[str]) -> _Section:
    domain, others = _pick_domain(facts.custom_domains)
    if domain is None:
        return ["No custom domain on Heroku: no DNS step."], {}
    zone = guess_zone(domain.hostname)
    target = domain.cname or "its DNS target"
    notes = [
        f"The record moved from Heroku ({target}) to the rack router.",
        "REVIEW provider: manual pauses for you to change the record; rfc2136 lets cutover",
        "change it (it then needs the server and TSIG key settings).",
        f"REVIEW zone: guessed from the record ({zone}).",
    ]
    review.append(f"dns.zone: guessed as {zone}; dns.provider: manual.")
    if zone == domain.hostname:
        notes.append("REVIEW: an apex record cannot be a CNAME; use ALIAS/ANAME or flattening.")
        review.append(f"dns.record: {domain.hostname} is an apex name (no CNAME possible).")
    if others:
        notes.append("Also on Heroku (move them yourself): " + ", ".join(others) + ".")
        review.append("dns: other custom domains are not moved: " + ", ".join(others) + ".")
    body = {"provider": "manual", "zone": zone, "record": domain.hostname, "ttl": DEFAULT_TTL}
    return notes, {"dns": body}


def _release_and_timers(translation: Translation) -> list[_Section]:
    sections: list[_Section] = []
    if translation.release_command:
        release = {
            "command": translation.release_command,
            "service": translation.release_service or translation.web_service,
        }
        notes = [
            "Run once per release, before promote: convox build --id, then",
            "convox run SERVICE --release R -- COMMAND, then convox releases promote R.",
        ]
        sections.append((notes, {"release": release}))
    if translation.timers:
        timers = [
            {"name": t.name, "schedule": t.schedule, "command": t.command, "service": t.service}
            for t in translation.timers
        ]
        notes = [
            "Heroku Scheduler jobs as Convox timers (cron, UTC). They are also in",
            "convox.yml; the Heroku jobs are to be disabled at cutover.",
        ]
        sections.append((notes, {"timers": timers}))
    return sections


def build_playbook(
    translation: Translation,
    facts: LiveFacts,
    *,
    heroku_app: str,
    convox_app: str,
    convox_rack: str | None,
    manifest: str = "convox.yml",
    source: str = ".",
) -> PlaybookDraft:
    """Compose the playbook text (sections separated by blank lines, comments above them)."""
    review: list[str] = []
    env_notes = [
        "Config vars are copied from Heroku to Convox, except those listed here:",
        "add-on connection variables (a copied DATABASE_URL would make Convox skip its",
        "own database and keep using Heroku's), HEROKU_* metadata, and PORT.",
        "override: NAME: value pairs to set on Convox instead of Heroku's value.",
    ]
    window_notes = [
        "The cutover window: Heroku process types scaled to zero (after draining)",
        "so nothing else writes to the Heroku database.",
    ]
    window = {"drain_seconds": DEFAULT_DRAIN_SECONDS, "scale_down": list(translation.scale_down)}
    sections: list[_Section] = [
        ([], {"version": 1}),
        ([], {"heroku": {"app": heroku_app}}),
        _convox_section(convox_app, convox_rack, manifest, source, review),
        (env_notes, {"env": {"exclude": list(translation.excluded_env), "override": {}}}),
        _database_section(translation, facts, review),
        _smoke_section(translation, review),
        _dns_section(facts, review),
        (window_notes, {"window": window}),
        *_release_and_timers(translation),
    ]
    lines = [
        f"# cutover playbook: Heroku app {heroku_app} -> Convox app {convox_app}.",
        "# Written by `cutover init` from the app's sources and live facts. Check every line",
        "# marked REVIEW and the findings it printed, then run `cutover plan`.",
    ]
    data: dict[str, Any] = {}
    for notes, body in sections:
        lines.append("")
        lines.extend(f"# {note}" for note in notes)
        if body:
            lines.extend(render_block(body, 0, "playbook"))
            data.update(body)
    return PlaybookDraft(text="\n".join(lines) + "\n", data=data, review=review)
