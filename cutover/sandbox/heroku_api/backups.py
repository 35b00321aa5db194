"""Backups: captures that run in the background with progress, scheduled backups, and the
HTTPS file server behind ``pg:backups:url``.

What heroku CLI 11.10.0 does (node_modules/heroku/dist/commands/pg/backups/capture.js and
dist/lib/pg/backups.js): ``pg:backups:capture [DATABASE]`` resolves the attachment (default
``DATABASE_URL``), reads ``GET /client/v11/databases/<addon id>``, ``POST``s
``/client/v11/databases/<addon id>/backups`` and then polls ``GET
/client/v11/apps/<app>/transfers/<uuid>`` every ``max(3, --wait-interval)`` seconds, showing
``processed_bytes`` (on a TTY), until ``finished_at`` is set; a transfer that finished without
``succeeded`` makes it fetch ``?verbose=true`` and print the last 5 log messages; it exits 2
(oclif's ``ux.error`` default, as ``Backups.wait()`` calls it without an exit code).
``pg:backups:url`` without an id takes the **newest successful** ``gof3r`` transfer of the whole
app by ``created_at`` (commands/pg/backups/url.js), so a scheduled backup started after ours wins.

Here a capture returns at once (``finished_at`` null, ``succeeded`` false, ``processed_bytes``
0); a thread runs the real ``pg_dump`` and reports ``processed_bytes`` every
``timings.backup_progress_interval`` seconds, growing with the elapsed share of
``timings.backup_seconds`` (the shortest time a capture takes) up to the dump's real size; at the
end ``finished_at``, ``succeeded`` and the logs are set. ``apps.<name>.scheduled_backup_during_
capture: N`` makes the next N captures meet a scheduled backup of the schedule's database that
starts one second after them and finishes before them.
"""

from __future__ import annotations

import hmac
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from cutover.sandbox.heroku_api.common import (
    ApiError,
    JSONDict,
    Request,
    Response,
    data_time,
    now,
)
from cutover.sandbox.heroku_api.lookup import find_app, postgres_addon
from cutover.sandbox.heroku_api.records import new_transfer, transfer_view
from cutover.sandbox.heroku_api.state import timing

if TYPE_CHECKING:
    from cutover.sandbox.heroku_api.emulator import Emulator

PG_DUMP_TIMEOUT = 600.0
INJECT_KEY = "scheduled_backup_during_capture"


def _pg_dump_argv(pg_dump: str, database: JSONDict) -> tuple[list[str], dict[str, str]]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "PGPASSWORD": str(database["password"]),  # never in argv
        "PGCONNECT_TIMEOUT": "10",
    }
    argv = [
        pg_dump, "-Fc", "--no-owner", "--no-acl",
        "--host", str(database["host"]), "--port", str(database["port"]),
        "--username", str(database["user"]), "--dbname", str(database["database"]),
    ]  # fmt: skip
    return argv, env


