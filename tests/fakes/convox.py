"""A fake ``convox`` v3 CLI: the commands cutover's Convox adapter runs, with the real formats
(shared/reference/convox-cli.md): stdcli tables and Info blocks, ``X... OK`` progress, ``--id``
printing one release id without a newline (everything else on stderr), ``ERROR: <msg>`` on
stderr with exit 1, and ``resources proxy`` that really listens and never exits by itself.
Command lines are parsed through cutover.adapters.convox_cli (the flags and argument counts
read from the convox source), so it refuses exactly what the real CLI refuses. Builds and
promotes run "on the rack" (they finish when the CLI is killed), ``run`` starts a ``sleep N``
pod, and the postgres resource appears empty at the first promote. State and output helpers:
:mod:`fakes.convox_store`.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from fakes import convox_certs
from fakes.convox_store import (
    Fail,
    Streams,
    active_manifest,
    ago,
    app_name,
    app_status,
    build_of,
    build_ready,
    env_dict,
    get_app,
    info,
    latest_release,
    load_yaml,
    new_release,
    table,
    visible_releases,
)
from fakes.world import (
    exit_when_orphaned,
    fake_id,
    next_number,
    note_effect,
    read_world,
    register_process,
    update_world,
)

CLIENT_VERSION = "3.21.3"
# The commands this fake implements; their flags and argument counts are the real CLI's
# (cutover/adapters/convox_cli.json, read from the convox source).
COMMANDS = [
    ("apps", "create"),
    ("apps", "info"),
    ("apps",),
    ("env", "set"),
    ("env",),
    ("deploy",),
    ("build",),
    ("run",),
    ("builds",),
    ("releases", "manifest"),
    ("releases", "promote"),
    ("releases",),
    ("services",),
    ("resources", "url"),
    ("resources", "proxy"),
    ("rack",),
    ("version",),
    ("switch",),
    ("ps",),
    ("scale",),
    ("certs", "import"),
    ("certs", "generate"),
    ("certs",),
    ("letsencrypt", "dns", "route53", "add"),
    ("letsencrypt", "dns", "route53", "list"),
]


def reads_stdin(args: list[str]) -> bool:
    return args[:2] == ["env", "set"]


def command_of(args: list[str]) -> tuple[str, ...]:
    for words in COMMANDS:
        if tuple(args[: len(words)]) == words:
            return words
    return ()


def failure_prefix(args: list[str]) -> str:
    """What the command prints before failing (Startf, no newline; on stderr with --id).

    A failing deploy fails in its build, after log lines; one echoes a build argument taken from
    the app's env, as Docker build logs do: cutover must mask it in what it shows.
    """
    words = command_of(args)
    try:
        positional, opts = _parse(args[len(words) :], words)
    except Fail:
        return ""  # refused before it contacts the rack: nothing printed before the error
    if words in (("deploy",), ("build",)):
        app = read_world()["convox"]["apps"].get(app_name([], opts)) or {}
        latest = latest_release(app) if app else None
        secret = env_dict(latest["env"]).get("SECRET_KEY_BASE", "") if latest else ""
        return (
            "Packaging source... OK\nUploading source... OK\nStarting build... OK\n"
            f"Building: {positional[0] if positional else '.'}\n"
            f"Step 1/3 : ARG SECRET_KEY_BASE={secret}\nStep 2/3 : RUN bundle install\n"
        )
    if words == ("apps", "create"):
        return f"Creating {positional[0] if positional else opts.get('app', '')}... "
    if words == ("releases", "promote"):
        return f"Promoting {positional[0] if positional else ''}... "
    return ""


def _parse(args: list[str], words: tuple[str, ...]) -> tuple[list[str], dict[str, Any]]:
    """Positional arguments and flag values (long names) as the real CLI parses them: through
    cutover.adapters.convox_cli, the facts read from the convox source. Raises Fail with the real
    ``unknown flag`` / ``N args required`` text (exit 1) for what the real CLI refuses."""
    from cutover.adapters import convox_cli  # noqa: PLC0415 - the one source of CLI facts

    try:
        parsed = convox_cli.parse([*words, *args])
    except convox_cli.UsageError as exc:
        raise Fail(str(exc).removeprefix("ERROR: ")) from None
    except convox_cli.HelpRequested:
        return [], {"help": True}
    return parsed.args, dict(parsed.flags)


def main(args: list[str], stdin: str | None = None) -> int:
    if args in (["-v"], ["--version"]):
        sys.stdout.write(CLIENT_VERSION + "\n")
        return 0
    words = command_of(args)
    if not words:
        # Unknown command: the global help on stdout, exit 0.
        sys.stdout.write(
            "convox: command-line interface for Convox racks\n\n"
            "  convox apps       list apps\n  convox deploy     deploy an app\n"
        )
        return 0
    try:
        positional, opts = _parse(args[len(words) :], words)
        streams = Streams(bool(opts.get("id")))
        world = read_world()
        rack = world["convox"]["rack"]
        if opts.get("rack") not in (None, rack):
            raise Fail(f"could not find rack: {opts['rack']}")
        handler = HANDLERS[words]
        return handler(positional, opts, streams, stdin)
    except Fail as exc:
        sys.stdout.flush()
        sys.stderr.write(f"ERROR: {exc}\n")
        return 1


# -- commands ----------------------------------------------------------------------------------
def version(positional: list[str], opts: dict[str, Any], s: Streams, stdin: str | None) -> int:
    sys.stdout.write(f"client: {CLIENT_VERSION}\nserver: {read_world()['convox']['version']}\n")
    return 0


def switch(positional: list[str], opts: dict[str, Any], s: Streams, stdin: str | None) -> int:
    sys.stdout.write(read_world()["convox"]["rack"] + "\n")
    return 0


def rack(positional: list[str], opts: dict[str, Any], s: Streams, stdin: str | None) -> int:
    c = read_world()["convox"]
    sys.stdout.write(
        info(
            [
                ("Name", c["rack"]),
                ("Provider", "aws"),
                ("Region", "us-east-1"),
                ("Router", f"router.{c['rack_domain']}"),
                ("Status", "running"),
                ("Version", c["version"]),
            ]
        )
    )
    return 0


def apps_list(positional: list[str], opts: dict[str, Any], s: Streams, stdin: str | None) -> int:
    apps = read_world()["convox"]["apps"]
    rows = [[n, a["status"], a.get("active") or ""] for n, a in sorted(apps.items())]
    sys.stdout.write(table(["APP", "STATUS", "RELEASE"], rows))
    return 0


def apps_create(positional: list[str], opts: dict[str, Any], s: Streams, stdin: str | None) -> int:
    name = app_name(positional, opts)
    s.out(f"Creating {name}... ")
    with update_world() as world:
        apps = world["convox"]["apps"]
        if name in apps:
            raise Fail(f"app already exists: {name}")
        note_effect(world, "convox apps create")
        apps[name] = {
            "status": "running",
            "generation": "3",
            "releases": [],
            "builds": [],
            "active": None,
            "resources": {},
            "created": time.time(),
        }
    s.out("OK\n")
    return 0


def apps_info(positional: list[str], opts: dict[str, Any], s: Streams, stdin: str | None) -> int:
    with update_world() as world:
        name = app_name(positional, opts)
        app = get_app(world, name)
        world["convox"].setdefault("status_seen", []).append(app_status(app))
    sys.stdout.write(
        info(
            [
                ("Name", name),
                ("Status", app_status(app)),
                ("Generation", "3"),
                ("Locked", "false"),
                ("Release", app.get("active") or ""),
                ("Router", f"router.{world['convox']['rack_domain']}"),
            ]
        )
    )
    return 0


def env(positional: list[str], opts: dict[str, Any], s: Streams, stdin: str | None) -> int:
    app = get_app(read_world(), app_name([], opts))
    latest = latest_release(app)
    sys.stdout.write((latest["env"] if latest else "") + "\n")
    return 0


def env_set(positional: list[str], opts: dict[str, Any], s: Streams, stdin: str | None) -> int:
    name = app_name([], opts)
    pairs = [p for p in positional if "=" in p]
    lines = [ln for ln in (stdin or "").split("\n") if "=" in ln]
    keys = [p.split("=", 1)[0] for p in [*pairs, *lines]]
    s.out(f"Setting {', '.join(sorted(keys))}... ")
    with update_world() as world:
        app = world["convox"]["apps"].get(name)
        if app is None:
            raise Fail(f"app not found: {name}")
        latest = latest_release(app)
        current = {} if opts.get("replace") or not latest else env_dict(latest["env"])
        before = dict(current)
        for item in [*pairs, *lines]:
            key, _, value = item.partition("=")
            current[key] = value
        added = sorted(k for k in current if k not in before)
        changed = sorted(k for k in current if k in before and before[k] != current[k])
        description = " ".join(
            filter(
                None,
                [
                    "env",
                    f"add:{','.join(added)}" if added else "",
                    f"change:{','.join(changed)}" if changed else "",
                ],
            )
        )
        note_effect(world, "convox env set")
        release = new_release(
            world,
            app,
            env=current,
            build=latest["build"] if latest else "",
            description=description,
        )
    s.out(f"OK\nRelease: {release}\n")
    s.release_id(release)
    return 0


def _required_env(manifest: dict[str, Any]) -> set[str]:
    required = {str(e) for e in manifest.get("environment") or [] if "=" not in str(e)}
    for svc in (manifest.get("services") or {}).values():
        required |= {str(e) for e in (svc or {}).get("environment") or [] if "=" not in str(e)}
    return required - {"*"}


def _build(positional: list[str], opts: dict[str, Any], s: Streams, *, promote: bool) -> str:
    """``convox build`` / ``convox deploy``: package, build, create a release; promote if asked."""
    name = app_name([], opts)
    source = positional[0] if positional else "."
    manifest_path = os.path.join(source, str(opts.get("manifest") or "convox.yml"))
    s.out("Packaging source... ")
    if not os.path.isfile(manifest_path):
        raise Fail(f"open {manifest_path}: no such file or directory")
    with open(manifest_path, encoding="utf-8") as fh:
        text = fh.read()
    s.out("OK\nUploading source... OK\nStarting build... ")
    with update_world() as world:
        app = world["convox"]["apps"].get(name)
        if app is None:
            raise Fail(f"app not found: {name}")
        s.out("OK\n")
        latest = latest_release(app)
        env_now = env_dict(latest["env"]) if latest else {}
        manifest = load_yaml(text) or {}
        build = fake_id("B", next_number(world, "build"))
        s.out(
            f"Building: {source}\nStep 1/3 : FROM ruby:3.3-slim\nStep 2/3 : COPY . /app\n"
            f'Step 3/3 : CMD ["bundle", "exec", "puma"]\nRunning: docker push {build}\n'
        )
        missing = sorted(_required_env(manifest) - set(env_now))
        release = ""
        wait = 0.0
        if missing:
            app["builds"].append(
                {
                    "id": build,
                    "status": "failed",
                    "release": "",
                    "description": opts.get("description", ""),
                    "manifest": text,
                    "started": time.time(),
                }
            )
            s.out(f"validation errors:\nrequired env: {', '.join(missing)}\n")
        else:
            note_effect(world, "convox deploy" if promote else "convox build")
            release = new_release(world, app, env=env_now, build=build, description="")
            # The world's build_seconds: the build runs on the rack that long, and completes
            # even when this CLI is killed meanwhile (pkg/cli/build.go only follows its logs).
            wait = float(world["convox"].get("build_seconds", 0))
            app["releases"][-1]["pending_build"] = build
            app["builds"].append(
                {
                    "id": build,
                    "status": "complete",
                    "release": release,
                    "description": opts.get("description", ""),
                    "manifest": text,
                    "started": time.time(),
                    "ready_at": time.time() + wait,
                }
            )
    if not release:
        raise Fail("build failed")
    time.sleep(wait)
    if promote:
        _promote(name, release)
    return release


def _promote(name: str, release: str) -> None:
    """The rack makes ``release`` active and rolls it out for the world's promote_seconds
    (app status ``updating``); the CLI waits for that (pkg/cli/releases.go
    WaitForAppWithLogs), the rack goes on without it."""
    with update_world() as world:
        app = world["convox"]["apps"][name]
        wait = float(world["convox"].get("promote_seconds", 0))
        app["active"] = release
        app["updating_until"] = time.time() + wait
        entry = next(r for r in app["releases"] if r["id"] == release)
        build = build_of(app, entry["build"])
        manifest = (load_yaml(build["manifest"]) or {}) if build else {}
        _create_resources(world, name, app, manifest)
        _scale_on_promote(app, manifest)
    time.sleep(wait)


def _manifest_min(spec: Any) -> int:
    """A service's ``scale.count`` minimum (pkg/manifest/yaml.go ServiceScaleCount; no scale
    keys: 1, manifest.go ApplyDefaults)."""
    scale = (spec or {}).get("scale")
    if scale is None:
        return 1
    count = scale.get("count", 1) if isinstance(scale, dict) else scale
    if isinstance(count, dict):
        return int(count.get("min", 0))
    return int(str(count).split("-")[0])


def _scale_on_promote(app: dict[str, Any], manifest: dict[str, Any]) -> None:
    """provider/k8s/release.go releaseTemplateServices: replicas = CoalesceInt(runtime count,
    scale.count.min): a runtime 0 falls back to the manifest; services no longer declared go."""
    current = app.get("scale") or {}
    app["scale"] = {
        str(svc): int(current.get(str(svc)) or 0) or _manifest_min(spec)
        for svc, spec in (manifest.get("services") or {}).items()
    }


def scale(positional: list[str], opts: dict[str, Any], s: Streams, stdin: str | None) -> int:
    """``convox scale`` (pkg/cli/scale.go): read mode prints SERVICE DESIRED RUNNING CPU MEMORY
    GPU MIN MAX STATUS; ``scale S --count N`` sets the deployment's replicas
    (provider/k8s/service.go ServiceUpdate) and waits for the app like a promote."""
    name = app_name([], opts)
    if opts.get("count") is None:
        app = get_app(read_world(), name)
        manifest = active_manifest(app)
        rows = []
        for svc, spec in sorted((manifest.get("services") or {}).items()):
            count = int((app.get("scale") or {}).get(str(svc), 0))
            low = _manifest_min(spec)
            status = "COLD (~2-5m first req)" if low == 0 and count == 0 else ""
            rows.append(
                [str(svc), str(count), str(count), "250", "512", "-", str(low), str(low), status]
            )
        headers = ["SERVICE", "DESIRED", "RUNNING", "CPU", "MEMORY", "GPU", "MIN", "MAX", "STATUS"]
        sys.stdout.write(table(headers, rows))
        return 0
    if len(positional) != 1:
        raise Fail("service name required")
    service = positional[0]
    with update_world() as world:
        app = world["convox"]["apps"].get(name)
        if app is None:
            raise Fail(f"app not found: {name}")
        if service not in (app.get("scale") or {}):
            raise Fail(f'deployments.apps "{service}" not found')
        app["scale"][service] = int(opts["count"])
        note_effect(world, f"convox scale {service} --count {int(opts['count'])}")
    s.out(f"Scaling {service}... \nOK\n")
    return 0


def _create_resources(
    world: dict[str, Any], name: str, app: dict[str, Any], manifest: dict[str, Any]
) -> None:
    """The promote creates the manifest's resources (provider/k8s/template/resource/*.tmpl):
    an EMPTY postgres of ``options.version`` (default 10.5, postgres.yml.tmpl), whose server
    refuses connections for the world's ``resource_start_seconds`` while its pod starts."""
    start = float(world["convox"].get("resource_start_seconds", 0))
    for res_name, res in (manifest.get("resources") or {}).items():
        if (res or {}).get("type") == "postgres" and res_name not in app["resources"]:
            password = world["convox"]["resource_password"]
            version = str(((res or {}).get("options") or {}).get("version") or "10.5")
            app["resources"][res_name] = {
                "type": "postgres",
                "version": version,
                "url": f"postgres://app:{password}@resource-{res_name}.{name}"
                f".svc.cluster.local:5432/app?sslmode=disable",
                "password": password,
                "data": {"tables": {}, "sequences": {}},
                "ready_at": time.time() + start,
            }


