"""A restore into the staging database, tried again when its connection was lost (issue 15).

The backup method restores the downloaded dump with ``pg_restore`` through ``convox resources
proxy``. When the proxy's websocket to the rack drops mid-copy, the real proxy closes the local
connection without a word and keeps running (stdsdk stream_helper.go ``copyFromWS``; see
cutover/sandbox/convox_fake/faults.py), and ``pg_restore`` fails with libpq's text for a lost
server. A careful operator would simply restore again, and that is safe here: the restore
writes only ``<db>__cutover_next``, which is dropped and created fresh before each attempt, and
``<db>`` is untouched until the swap. So that failure, and only that one (an error of the data
or the schema is not retried), is tried again, ``ATTEMPTS`` times in all, with tenacity.

The download of the backup (a plain GET of a public URL into a fresh ``.part`` file,
cutover/adapters/http.py) is tried again the same way when it failed with a 5xx answer or a
transport error (a reset, refusal or timeout): :func:`download_retrying`.

Not covered: the ``direct`` and ``in-rack`` methods (their copies stop with the error and the
step resumes on the next ``cutover run``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from cutover.errors import CommandError, CutoverError

if TYPE_CHECKING:
    from cutover.adapters.postgres import ConnInfo
    from cutover.steps.base import Context

T = TypeVar("T")
ATTEMPTS = 3
# libpq's messages for a server connection that went away (src/interfaces/libpq fe-misc.c,
# fe-secure.c, fe-connect.c), as pg_restore prints them after "pg_restore: error:".
CONNECTION_LOST = (
    "server closed the connection unexpectedly",
    "could not receive data from server",
    "could not send data to server",
    "ssl syscall error: eof detected",
    "no connection to the server",
    "lost synchronization with server",
)
# "connection to server at ... failed: <reason>" is also how libpq reports a wrong password or
# a missing database: only the network reasons count as a lost connection.
_RECONNECT_FAILED = re.compile(
    r"connection to server at .*failed: (connection refused|server closed the connection"
    r"|could not receive data|connection timed out|no route to host)"
)


def connection_lost(error: BaseException) -> bool:
    """A failed command whose stderr says its server connection was lost, or a timeout-free
    network failure of the same kind; never a data or schema error."""
    if not isinstance(error, CommandError) or error.timed_out:
        return False
    text = error.stderr_tail.lower()
    return any(marker in text for marker in CONNECTION_LOST) or bool(_RECONNECT_FAILED.search(text))


# cutover/adapters/http.py's messages: "HTTP <status> from <url>" for an answer that is not
# 200, "downloading the backup failed: <httpx error>" for a transport error.
_DOWNLOAD_5XX = re.compile(r"^downloading the backup failed: HTTP 5\d\d ")
_DOWNLOAD_NET = re.compile(
    r"^downloading the backup failed: (?!HTTP \d)"
    r".*(disconnected|reset|refused|timed out|timeout|broken pipe|eof)",
    re.IGNORECASE,
)


def download_failed_transiently(error: BaseException) -> bool:
    if not isinstance(error, CutoverError) or isinstance(error, CommandError):
        return False
    text = error.brief
    return bool(_DOWNLOAD_5XX.search(text) or _DOWNLOAD_NET.search(text))


def download_retrying(ctx: Context, url: str, dest: Path) -> tuple[int, str]:
    """``ctx.http.download(url, dest)``, tried again (``ATTEMPTS`` in all) after a 5xx or a
    transport error; each attempt writes a fresh partial file."""

    def again(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        ctx.note(f"{exc}; downloading again (attempt {state.attempt_number + 1} of {ATTEMPTS})")

    return _retrying(ctx, download_failed_transiently, again)(ctx.http.download, url, dest)


def restore_retrying(ctx: Context, staging: ConnInfo, restore: Callable[[], T]) -> T:
    """Run ``restore`` (into ``staging``); when its connection was lost, recreate ``staging``
    empty and run it again, up to ``ATTEMPTS`` times in all."""
    from cutover.adapters import pgstaging  # noqa: PLC0415 - adapters load when a step runs

    main = replace(staging, dbname=staging.dbname.removesuffix(pgstaging.NEXT_SUFFIX))

    def again(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        reason = exc.stderr_tail.strip().splitlines()[-1] if isinstance(exc, CommandError) else ""
        ctx.note(
            f"the restore lost its connection ({ctx.masker.mask(reason)}); recreating "
            f"{staging.dbname} and restoring again (attempt {state.attempt_number + 1} of "
            f"{ATTEMPTS}); {main.dbname} is untouched"
        )
        pgstaging.create_staging(ctx.postgres, main)

    return _retrying(ctx, connection_lost, again)(restore)


def _retrying(
    ctx: Context,
    transient: Callable[[BaseException], bool],
    again: Callable[[RetryCallState], None],
) -> Retrying:
    """ATTEMPTS tries, 1 to 8 s apart, on the runner's sleep (tests make it instant)."""
    return Retrying(
        retry=retry_if_exception(transient),
        stop=stop_after_attempt(ATTEMPTS),
        wait=wait_exponential(min=1, max=8),
        sleep=ctx.runner._sleep,
        before_sleep=again,
        reraise=True,
    )