def database_size(pg_dump: str, database: JSONDict) -> int | None:
    """``pg_database_size`` of the backing database, by the ``psql`` beside ``pg_dump``.

    The Data API's ``source_bytes`` is the database's size and ``processed_bytes`` the size of
    the compressed backup: ``pg:backups:info`` prints them as "Original DB Size" and "Backup
    Size (N% compression)" (commands/pg/backups/info.js ``compression()``). None if unknown.
    """
    argv, env = _pg_dump_argv(pg_dump, database)
    folder = os.path.dirname(pg_dump)
    psql = os.path.join(folder, "psql") if folder else "psql"
    query = ["-X", "-A", "-t", "-c", "SELECT pg_database_size(current_database())"]
    try:
        proc = subprocess.run(
            [psql, *argv[4:], *query], stdin=subprocess.DEVNULL, capture_output=True,
            env=env, timeout=30, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = proc.stdout.decode("ascii", "replace").strip()
    return int(text) if proc.returncode == 0 and text.isdigit() else None


def _part_file(target: Path) -> tuple[int, Path]:
    """A new, uniquely named ``.<file>.<random>.part`` (0600) beside ``target``: each writer has
    its own, so neither a pg_dump orphaned by a killed emulator (still writing to its file) nor a
    second writer of the same backup can mix bytes into this dump, and ``target`` only ever
    appears complete, by :func:`os.replace`."""
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.fchmod(fd, 0o600)
    return fd, Path(name)


def _outcome(returncode: int, stderr: bytes, size: int) -> tuple[bool, int, list[str]]:
    lines = stderr.decode("utf-8", "replace").splitlines()
    if returncode != 0:
        return False, size, [*lines[-5:], f"pg_dump exited with status {returncode}"]
    return True, size, ["backup done"]


def run_pg_dump(pg_dump: str, database: JSONDict, target: Path) -> tuple[bool, int, list[str]]:
    """``pg_dump -Fc`` the backing database into ``target`` (0600); (ok, size, log lines).

    ``target`` is only (re)placed by a complete dump; after a failure it is left as it was."""
    argv, env = _pg_dump_argv(pg_dump, database)
    fd, part = _part_file(target)
    try:
        proc = subprocess.run(
            argv, stdin=subprocess.DEVNULL, stdout=fd, stderr=subprocess.PIPE, env=env,
            timeout=PG_DUMP_TIMEOUT, check=False,
        )  # fmt: skip
        os.fsync(fd)
        size = os.fstat(fd).st_size
    except (OSError, subprocess.TimeoutExpired) as exc:
        part.unlink(missing_ok=True)
        return False, 0, [f"pg_dump failed: {type(exc).__name__}"]
    finally:
        os.close(fd)
    if proc.returncode == 0:
        os.replace(part, target)
    else:  # no file rather than a cut-short one that could be served as the backup
        part.unlink(missing_ok=True)
    return _outcome(proc.returncode, proc.stderr, size)


def _update_transfer(emu: Emulator, app: str, ident: str, **fields: object) -> None:
    with emu.edit() as state:
        _, entry = find_app(state, app)
        for stored in entry.get("transfers") or []:
            if stored.get("uuid") == ident:
                stored.update(fields)


def _report(emu: Emulator, app: str, ident: str, **fields: object) -> bool:
    """Progress update; a state file that cannot be read or written right now (broken by hand)
    skips this update instead of killing the capture. True if it was stored, or if there is
    nothing left to store it in (the app was removed from the state: nothing to retry)."""
    try:
        _update_transfer(emu, app, ident, **fields)
    except ApiError:
        return True
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"backup {ident}: cannot update the state file ({type(exc).__name__})\n")
        return False
    return True


def _finish(emu: Emulator, app: str, ident: str, **fields: object) -> None:
    """Store the outcome, retrying while the state file is broken, until the emulator stops
    (then the transfer stays unfinished and :func:`resume_unfinished` runs it again)."""
    while not _report(emu, app, ident, **fields):
        if emu.stop.wait(0.5):
            return


def _dump(
    emu: Emulator,
    app: str,
    transfer: JSONDict,
    database: JSONDict,
    duration: float,
    interval: float,
) -> tuple[bool, int, list[str]] | None:
    """Run pg_dump into a part file with progress reports; renamed over the file at the end.

    None when the emulator stops first (pg_dump is killed, the transfer stays unfinished)."""
    started = time.monotonic()
    target = emu.state_path.parent / str(transfer["file"])
    argv, env = _pg_dump_argv(emu.pg_dump, database)
    source = database_size(emu.pg_dump, database)
    if source is not None:
        _report(emu, app, transfer["uuid"], source_bytes=source)
    fd, part = _part_file(target)
    try:
        with tempfile.TemporaryFile() as errors:
            try:
                proc = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=fd, stderr=errors, env=env
                )
            except OSError as exc:
                part.unlink(missing_ok=True)
                return False, 0, [f"pg_dump failed: {type(exc).__name__}"]
            while True:
                elapsed = time.monotonic() - started
                remaining = duration - elapsed
                if proc.poll() is not None and remaining <= 0:
                    break
                if elapsed > PG_DUMP_TIMEOUT:
                    proc.kill()
                size = os.fstat(fd).st_size
                share = 1.0 if duration <= 0 else min(1.0, elapsed / duration)
                _report(
                    emu, app, transfer["uuid"],
                    processed_bytes=int(size * share), updated_at=data_time(now()),
                )  # fmt: skip
                if emu.stop.wait(max(0.02, min(interval, remaining if remaining > 0 else 0.1))):
                    proc.kill()
                    proc.wait()
                    part.unlink(missing_ok=True)
                    return None
            errors.seek(0)
            result = _outcome(proc.wait(), errors.read(), os.fstat(fd).st_size)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(part, target)
    return result