def deploy(positional: list[str], opts: dict[str, Any], s: Streams, stdin: str | None) -> int:
    release = _build(positional, opts, s, promote=True)
    s.out(f"Promoting {release}... \nOK\n")
    s.release_id(release)
    return 0


def build(positional: list[str], opts: dict[str, Any], s: Streams, stdin: str | None) -> int:
    release = _build(positional, opts, s, promote=False)
    build_id = next(
        b["id"]
        for b in get_app(read_world(), app_name([], opts))["builds"]
        if b["release"] == release
    )
    s.out(f"Build:   {build_id}\nRelease: {release}\n")
    s.release_id(release)
    return 0


def run(positional: list[str], opts: dict[str, Any], s: Streams, stdin: str | None) -> int:
    """``convox run SERVICE [--release R] [--timeout N] -- COMMAND`` (pkg/cli/run.go): a pod
    running ``sleep N`` (3600 by default) is started, the command exec'd in it, and the pod
    stopped when the CLI returns. The pod needs the service's ServiceAccount, which only a
    promote creates (provider/k8s/process.go, template/app/service.yml.tmpl): before the app's
    first promote the rack refuses it. The world's ``run_pod_lingers`` leaves the pod listed by
    ``convox ps`` as a killed CLI would (its deferred ProcessStop never runs)."""
    service, command = positional[0], " ".join(positional[1:])
    name = app_name([], opts)
    timeout = int(opts.get("timeout") or 0) or 3600
    with update_world() as world:
        app = world["convox"]["apps"].get(name)
        if app is None:
            raise Fail(f"app not found: {name}")
        release = opts.get("release") or app.get("active")
        if not any(r["id"] == release for r in visible_releases(app)):
            raise Fail(f"release not found: {release}")
        if not app.get("active"):
            raise Fail(
                f'pods "{name}-{service}-run" is forbidden: error looking up service '
                f"account {world['convox']['rack']}-{name}/{service}: serviceaccount "
                f'"{service}" not found'
            )
        note_effect(world, f"convox run {service} {command}")
        app.setdefault("runs", []).append(
            {"service": service, "release": release, "command": command, "t": time.time()}
        )
        pod = fake_id("P", next_number(world, "process")).lower()
        app.setdefault("processes", []).append(
            {
                "id": f"{service}-{pod}",
                "service": service,
                "release": release,
                "command": f"sleep {timeout}",
                "started": time.time(),
                "lingers": bool(world["convox"].get("run_pod_lingers")),
            }
        )
    # The world's run_exit_code: the command's own exit status, which the CLI exits with
    # (stdcli.Exit(code)) after stopping the pod.
    code = int(read_world()["convox"].get("run_exit_code") or 0)
    sys.stdout.write(f"{command}: {'done' if code == 0 else 'failed'}\n")
    with update_world() as world:  # the deferred rack.ProcessStop
        app = world["convox"]["apps"][name]
        app["processes"] = [p for p in app.get("processes", []) if p.get("lingers")]
    return code


