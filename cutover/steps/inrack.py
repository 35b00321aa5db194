"""The ``in-rack`` data method: dump and restore run inside the rack, as a ``convox run`` one-off.

For databases too large to pipe through an operator's machine: the data goes from Heroku to the
app's Convox resource without leaving the cloud. cutover starts ``convox run <in_rack_service>
--timeout <database.timeout> -a APP [-r RACK] -- sh -c '<script>'`` (the script is
:mod:`cutover.steps.inrack_script`), gives it the Heroku connection on stdin, and watches its
output; the restore goes into the database the caller names (the staging database of the
"never worse" swap), on the server of the resource linked to that service.

What the rack does with it (convox at the commit in ``cutover/adapters/convox_cli.json``):
pkg/cli/run.go ``Run`` starts a pod running ``sleep <timeout>``, waits for it to run
(``common.WaitForProcessRunning``: a pod that never starts ends the CLI with ``ERROR: timeout``),
execs the command in it with stdin forwarded (not a terminal: ``Tty`` false; stdout and stderr
come back merged) and exits with the command's exit code, stopping the pod (deferred
``ProcessStop``). A CLI that is killed stops nothing: the pod and the copy in it run on until
the copy ends or the sleep does, which is what :func:`leftover_pods` finds before a new copy.
provider/k8s/process.go gives the pod the service's image (``<repo>:<service>.<build>``, built
``FROM`` the service's ``image:``) and its env with the linked resources' variables.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cutover.errors import CutoverError, Interrupted
from cutover.steps.inrack_script import MARKER, build_script, run_command, stdin_payload

if TYPE_CHECKING:
    from cutover.adapters.postgres import ConnInfo
    from cutover.runpipes import Background
    from cutover.steps.base import Context

# Seconds the CLI may take beyond `run --timeout` (pod scheduling, image pull, exec set-up);
# the same grace the convox adapter gives `run_command`.
RUN_GRACE = 300
NOTE_EVERY = 10.0  # seconds between progress notes
LEFTOVER_WAIT = 40.0  # a stopped pod's 30 s grace period, and some
LEFTOVER_POLL = 2.0
_POLL = 0.2
# Pod states that run nothing (provider/k8s/process.go processFromPod: Succeeded -> complete,
# Failed -> failed, CrashLoopBackOff -> crashed); controller_pod.go deletes the first two 5 s on.
_ENDED = ("complete", "failed", "crashed")
# The major in a PostgreSQL image reference: postgres:16, postgres:16.4-bookworm,
# docker.io/library/postgres:15-alpine, postgis/postgis:16-3.4.
_IMAGE = re.compile(r"(?:^|/)(?:postgres|postgis)(?::(?P<major>\d+)(?:[.\-][^/]*)?)?$")
# pg_restore --verbose: one line per TOC entry it handles (pg_backup_archiver.c).
_ENTRY = re.compile(
    r"^pg_restore: (creating |processing data for table |executing |processing BLOBS)"
)


@dataclass(frozen=True)
class InRackResult:
    bytes: int
    objects: int
    seconds: float


@dataclass(frozen=True)
class ClientService:
    """The in-rack service as the active release's manifest declares it."""

    name: str
    image: str
    major: int
    env_prefix: str  # the linked resource's variables: DATABASE -> DATABASE_HOST, ...


def env_prefix(resource: str) -> str:
    """``<NAME>_URL`` etc. of a linked resource (pkg/manifest/resource.go ``mountEnv``)."""
    return resource.upper().replace("-", "_")


def client_service(ctx: Context) -> ClientService:
    """The in-rack service as the app's active release declares it (:func:`parse_client`)."""
    release = ctx.convox.active_release()
    if not release:
        raise CutoverError(
            f"in-rack copy: the Convox app {ctx.convox.app} has no active release yet",
            resolution="Run the deploy steps first (cutover run), then the data steps.",
        )
    return parse_client(
        ctx, ctx.convox.release_manifest(release), f"convox.yml of release {release}"
    )


