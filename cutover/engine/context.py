"""Build the step context (adapters and all) from a playbook, a state and an optional sandbox.

Start-up rule: the adapters (and their libraries: sh, httpx, dnspython) are imported inside the
functions that build them, so that importing the engine (as `cutover status` does) stays light.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cutover.errors import InvalidInput

if TYPE_CHECKING:
    from cutover.adapters.dns import DnsProvider
    from cutover.playbook import LoadedPlaybook
    from cutover.runner import AuditSink, Runner
    from cutover.secrets import SecretMasker
    from cutover.state import RunState
    from cutover.steps.base import Context, Reporter

TSIG_SECRET_VAR = "CUTOVER_DNS_TSIG_SECRET"  # noqa: S105 - the variable's name, not a secret
SANDBOX_ENV_FILE = "env.json"


@dataclass
class SandboxEnv:
    """What ``cutover sandbox up`` writes to <sandbox>/env.json (0600)."""

    env: dict[str, str] = field(default_factory=dict)
    path_prefix: list[str] = field(default_factory=list)
    resolve: dict[str, str] = field(default_factory=dict)
    ca_file: str | None = None
    dns: dict[str, Any] = field(default_factory=dict)


def load_sandbox(folder: Path) -> SandboxEnv:
    path = folder / SANDBOX_ENV_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInput(
            f"{path}: no sandbox there (the playbook's `sandbox:` points at {folder})",
            resolution="Start it with `cutover sandbox up` (or `make demo`).",
        ) from None
    except (OSError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"{path}: unreadable sandbox environment: {exc}") from None
    return SandboxEnv(
        env={str(k): str(v) for k, v in (data.get("env") or {}).items()},
        path_prefix=[str(p) for p in data.get("path_prefix") or []],
        resolve={str(k): str(v) for k, v in (data.get("resolve") or {}).items()},
        ca_file=data.get("ca_file"),
        dns=dict(data.get("dns") or {}),
    )


def make_runner(
    playbook: LoadedPlaybook,
    masker: SecretMasker,
    audit: AuditSink | None,
    *,
    sandbox_optional: bool = False,
) -> tuple[Runner, SandboxEnv | None]:
    from cutover.runner import Runner  # noqa: PLC0415 - start-up: see the module's note

    sandbox = None
    if playbook.model.sandbox:
        try:
            sandbox = load_sandbox(playbook.resolve(playbook.model.sandbox))
        except InvalidInput:
            if not sandbox_optional:
                raise
    runner = Runner(masker, audit, withheld=own_secret_vars(playbook))
    if sandbox is not None:
        runner.base_env.update(sandbox.env)
        runner.path_prefix = list(sandbox.path_prefix)
        masker.add(sandbox.env.get("HEROKU_API_KEY"))
    return runner, sandbox


def own_secret_vars(playbook: LoadedPlaybook) -> set[str]:
    """The variables holding a secret cutover reads itself and no child needs (the runner
    withholds them from every child): the webhook URL's (notify.py posts it in-process), the
    Cloudflare token's and the TSIG secret's (DNS updates are made in-process too), and the TLS
    key's (steps/tls.py hands ``convox certs import`` a 0600 file of it, never the variable)."""
    from cutover.playbook_dns import CloudflareSection  # noqa: PLC0415 - start-up: see the note

    names = {TSIG_SECRET_VAR}
    model = playbook.model
    if model.notify is not None:
        names.add(model.notify.webhook_env)
    if model.dns is not None and model.dns.provider == "cloudflare":
        names.add((model.dns.cloudflare or CloudflareSection()).token_env)
    if model.tls.key_env:
        names.add(model.tls.key_env)
    return names


def make_dns(
    playbook: LoadedPlaybook, masker: SecretMasker, sandbox: SandboxEnv | None
) -> DnsProvider | None:
    dns = playbook.model.dns
    if dns is None:
        return None
    from cutover.adapters.dns import Rfc2136Provider  # noqa: PLC0415 - see the module's note
    from cutover.adapters.dns_manual import ManualDnsProvider  # noqa: PLC0415

    if dns.provider == "manual":
        return ManualDnsProvider(dns.zone)
    if dns.provider in ("route53", "cloudflare"):
        return _cloud_dns(playbook, masker)
    box = sandbox.dns if sandbox else {}
    server = dns.server or (f"{box['server']}:{box['port']}" if box.get("server") else None)
    key_name = dns.key_name or box.get("key_name")
    secret = os.environ.get(TSIG_SECRET_VAR) or box.get("key_secret")
    if not server or not key_name or not secret:
        return None
    masker.add(secret)
    host, port = split_server(server)
    resolvers = box.get("resolvers")
    return Rfc2136Provider(
        server=host,
        port=port,
        zone=dns.zone,
        key_name=key_name,
        key_secret=secret,
        sandbox_nameservers=[str(s) for s in box.get("nameservers") or []],
        sandbox_resolvers=[str(s) for s in resolvers] if resolvers is not None else None,
    )