def ps(positional: list[str], opts: dict[str, Any], s: Streams, stdin: str | None) -> int:
    """``convox ps [--service S] [--release R]`` (pkg/cli/ps.go): ID, SERVICE, STATUS, RELEASE,
    STARTED, COMMAND; run pods show their ``sleep N``."""
    app = get_app(read_world(), app_name([], opts))
    rows = [
        [p["id"], p["service"], "running", p["release"], ago(p["started"]), p["command"]]
        for p in app.get("processes", [])
        if opts.get("service") in (None, p["service"])
        and opts.get("release") in (None, p["release"])
    ]
    sys.stdout.write(table(["ID", "SERVICE", "STATUS", "RELEASE", "STARTED", "COMMAND"], rows))
    return 0


def builds(positional: list[str], opts: dict[str, Any], s: Streams, stdin: str | None) -> int:
    app = get_app(read_world(), app_name([], opts))
    rows = [
        [
            b["id"],
            b["status"] if build_ready(b) else "running",
            b["release"] if build_ready(b) else "",
            ago(b["started"]),
            "2m0s",
            b["description"],
        ]
        for b in reversed(app["builds"])
    ]
    sys.stdout.write(table(["ID", "STATUS", "RELEASE", "STARTED", "ELAPSED", "DESCRIPTION"], rows))
    return 0


