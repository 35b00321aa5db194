"""The command line: parse like the real CLI, refuse what it refuses, then run a handler.

Flags, argument counts and the refusal text come from :mod:`cutover.adapters.convox_cli` (the
facts file read from the convox source), so the stand-in refuses exactly what the real CLI
refuses (``ERROR: unknown flag: -a``, exit 1) before it reads or changes the rack state.
Unknown commands print the global help and exit 0 like the real CLI (stdcli ``engine.go``);
real commands this stand-in does not emulate fail loudly instead, so no caller believes they
worked.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from cutover.adapters import convox_cli
from cutover.sandbox.convox_fake import (
    cmd_apps,
    cmd_builds,
    cmd_certs,
    cmd_resources,
    cmd_run,
    cmd_services,
    faults,
)
from cutover.sandbox.convox_fake.context import Ctx
from cutover.sandbox.convox_fake.output import CliError, ExitCode, Out
from cutover.sandbox.convox_fake.store import VERSION, Store, settings_dir

Handler = Callable[[Ctx], None]
SCALE_FLAGS = ("count", "cpu", "memory", "gpu", "gpu-vendor", "min", "max")

# The commands this stand-in emulates: words -> (handler, description as in `convox help`).
HANDLERS: dict[str, tuple[Handler, str]] = {
    "apps": (cmd_apps.cmd_apps, "list apps"),
    "apps create": (cmd_apps.cmd_apps_create, "create an app"),
    "apps info": (cmd_apps.cmd_apps_info, "get information about an app"),
    "build": (cmd_builds.cmd_build, "create a build"),
    "builds": (cmd_builds.cmd_builds, "list builds for an app"),
    "builds info": (cmd_builds.cmd_builds_info, "get information about a build"),
    "certs": (cmd_certs.cmd_certs, "list certificates"),
    "certs generate": (cmd_certs.cmd_certs_generate, "generate a certificate"),
    "certs import": (cmd_certs.cmd_certs_import, "import a certificate"),
    "deploy": (cmd_builds.cmd_deploy, "create and promote a build"),
    "env": (cmd_apps.cmd_env, "list env vars"),
    "env get": (cmd_apps.cmd_env_get, "get an env var"),
    "env set": (cmd_apps.cmd_env_set, "set env var(s)"),
    "env unset": (cmd_apps.cmd_env_unset, "unset env var(s)"),
    "letsencrypt dns route53 add": (
        cmd_certs.cmd_route53_add,
        "configure letsencrypt dns route53 solver",
    ),
    "letsencrypt dns route53 list": (
        cmd_certs.cmd_route53_list,
        "list letsencrypt dns route53 solver",
    ),
    "ps": (cmd_services.cmd_ps, "list app processes"),
    "ps stop": (cmd_run.cmd_ps_stop, "stop a process"),
    "rack": (cmd_apps.cmd_rack, "get information about the rack"),
    "racks": (cmd_apps.cmd_racks, "list available racks"),
    "releases": (cmd_builds.cmd_releases, "list releases for an app"),
    "releases info": (cmd_builds.cmd_releases_info, "get information about a release"),
    "releases manifest": (cmd_builds.cmd_releases_manifest, "get manifest for a release"),
    "releases promote": (cmd_builds.cmd_releases_promote, "promote a release"),
    "resources": (cmd_resources.cmd_resources, "list resources"),
    "resources info": (cmd_resources.cmd_resources_info, "get information about a resource"),
    "resources proxy": (cmd_resources.cmd_resources_proxy, "proxy a local port to a resource"),
    "resources url": (cmd_resources.cmd_resources_url, "get url for a resource"),
    "run": (cmd_run.cmd_run, "execute a command in a new process"),
    "scale": (cmd_services.cmd_scale, "scale a service"),
    "services": (cmd_services.cmd_services, "list services for an app"),
    "switch": (cmd_apps.cmd_switch, "switch current rack"),
    "version": (cmd_apps.cmd_version, "display version information"),
}


def global_help() -> str:
    """stdcli's command list (for the commands emulated here), sorted, 2-space gutter."""
    names = sorted(f"convox {words}" for words in HANDLERS)
    width = max(7, *(len(n) for n in names))
    return "".join(f"{n:<{width}}  {HANDLERS[n[7:]][1]}\n" for n in names)


def command_help(spec: convox_cli.CommandSpec) -> str:
    """stdcli's per-command usage (``--help``): the registered flags, ``--wait`` hidden."""
    flags = sorted((f for f in spec.flags if f.name not in ("wait", "help")), key=lambda f: f.name)
    lines = [
        f"USAGE\n  convox {spec.name} {spec.usage}\n\n",
        f"DESCRIPTION\n  {HANDLERS.get(spec.name, (None, ''))[1]}\n\n",
        "OPTIONS\n",
    ]
    longs = [f"--{f.name}" + ("" if f.kind == "bool" else f" <{f.name}>") for f in flags]
    shorts = [f"-{f.short}" if f.short else "" for f in flags]
    lw = max([0, *map(len, longs)])
    sw = max([0, *map(len, shorts)])
    lines += [f"  {lf:<{lw}}  {sf:<{sw}}\n" for lf, sf in zip(longs, shorts, strict=True)]
    return "".join(lines)


def _validate_scale(parsed: convox_cli.Parsed) -> None:
    """``scale``'s own argument check (pkg/cli/scale.go): a service is needed to change it."""
    changing = any(name in parsed.flags for name in SCALE_FLAGS)
    if changing and not parsed.args:
        raise CliError("service name required")
    if changing and len(parsed.args) != 1:
        raise CliError("1 arg required")
    if len(parsed.args) > 1:
        raise CliError("no more than 1 arg expected")


def run_command(argv: Sequence[str], out: Out, environ: Mapping[str, str], cwd: Path) -> int:
    if argv and argv[0] in ("-v", "--version"):
        out.write(f"{VERSION}\n")
        return 0
    try:
        parsed = convox_cli.parse(argv)
    except convox_cli.HelpRequested:
        spec, _ = convox_cli.match(argv)
        out.write(command_help(spec) if spec is not None else global_help())
        return 0
    except convox_cli.UsageError as exc:
        raise CliError(str(exc).removeprefix("ERROR: ")) from None
    if parsed.command is None:
        out.write(global_help())
        return 0
    words = parsed.command.name
    if words not in HANDLERS:
        raise CliError(f'the convox stand-in does not emulate "convox {words}"')
    if words == "scale":
        _validate_scale(parsed)
    handler = HANDLERS[words][0]
    ctx = Ctx(words, parsed.args, parsed.flags, out, environ, cwd, Store(settings_dir(environ)))
    ctx.fault = faults.take(ctx.store, words)
    if ctx.fault is not None:
        code = faults.fire(ctx.fault, out)
        if code is not None:
            return code
    interval = ctx.number("watch")
    while True:
        handler(ctx)
        if not interval or interval <= 0:
            return 0
        time.sleep(interval)


def main(argv: list[str] | None = None) -> int:
    """Run one ``convox`` command; return its exit code."""
    args = sys.argv[1:] if argv is None else list(argv)
    out = Out(sys.stdout, sys.stderr)
    try:
        return run_command(args, out, os.environ, Path.cwd())
    except CliError as exc:
        out.error(str(exc))
        return 1
    except ExitCode as exc:
        return exc.code
    except BrokenPipeError:
        return 1