def parse_client(ctx: Context, manifest_text: str, where: str) -> ClientService:
    """Check the in-rack service in a convox.yml (``where`` names it in messages): it exists,
    links the database resource by name (so the pod gets ``<NAME>_HOST`` and the rest, not one
    aliased variable), and its image is ``postgres:<major>`` (or postgis). A preflight can
    pass the local convox.yml, before anything is deployed."""
    import yaml  # noqa: PLC0415 - only the in-rack method reads manifests

    db = ctx.model.database
    assert db
    name = db.in_rack_service
    try:
        manifest = yaml.safe_load(manifest_text) or {}
    except yaml.YAMLError as exc:
        raise CutoverError(f"the {where} is not YAML: {exc}") from None
    services = manifest.get("services") if isinstance(manifest, dict) else None
    service = services.get(name) if isinstance(services, dict) else None
    fix = (
        f"Declare it in convox.yml (`cutover translate --pg-client` writes it):\n  {name}:\n"
        f"    image: postgres:<Heroku's major>\n    resources:\n      - {db.resource}\n"
        "    scale:\n      count: 0"
    )
    if not isinstance(service, dict):
        raise CutoverError(
            f"database.in_rack_service: no service {name!r} in the {where}", resolution=fix
        )
    links = [str(r) for r in service.get("resources") or []]
    if db.resource not in links:
        raise CutoverError(
            f"services.{name}.resources in the {where} does not link {db.resource!r} by name "
            f"(it has: {', '.join(links) or 'none'}); the copy needs the resource's "
            f"{env_prefix(db.resource)}_HOST/_PORT/_USER/_PASS in the pod",
            resolution=fix,
        )
    image = str(service.get("image") or "")
    match = _IMAGE.search(image)
    if not image or not match or not match.group("major"):
        raise CutoverError(
            f"services.{name}.image in the {where} is {image or 'not set'!r}: the in-rack copy "
            "needs a PostgreSQL image with its major pinned (postgres:<major>), since pg_dump "
            "refuses a server newer than itself",
            resolution=fix,
        )
    return ClientService(name, image, int(match.group("major")), env_prefix(db.resource))


def check_client(
    ctx: Context, source_major: int, service: ClientService | None = None
) -> ClientService:
    """``service`` (default: :func:`client_service`), whose major must be at least Heroku's:
    pg_dump refuses to dump a server of a newer major ("aborting because of server version
    mismatch"), and pg_restore reads only archives of its own or older versions."""
    service = service or client_service(ctx)
    if service.major < source_major:
        raise CutoverError(
            f"services.{service.name}.image is {service.image}: PostgreSQL {service.major} "
            f"client tools cannot dump the Heroku database (PostgreSQL {source_major})",
            resolution=f"Set image: postgres:{source_major} (or newer) in convox.yml, deploy, "
            "and run again.",
        )
    return service


def leftover_pods(ctx: Context, service: str) -> list[str]:
    """Pods of the in-rack service still running ``sleep N``: an earlier copy whose CLI was
    killed (its deferred ProcessStop never ran) and which may still write into the staging
    database. ``convox ps --service S`` lists them (provider/k8s/process.go ProcessList)."""
    rows = ctx.convox.processes(service=service)
    return [
        row["ID"]
        for row in rows
        if row.get("COMMAND", "").startswith("sleep ") and row.get("STATUS") not in _ENDED
    ]


def refuse_leftovers(ctx: Context, service: str) -> None:
    """Refuse while an earlier copy's pod runs. A pod its CLI stopped is deleted with the
    default grace period (provider/k8s/process.go ``ProcessStop``: ``Pods.Delete`` without
    options, 30 s) and is listed, still running, until it is gone: wait that out first."""
    pods = leftover_pods(ctx, service)
    until = time.monotonic() + LEFTOVER_WAIT
    while pods and time.monotonic() < until:
        time.sleep(LEFTOVER_POLL)
        pods = leftover_pods(ctx, service)
    if pods:
        app = ctx.convox.app
        rack = f" -r {ctx.convox.rack}" if ctx.convox.rack else ""
        raise CutoverError(
            f"an earlier in-rack copy may still be running in pod {', '.join(pods)} "
            f"(service {service}); a second copy would race it into the staging database",
            details="convox run was stopped before it could stop its pod (pkg/cli/run.go: "
            "the pod lives until its command and its sleep end).",
            resolution="Stop it: "
            + "; ".join(f"convox ps stop {p} -a {app}{rack}" for p in pods)
            + ". Then run cutover again: the copy starts over into a fresh staging database.",
        )