def _cloud_dns(playbook: LoadedPlaybook, masker: SecretMasker) -> DnsProvider:
    """route53: boto3 finds the credentials (environment, profile, role); cloudflare: the
    token from the variable dns.cloudflare.token_env names. Either way they reach the masker."""
    dns = playbook.model.dns
    assert dns is not None
    if dns.provider == "route53":
        from cutover.adapters.dns_route53 import Route53Provider  # noqa: PLC0415 - start-up

        masker.add_all(os.environ.get(v) for v in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"))
        r53 = dns.route53
        return Route53Provider(
            dns.zone,
            zone_id=r53.zone_id if r53 else None,
            region=r53.region if r53 else None,
            rack=playbook.model.convox.rack,
            timeout=dns.propagation_timeout,
        )
    from cutover.adapters.dns_cloudflare import CloudflareProvider, api_url  # noqa: PLC0415
    from cutover.playbook_dns import CloudflareSection  # noqa: PLC0415

    cf = dns.cloudflare or CloudflareSection()
    token = os.environ.get(cf.token_env)
    masker.add(token)
    return CloudflareProvider(
        dns.zone,
        token,
        token_env=cf.token_env,
        zone_id=cf.zone_id,
        proxied=cf.proxied,
        base_url=api_url(dict(os.environ)),
    )


def split_server(server: str) -> tuple[str, int]:
    """``host``, ``host:port`` or ``[v6]:port`` (validated by the playbook) -> (host, port)."""
    if server.startswith("["):
        host, _, rest = server[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else 53
    host, _, port = server.partition(":")
    return host, int(port) if port else 53


def build_context(
    playbook: LoadedPlaybook,
    state: RunState,
    *,
    masker: SecretMasker,
    audit: AuditSink | None,
    reporter: Reporter,
    sandbox_optional: bool = False,
) -> Context:
    # Start-up: see the module's note.
    from cutover.adapters.convox import ConvoxAdapter  # noqa: PLC0415
    from cutover.adapters.heroku import HerokuAdapter  # noqa: PLC0415
    from cutover.adapters.http import HttpClient  # noqa: PLC0415
    from cutover.adapters.postgres import PostgresAdapter  # noqa: PLC0415
    from cutover.steps.base import Context  # noqa: PLC0415

    runner, sandbox = make_runner(playbook, masker, audit, sandbox_optional=sandbox_optional)
    work_dir = playbook.state_dir / "work"
    model = playbook.model
    _notify(playbook, masker, audit, reporter)
    return Context(
        playbook=playbook,
        state=state,
        runner=runner,
        masker=masker,
        heroku=HerokuAdapter(runner, masker, model.heroku.app, work_dir),
        # Without convox.rack, preflight pins the rack that was current when the run began.
        convox=ConvoxAdapter(
            runner,
            masker,
            model.convox.app,
            model.convox.rack or state.outputs("preflight").get("rack"),
        ),
        postgres=PostgresAdapter(runner, masker),
        http=HttpClient(
            masker,
            resolve=sandbox.resolve if sandbox else None,
            ca_file=sandbox.ca_file if sandbox else None,
        ),
        dns=make_dns(playbook, masker, sandbox),
        reporter=reporter,
        work_dir=work_dir,
    )


def _notify(
    playbook: LoadedPlaybook, masker: SecretMasker, audit: AuditSink | None, reporter: Reporter
) -> None:
    """A run's audit log (never a plan's) gets the webhook notifier the playbook asks for:
    here, so the run and the rollback, which both build their context, notify alike."""
    from cutover.engine.audit import AuditLog  # noqa: PLC0415 - see the module's note

    if playbook.model.notify is not None and isinstance(audit, AuditLog):
        from cutover.notify import attach  # noqa: PLC0415

        attach(audit, playbook, masker, reporter)
