"""add-domain: the production name on the web service (and its certificate, tls.mode import or
dns01), deployed with the held services still held."""

from __future__ import annotations

import re
import stat
from pathlib import Path
from typing import Any

import yaml

from cutover.errors import CutoverError
from cutover.fsutil import atomic_write
from cutover.playbook_dns import TlsSection
from cutover.steps.base import Context, Step, cmd
from cutover.steps.holding import staged_name
from cutover.steps.manifests import (
    held_services,
    load_manifest,
    manifest_path,
    stage_held,
    staging_line,
    web_service,
)
from cutover.steps.ship import (
    ShipOutputs,
    ShipProgress,
    build_marker,
    find_marked_release,
    hold_services,
    ship,
    ship_commands,
)


class AddDomainProgress(ShipProgress):
    manifest_edited: bool | None = None  # saved before the deploy
    certificate: str | None = None  # tls.mode import/dns01: the id obtained, saved at once
    certificate_source: str | None = None  # what it was obtained from (steps/tls.py)


class AddDomainOutputs(ShipOutputs):
    """``manifest_edited``: this step added the domain to convox.yml (rollback may undo it);
    ``certificate``: the certificate the web service names (tls.mode import or dns01)."""

    step_id = "add-domain"
    manifest_edited: bool
    certificate: str | None = None
    certificate_source: str | None = None


class AddDomain(Step):
    id = "add-domain"
    title = "Add the production domain and redeploy"
    outputs = AddDomainOutputs
    fields = (
        "convox.app",
        "convox.rack",
        "convox.manifest",
        "convox.source",
        "release",
        "dns.record",
        "smoke.service",
        *TlsSection.OBTAIN_FIELDS,
    )

    def applies(self, model: Any) -> str | None:
        return None if model.dns else "no dns section in the playbook"

    def describe(self, ctx: Context) -> list[str]:
        from cutover.steps.tls import obtain_describe  # noqa: PLC0415 - steps.tls imports this module

        assert ctx.model.dns
        return [
            *obtain_describe(ctx),
            f"edit {manifest_path(ctx)}: services.{web_service(ctx)}.domain += "
            f"{ctx.model.dns.record}  (only if missing)",
            staging_line(ctx),
            *ship_commands(ctx, self.id, staged_name(ctx.model.convox.manifest)),
            cmd(ctx.convox.argv("scale")) + "   (read back: every held service wants 0)",
        ]

    def check(self, ctx: Context) -> AddDomainOutputs | None:
        assert ctx.model.dns
        active = ctx.convox.active_release()
        if active:
            try:
                deployed = yaml.safe_load(ctx.convox.release_manifest(active)) or {}
            except yaml.YAMLError:
                deployed = {}
            edited = bool(self.saved(ctx, AddDomainProgress).manifest_edited)
            web = web_service(ctx)
            if ctx.model.dns.record in service_domains(deployed, web):
                from cutover.steps.tls import deployed_certificate  # noqa: PLC0415 - a cycle

                source = self.remembered(ctx, AddDomainProgress).certificate_source
                certificate = deployed_certificate(ctx, deployed, web, source)
                if ctx.model.tls.mode == "http01" or certificate:
                    return AddDomainOutputs(
                        release=active,
                        manifest_edited=edited,
                        certificate=certificate,
                        certificate_source=source,
                    )
        return None

    def recover(self, ctx: Context) -> AddDomainOutputs | None:
        """The build this step started before an interruption: wait for it, finish it."""
        marker = build_marker(ctx, self.id)
        found = find_marked_release(ctx, self.id, marker) if marker else None
        if found is None:
            return None
        edited = bool(self.saved(ctx, AddDomainProgress).manifest_edited)
        hold_services(ctx, held_services(ctx))
        return AddDomainOutputs(release=found.release, marker=found.marker, manifest_edited=edited)

    def apply(self, ctx: Context) -> AddDomainOutputs:
        from cutover.steps.tls import (  # noqa: PLC0415 - steps.tls imports this module
            obtain_certificate,
            set_certificate_in_manifest,
        )

        assert ctx.model.dns
        path = manifest_path(ctx)
        progress = self.saved(ctx, AddDomainProgress)
        saved = bool(progress.manifest_edited)
        remembered = self.remembered(ctx, AddDomainProgress)
        certificate, source = obtain_certificate(
            ctx, remembered.certificate, remembered.certificate_source
        )
        if certificate:
            ctx.save(AddDomainProgress(certificate=certificate, certificate_source=source))
        edited = add_domain_to_manifest(path, web_service(ctx), ctx.model.dns.record)
        if certificate and set_certificate_in_manifest(path, web_service(ctx), certificate):
            ctx.note(f"services.{web_service(ctx)} in {path} now names certificate {certificate}")
            edited = True
        # Saved before the deploy: a crash after the edit still says this step made it.
        edited = edited or saved
        ctx.save(AddDomainProgress(manifest_edited=edited))
        if edited:
            ctx.note(
                f"added domain {ctx.model.dns.record} to services.{web_service(ctx)} "
                f"in {path} (commit this change)"
            )
        shipped = ship(ctx, self.id, stage_held(ctx))
        hold_services(ctx, held_services(ctx))
        return AddDomainOutputs(
            release=shipped.release,
            marker=shipped.marker,
            manifest_edited=edited,
            certificate=certificate,
            certificate_source=source,
        )


def service_domains(manifest: dict[str, Any], service: str) -> list[str]:
    svc = (manifest.get("services") or {}).get(service) or {}
    domain = svc.get("domain") if isinstance(svc, dict) else None
    if isinstance(domain, list):
        return [str(d).strip() for d in domain]
    if isinstance(domain, str):
        return [d.strip() for d in domain.split(",") if d.strip()]
    return []


def add_domain_to_manifest(path: Path, service: str, domain: str) -> bool:
    """Add ``domain`` to a service in convox.yml, keeping comments and layout. False if there."""
    manifest = load_manifest(path)
    if domain in service_domains(manifest, service):
        return False
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    in_services = False
    for i, line in enumerate(lines):
        if re.match(r"^services:\s*(#.*)?$", line):
            in_services = True
            continue
        if in_services and re.match(r"^\S", line):
            break
        match = re.match(rf"^(\s+){re.escape(service)}:\s*(#.*)?$", line)
        if in_services and match:
            indent = match.group(1)
            child = _child_indent(lines[i + 1 :], indent) or indent * 2
            existing = service_domains(manifest, service)
            replaced = False
            for j in range(i + 1, len(lines)):
                depth = len(lines[j]) - len(lines[j].lstrip())
                if lines[j].strip() and depth <= len(indent):
                    break  # the next service or section
                if lines[j].startswith(f"{child}domain:"):
                    lines[j] = f"{child}domain: {', '.join([*existing, domain])}\n"
                    replaced = True
                    break
            if not replaced:
                lines.insert(i + 1, f"{child}domain: {domain}\n")
            text = "".join(lines)
            check = yaml.safe_load(text)
            if domain not in service_domains(check, service):
                raise CutoverError(
                    f"could not add the domain to {path}; add "
                    f"`domain: {domain}` under services.{service} by hand"
                )
            # Atomic like every file cutover writes, keeping the file's mode.
            atomic_write(path, text, mode=stat.S_IMODE(path.stat().st_mode))
            return True
    raise CutoverError(f"{path}: service {service!r} not found under services:")


def _child_indent(rest: list[str], parent: str) -> str | None:
    for line in rest:
        if line.strip() and not line.lstrip().startswith("#"):
            indent = line[: len(line) - len(line.lstrip())]
            return indent if len(indent) > len(parent) else None
    return None