def releases(positional: list[str], opts: dict[str, Any], s: Streams, stdin: str | None) -> int:
    app = get_app(read_world(), app_name([], opts))
    rows = [
        [
            r["id"],
            "active" if r["id"] == app.get("active") else "",
            r["build"],
            ago(r["created"]),
            r["description"],
        ]
        for r in reversed(visible_releases(app))
    ]
    sys.stdout.write(table(["ID", "STATUS", "BUILD", "CREATED", "DESCRIPTION"], rows))
    return 0


def releases_manifest(
    positional: list[str], opts: dict[str, Any], s: Streams, stdin: str | None
) -> int:
    if len(positional) != 1:
        raise Fail("1 arg required")
    app = get_app(read_world(), app_name([], opts))
    release = next((r for r in app["releases"] if r["id"] == positional[0]), None)
    if release is None:
        raise Fail(f"release not found: {positional[0]}")
    build = build_of(app, release["build"])
    if build is None:
        raise Fail(f"no build for release: {positional[0]}")
    sys.stdout.write(build["manifest"].strip() + "\n")
    return 0


def releases_promote(
    positional: list[str], opts: dict[str, Any], s: Streams, stdin: str | None
) -> int:
    name = app_name([], opts)
    with update_world() as world:
        app = world["convox"]["apps"].get(name)
        if app is None:
            raise Fail(f"app not found: {name}")
        if not app["releases"]:
            raise Fail("no releases to promote")
        target = positional[0] if positional else app["releases"][-1]["id"]
        s.out(f"Promoting {target}... \n")
        if not any(r["id"] == target for r in visible_releases(app)):
            raise Fail(f"release not found: {target}")
        note_effect(world, "convox releases promote")
    _promote(name, target)
    s.out("OK\n")
    return 0