def prepare_in_rack(ctx: Context, source_url: str) -> ClientService:
    """What FinalSync checks before it (re)creates the staging database: the in-rack service
    is declared with a PostgreSQL image new enough for Heroku's server, and no earlier copy's
    pod is still running (one killed with its CLI may still be restoring into the staging
    database about to be dropped). :func:`sync_in_rack` checks it again."""
    return _prepare(ctx, _source(ctx, source_url))


def _source(ctx: Context, source_url: str) -> ConnInfo:
    from cutover.adapters.postgres import ConnInfo  # noqa: PLC0415 - adapters load when a step runs

    ctx.masker.add(source_url)
    source = ConnInfo.from_url(source_url)
    ctx.masker.add(source.password)
    # Heroku requires TLS: require it unless the URL says otherwise (data design, decision 4).
    return dataclasses.replace(source, sslmode=source.sslmode or "require")


def _prepare(ctx: Context, source: ConnInfo) -> ClientService:
    service = check_client(ctx, ctx.postgres.server_major(source))
    refuse_leftovers(ctx, service.name)
    return service


def sync_in_rack(
    ctx: Context, source_url: str, target_dbname: str, skip_extensions: Sequence[str]
) -> InRackResult:
    """Copy Heroku's database (``source_url``) into ``target_dbname`` on the server of the
    app's ``database.resource``, inside the rack. The caller created ``target_dbname`` (fresh,
    owned by the resource's role); a failure leaves only that database half-filled, so a
    second attempt redoes it from scratch. Extensions in ``skip_extensions`` that the target
    role cannot create are left out (each one noted)."""
    db = ctx.model.database
    assert db
    source = _source(ctx, source_url)
    sslmode = source.sslmode or "require"
    # What the script cannot carry is refused before anything connects or runs.
    try:
        payload = stdin_payload(
            source.host, source.port, source.user, source.password, source.dbname, sslmode
        )
        build_script(env_prefix(db.resource), target_dbname, list(skip_extensions))
    except ValueError as exc:
        raise CutoverError(
            f"in-rack copy: {exc}",
            resolution="The in-rack copy reads the Heroku connection one field a line and "
            "takes plain database and extension names; use database.method: direct for "
            "this database.",
        ) from None
    service = _prepare(ctx, source)
    script = build_script(service.env_prefix, target_dbname, list(skip_extensions))
    ctx.note(
        f"in-rack copy: convox run {service.name} ({service.image}) dumps Heroku and restores "
        f"into {target_dbname} on {db.resource}, inside the rack (up to {db.timeout}s)"
    )
    started = time.monotonic()
    with ctx.convox.start_run(service.name, run_command(script), payload, db.timeout) as bg:
        code, watch = _watch(ctx, bg, started + db.timeout + RUN_GRACE)
    seconds = time.monotonic() - started
    if code != 0 or watch.done is None:
        raise _failure(ctx, bg, code, watch, service.name, target_dbname)
    done = watch.done
    ctx.note(
        f"in-rack copy done: {done['bytes']} bytes, {done['objects']} objects into "
        f"{target_dbname} in {seconds:.1f}s"
    )
    return InRackResult(bytes=done["bytes"], objects=done["objects"], seconds=seconds)


@dataclass
class _Watch:
    total: int | None = None
    entries: int = 0
    large_objects: int = 0  # their TOC entries, counted in the rack (the script's `entries`)
    done: dict[str, int] | None = None
    failed: str | None = None
    lines: list[str] = dataclasses.field(default_factory=list)