def _run_capture(
    emu: Emulator,
    app: str,
    transfer: JSONDict,
    database: JSONDict,
    duration: float,
    interval: float,
) -> None:
    """Thread body: run pg_dump, report progress, finish no earlier than ``duration``.

    Whatever goes wrong is the transfer's failure (Heroku marks a transfer it could not
    complete as failed); only stopping the emulator leaves it unfinished, to be resumed.
    """
    try:
        result = _dump(emu, app, transfer, database, duration, interval)
    except Exception as exc:  # any error fails the transfer, never leaves it hanging
        result = False, 0, [f"backup failed: {type(exc).__name__}"]
    if result is None:
        return  # the emulator is stopping: the transfer stays unfinished
    succeeded, size, logs = result
    finished = data_time(now())
    _finish(
        emu, app, transfer["uuid"], succeeded=succeeded, processed_bytes=size,
        finished_at=finished, updated_at=finished,
        logs=[{"created_at": finished, "level": "info", "message": m} for m in logs],
    )  # fmt: skip


def _start(emu: Emulator, target: object, *args: object) -> None:
    thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
    emu.workers.append(thread)
    thread.start()


def _scheduled_during(emu: Emulator, app: str, after: str) -> None:
    """Thread body: a scheduled backup of the schedule's database, created after ``after``."""
    while data_time(now()) <= after:
        if emu.stop.wait(0.1):
            return
    while True:  # a state file broken for a moment delays the scheduled backup, never drops it
        try:
            with emu.edit() as state:
                _, entry = find_app(state, app)
                schedule = (entry.get("backup_schedules") or [None])[0]
                if schedule is None:
                    return
                _, _, addon = postgres_addon(state, str(schedule["addon_id"]))
                transfer = new_transfer(state, addon, now(), schedule=schedule)
                entry.setdefault("transfers", []).append(transfer)
                duration = timing(state, "backup_seconds") / 2
                interval = max(0.05, timing(state, "backup_progress_interval"))
            break
        except ApiError:
            return  # the app or its database is gone
        except (OSError, ValueError) as exc:
            sys.stderr.write(
                f"scheduled backup: cannot update the state file ({type(exc).__name__})\n"
            )
            if emu.stop.wait(0.5):
                return
    _run_capture(emu, app, transfer, addon["database"], duration, interval)


def start_capture(emu: Emulator, ident: str) -> JSONDict:
    """``POST /client/v11/databases/<addon>/backups``: store a running transfer, start it."""
    with emu.edit() as state:
        app, entry, addon = postgres_addon(state, ident)
        database = addon.get("database")
        if not isinstance(database, dict):
            raise ApiError(422, "invalid_params", "This database has no backing database.")
        transfer = new_transfer(state, addon, now())
        entry.setdefault("transfers", []).append(transfer)
        inject = int(entry.get(INJECT_KEY) or 0)
        if inject > 0:
            entry[INJECT_KEY] = inject - 1
        duration = timing(state, "backup_seconds")
        interval = max(0.05, timing(state, "backup_progress_interval"))
    _start(emu, _run_capture, emu, app, transfer, dict(database), duration, interval)
    if inject > 0:
        _start(emu, _scheduled_during, emu, app, str(transfer["created_at"]))
    return transfer_view(transfer)