def services(positional: list[str], opts: dict[str, Any], s: Streams, stdin: str | None) -> int:
    world = read_world()
    name = app_name([], opts)
    app = get_app(world, name)
    manifest = active_manifest(app)
    rows = []
    for svc, spec in (manifest.get("services") or {}).items():
        port = (spec or {}).get("port")
        count = ((spec or {}).get("scale") or {}).get("count", 1)
        rows.append(
            [
                svc,
                f"{svc}.{name}.{world['convox']['rack_domain']}",
                f"443:{port}" if port else "",
                str(count),
            ]
        )
    # pkg/cli/services.go: SCALE whenever a service has min/max, which v3 racks always set.
    sys.stdout.write(table(["SERVICE", "DOMAIN", "PORTS", "SCALE"], rows))
    # Best-effort budget lookup of newer CLIs against older racks: noise on stderr, still rc 0.
    sys.stderr.write('ns=cli_budget at=fetch-error err="response status 404"\n')
    return 0


def _resource(world: dict[str, Any], app_name: str, resource: str) -> dict[str, Any]:
    app = get_app(world, app_name)
    found = app["resources"].get(resource)
    if found is None:
        raise Fail(f"resource not found: {resource}")
    return dict(found)


def resources_url(
    positional: list[str], opts: dict[str, Any], s: Streams, stdin: str | None
) -> int:
    if len(positional) != 1:
        raise Fail("1 arg required")
    res = _resource(read_world(), app_name([], opts), positional[0])
    sys.stdout.write(res["url"] + "\n")
    return 0


