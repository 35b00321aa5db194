"""The entry point of every fake: log the call, run the fault and kill hooks, run the tool."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable

from fakes.world import (
    configured_delay,
    exit_when_orphaned,
    fired_hooks,
    kill_parent,
    record_call,
    register_process,
    stdin_state,
)


def _fail(tool: str, args: list[str]) -> int:
    """The tool's real error text for a failing call."""
    if tool == "heroku":
        from fakes import heroku  # noqa: PLC0415 - import only the tool that runs (speed)

        return heroku.internal_server_error()
    if tool == "convox":
        from fakes import convox  # noqa: PLC0415

        progress = sys.stderr if "--id" in args else sys.stdout
        progress.write(convox.failure_prefix(args))
        progress.flush()
        sys.stderr.write("ERROR: err1\n")
        return 1
    if tool == "psql":
        sys.stderr.write(
            "psql: error: server closed the connection unexpectedly\n\tThis probably "
            "means the server terminated abnormally\n"
        )
        return 2
    sys.stderr.write(
        f"{tool}: error: could not execute query: ERROR:  canceling statement due "
        "to statement timeout\n"
    )
    return 1


def _tool_main(tool: str) -> tuple[Callable[[list[str], str | None], int], bool]:
    args = sys.argv[1:]
    # Imported lazily: a fake pays only for its own module (each call is a new process).
    if tool == "heroku":
        from fakes import heroku  # noqa: PLC0415

        return (lambda a, _stdin: heroku.main(a)), heroku.reads_stdin(args)
    if tool == "convox":
        from fakes import convox  # noqa: PLC0415

        return convox.main, convox.reads_stdin(args)
    from fakes import postgres  # noqa: PLC0415

    if tool == "psql":
        return postgres.psql, postgres.reads_stdin(tool, args)
    if tool == "pg_restore":
        return (lambda a, _stdin: postgres.pg_restore(a)), False
    if tool == "pg_dump":
        return (lambda a, _stdin: postgres.pg_dump(a)), False
    raise SystemExit(f"fake: unknown tool {tool}")


def main(tool: str) -> int:
    # Like the real CLIs: Ctrl-C and SIGTERM end the process (no Python traceback).
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    args = sys.argv[1:]
    run, reads = _tool_main(tool)
    stdin = sys.stdin.read() if reads else None
    index = record_call(tool, args, stdin, "data" if reads else stdin_state())
    fail, kill = fired_hooks(tool, args, index)
    if fail == "hang":
        register_process("hang", tool, args)
        exit_when_orphaned()
        return 0
    if fail is not None:
        return _fail(tool, args)
    if kill == "before":
        kill_parent(tool, args, "before", index)
        return 137
    time.sleep(configured_delay(tool, args))
    code = run(args, stdin)
    sys.stdout.flush()
    sys.stderr.flush()
    if kill == "after":
        kill_parent(tool, args, "after", index)
    return code