def _watch(ctx: Context, bg: Background, deadline: float) -> tuple[int | None, _Watch]:
    """Follow the CLI's output until it exits or the deadline passes; return its exit code
    (None when cutover stopped it) and what the output said."""
    watch = _Watch()
    chunks, partial = 0, ""
    next_note = time.monotonic() + NOTE_EVERY
    try:
        while True:
            code = bg.exit_code()  # first: once it has ended, all its output is there
            text, chunks = bg.read_stdout(chunks)
            partial += text
            if code is None:  # keep an unfinished last line for the next round
                head, _, partial = partial.rpartition("\n")
                lines = head.splitlines()
            else:
                lines, partial = partial.splitlines(), ""
            for line in lines:
                _line(ctx, watch, line)
            if code is not None:
                return code, watch
            now = time.monotonic()
            if now > deadline:
                bg.stop()
                return None, watch
            if now >= next_note and watch.total is not None:
                done = min(watch.entries + watch.large_objects, watch.total)
                ctx.note(f"in-rack copy: {done}/{watch.total} objects")
                next_note = now + NOTE_EVERY
            time.sleep(_POLL)
    except KeyboardInterrupt:
        bg.stop()
        raise Interrupted(
            "interrupted during the in-rack copy",
            resolution="The copy may go on in its pod until it ends; `cutover run` checks for "
            "that pod before copying again.",
        ) from None


def _line(ctx: Context, watch: _Watch, line: str) -> None:
    watch.lines = [*watch.lines[-40:], line]
    if line.startswith(MARKER):
        event, _, rest = line[len(MARKER) :].strip().partition(" ")
        if event == "objects" and rest.isdigit():
            watch.total = int(rest)
            ctx.note(f"in-rack copy: {rest} objects to restore")
        elif event == "entries" and rest.isdigit():
            watch.large_objects = int(rest)
        elif event == "skip-extension":
            ctx.note(
                f"finding: extension {rest} left out of the restore: the Convox role cannot "
                "create it (database.skip_extensions)"
            )
        elif event == "failed":
            watch.failed = rest
        elif event == "done":
            fields = dict(part.partition("=")[::2] for part in rest.split())
            try:
                watch.done = {k: int(fields[k]) for k in ("bytes", "objects")}
            except (KeyError, ValueError):
                watch.failed = f"unreadable end line: {line}"
        return
    if _ENTRY.match(line):
        watch.entries += 1
    elif line.startswith(("pg_dump: error", "pg_restore: error", "psql: error", "ERROR:")):
        ctx.note(f"in-rack: {line}")


def _failure(
    ctx: Context, bg: Background, code: int | None, watch: _Watch, service: str, target: str
) -> CutoverError:
    tail = ctx.masker.mask("\n".join(watch.lines[-15:]) or bg.stderr.strip())
    again = (
        f"Nothing live changed: the copy went into {target}, which the next attempt recreates. "
        "Fix the cause and run `cutover run` again."
    )
    if code is None:
        return CutoverError(
            f"the in-rack copy did not finish within database.timeout + {RUN_GRACE}s; "
            "cutover stopped convox run",
            details=tail,
            resolution=f"Its pod may still run: check `convox ps --service {service}`. Raise "
            "database.timeout if the copy needs longer. " + again,
        )
    stderr = ctx.masker.mask(bg.stderr.strip())
    if watch.failed:
        stage = watch.failed.split(" ")[0]
        return CutoverError(
            f"the in-rack copy failed ({stage} step, exit {code})", details=tail, resolution=again
        )
    if "ERROR: timeout" in stderr:
        return CutoverError(
            f"convox run {service}: the pod never started (ERROR: timeout)",
            details=stderr,
            resolution=f"Look at `convox ps --service {service}` and the rack's events (image "
            "pull, resources). " + again,
        )
    if code in (137, 143):
        return CutoverError(
            f"the in-rack copy was killed (exit {code}): its pod ended (database.timeout "
            "reached, or the pod was stopped)",
            details=tail,
            resolution="Raise database.timeout if the copy needs longer. " + again,
        )
    return CutoverError(
        f"convox run {service} exited {code} before the copy finished",
        details="\n".join(p for p in (tail, stderr) if p),
        resolution=again,
    )


def describe(ctx: Context, target_dbname: str) -> list[str]:
    """Plan lines for the in-rack copy (no secrets, nothing run)."""
    db = ctx.model.database
    assert db
    argv = ctx.convox.run_argv(
        db.in_rack_service, "sh -c '<in-rack copy script>'", None, db.timeout
    )
    return [
        " ".join(argv[:-1])
        + " "
        + argv[-1]
        + "   (stdin: the Heroku connection; pg_dump -Fc --no-owner --no-acl | pg_restore "
        f"--no-owner --no-acl --exit-on-error --use-list -d {target_dbname})",
    ]