def resources_proxy(
    positional: list[str], opts: dict[str, Any], s: Streams, stdin: str | None
) -> int:
    import socket  # noqa: PLC0415 - only the proxy needs these
    import threading  # noqa: PLC0415
    from urllib.parse import urlsplit  # noqa: PLC0415

    if len(positional) != 1:
        raise Fail("1 arg required")
    name = app_name([], opts)
    res = _resource(read_world(), name, positional[0])
    remote = urlsplit(res["url"])
    port = int(opts.get("port") or remote.port or 5432)
    register_process("proxy", "convox", sys.argv[1:])
    with update_world() as world:
        world["convox"]["proxies"][str(port)] = {
            "app": name,
            "resource": positional[0],
            "pid": os.getpid(),
        }
    sys.stdout.write(f"proxying localhost:{port} to {remote.hostname}:{remote.port or 5432}\n")
    sys.stdout.flush()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("127.0.0.1", port))
        listener.listen(16)
    except OSError:
        # The real proxy reports a bind failure on stderr and then hangs forever.
        sys.stderr.write(f"ERROR: listen tcp 127.0.0.1:{port}: bind: address already in use\n")
        sys.stderr.flush()
        exit_when_orphaned()
        return 0
    threading.Thread(target=_accept, args=(listener, port), daemon=True).start()
    exit_when_orphaned()
    return 0


def _accept(listener: Any, port: int) -> None:
    import threading  # noqa: PLC0415

    while True:
        conn, _ = listener.accept()
        sys.stdout.write(f"connect: {port}\n")
        sys.stdout.flush()
        threading.Thread(target=_drain, args=(conn,), daemon=True).start()


def _drain(conn: Any) -> None:
    with conn:
        while conn.recv(65536):
            pass


HANDLERS = {
    ("version",): version,
    ("switch",): switch,
    ("rack",): rack,
    ("apps",): apps_list,
    ("apps", "create"): apps_create,
    ("apps", "info"): apps_info,
    ("env",): env,
    ("env", "set"): env_set,
    ("deploy",): deploy,
    ("build",): build,
    ("run",): run,
    ("builds",): builds,
    ("releases",): releases,
    ("releases", "manifest"): releases_manifest,
    ("releases", "promote"): releases_promote,
    ("services",): services,
    ("resources", "url"): resources_url,
    ("resources", "proxy"): resources_proxy,
    ("ps",): ps,
    ("scale",): scale,
    ("certs", "import"): convox_certs.certs_import,
    ("certs", "generate"): convox_certs.certs_generate,
    ("certs",): convox_certs.certs_list,
    ("letsencrypt", "dns", "route53", "add"): convox_certs.route53_add,
    ("letsencrypt", "dns", "route53", "list"): convox_certs.route53_list,
}