def resume_unfinished(emu: Emulator) -> list[str]:
    """Run again every capture an earlier emulator left unfinished (stopped or killed mid-way).

    On Heroku a backup runs on Heroku's side and goes on whatever happens to the CLI
    ("the backup will continue running", commands/pg/backups/capture.js); the CLI polls until
    ``finished_at``. A transfer stuck unfinished would make every later poll wait forever, so a
    starting emulator dumps the database again into the same transfer. Returns their uuids.
    """
    resumed: list[tuple[str, JSONDict, JSONDict]] = []
    state = emu.read()
    for app, entry in (state.get("apps") or {}).items():
        for transfer in entry.get("transfers") or []:
            if transfer.get("finished_at") or not transfer.get("file"):
                continue
            try:
                _, _, addon = postgres_addon(state, str(transfer.get("addon_id")))
            except ApiError:
                addon = {}
            database = addon.get("database")
            if isinstance(database, dict):
                resumed.append((app, dict(transfer), dict(database)))
            else:
                _finish(
                    emu, app, str(transfer["uuid"]), succeeded=False,
                    finished_at=data_time(now()), updated_at=data_time(now()),
                    logs=[{"created_at": data_time(now()), "level": "info",
                           "message": "backup failed: the database is gone"}],
                )  # fmt: skip
    duration = timing(state, "backup_seconds")
    interval = max(0.05, timing(state, "backup_progress_interval"))
    for app, transfer, database in resumed:
        _start(emu, _run_capture, emu, app, transfer, database, duration, interval)
    return [str(transfer["uuid"]) for _, transfer, _ in resumed]


def materialize(emu: Emulator, app: str, transfer: JSONDict) -> None:
    """Make the dump file of a seeded scheduled backup from its database, once.

    Done while the ``materialize`` flag is set, whatever file is there: a dump cut short (the
    emulator killed during it) is never mistaken for the backup."""
    path = emu.state_path.parent / str(transfer["file"])
    if not transfer.get("materialize"):
        return
    _, _, addon = postgres_addon(emu.read(), str(transfer.get("addon_id")))
    ok, size, _ = run_pg_dump(emu.pg_dump, addon["database"], path)
    if ok:
        source = database_size(emu.pg_dump, addon["database"])
        _update_transfer(
            emu, app, transfer["uuid"], processed_bytes=size, source_bytes=source or size,
            materialize=False,
        )  # fmt: skip


def materialize_seeded(emu: Emulator) -> None:
    """In the background, make the dumps of the seeded scheduled backups still without one.

    A finished backup on Heroku has its sizes: ``pg:backups`` lists its Size and
    ``pg:backups:info`` its "Original DB Size" (commands/pg/backups/index.js, info.js), which
    read 0.00B until the dump existed. A failed dump is tried again at the URL's first request.
    """
    state = emu.read()
    for app, entry in (state.get("apps") or {}).items():
        pending = [t for t in entry.get("transfers") or [] if t.get("materialize")]
        if pending:
            _start(emu, _materialize_all, emu, app, pending)


def _materialize_all(emu: Emulator, app: str, transfers: list[JSONDict]) -> None:
    for transfer in transfers:
        if emu.stop.is_set():
            return
        try:
            materialize(emu, app, transfer)
        except (OSError, ValueError, ApiError) as exc:  # state broken or db gone: later, by URL
            sys.stderr.write(f"backup {transfer.get('uuid')}: not dumped ({type(exc).__name__})\n")


def serve_backup(emu: Emulator, request: Request) -> Response:
    """``GET /backups/<token>/<file>`` on the HTTPS listener: the dump of a succeeded backup."""
    fault = emu.apply_fault(request.method, request.path)
    if fault is not None:
        return fault
    not_found = Response.json(404, {"id": "not_found", "message": "No such backup."})
    if request.method not in ("GET", "HEAD"):
        return Response.json(405, {"id": "method_not_allowed", "message": "Method not allowed."})
    parts = request.path.split("/")
    if len(parts) != 4 or parts[1] != "backups":
        return not_found
    token, name = parts[2], parts[3]
    for entry in (emu.read().get("apps") or {}).values():
        for transfer in entry.get("transfers") or []:
            stored = str(transfer.get("token") or "")
            if (
                stored
                and hmac.compare_digest(stored.encode(), token.encode())
                and Path(str(transfer.get("file"))).name == name
                and transfer.get("succeeded")
            ):
                path = emu.state_path.parent / str(transfer["file"])
                if path.is_file():
                    return Response(200, content_type="application/octet-stream", file=path)
    return not_found


def log_path(path: str) -> str:
    """The request path as logged: backup tokens are secrets and are masked."""
    if path.startswith("/backups/"):
        parts = path.split("/")
        if len(parts) > 2:
            parts[2] = "***"
        return "/".join(parts)
    return path
