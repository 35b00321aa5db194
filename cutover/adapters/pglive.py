"""The Convox database going live and coming back (switch-dns and its rollback).

Built on the guard marker of :mod:`cutover.adapters.pgstaging` (the database COMMENT):

* :func:`mark_live_after_sync` (switch-dns, before the DNS change) writes
  ``cutover:live <now> writes=<N> synced=<time>``, carrying the write count and time of the
  ``cutover:synced`` marker it replaces. pgstaging's guard reads the ``cutover:live`` prefix
  (its marker pattern ignores what follows the count), so every sync still refuses it;
* :func:`writes_since_sync` (rollback, before DNS goes back) compares the statistics' write
  counter with that count: writes on Convox since the final sync would be lost by a rollback;
* :func:`unmark_live` (rollback, after DNS is back) puts the synced marker back, with its
  original count, so the next final sync's guard still sees any write Convox took meanwhile.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cutover.adapters.pgstaging import (
    MARKER_LIVE,
    MARKER_SYNCED,
    mark,
    now_iso,
    read_marker,
    write_count,
)
from cutover.adapters.postgres import ConnInfo, PostgresAdapter

_LIVE = re.compile(r"^cutover:live (\S+)(?: writes=(\d+))?(?: synced=(\S+))?")


@dataclass(frozen=True)
class LiveMarker:
    at: str
    writes: int | None  # the count when the final sync ended (None: an older live marker)
    synced_at: str | None


def read_live(pg: PostgresAdapter, conn: ConnInfo) -> tuple[LiveMarker | None, str]:
    """(the live marker or None, the raw comment)."""
    _, _, comment = read_marker(pg, conn)
    match = _LIVE.match(comment)
    if not match:
        return None, comment
    writes = int(match.group(2)) if match.group(2) else None
    return LiveMarker(match.group(1), writes, match.group(3)), comment


def mark_live_after_sync(pg: PostgresAdapter, conn: ConnInfo) -> str:
    """Mark ``conn.dbname`` live, keeping the synced marker's count and time (a database
    already live keeps its marker: a resumed switch-dns must not lose the count)."""
    _, marker, comment = read_marker(pg, conn)
    if marker is not None and marker.kind == "live":
        return comment
    text = f"{MARKER_LIVE} {now_iso()}"
    if marker is not None and marker.kind == "synced" and marker.writes is not None:
        text += f" writes={marker.writes} synced={marker.at}"
    mark(pg, conn, conn.dbname, text)
    return text


def writes_since_sync(pg: PostgresAdapter, conn: ConnInfo) -> tuple[int | None, str]:
    """(row writes since the final sync, None when they cannot be told; what was found)."""
    exists, marker, comment = read_marker(pg, conn)
    db = conn.dbname
    if not exists:
        return None, f"the Convox database {db} does not exist"
    live, _ = read_live(pg, conn)
    if live is not None:
        base, when = live.writes, live.synced_at or "?"
    elif marker is not None and marker.kind == "synced":
        base, when = marker.writes, marker.at
    else:
        return None, f"the Convox database {db} has no cutover sync marker (comment {comment!r})"
    if base is None:
        return None, (
            f"the Convox database {db}'s marker '{comment}' holds no write count of the final "
            "sync (written by an older cutover)"
        )
    now = write_count(pg, conn)
    if now < base:
        # Counters only grow unless reset (pg_stat_reset, crash recovery) or tables dropped.
        return None, (
            f"the Convox database {db}'s statistics were reset or tables dropped since the "
            f"final sync ({now} row writes now, {base} when the sync ended at {when})"
        )
    return now - base, (
        f"the Convox database {db} has taken {now - base} row write(s) since the final sync "
        f"({now} now, {base} when the sync ended at {when})"
    )


def unmark_live(pg: PostgresAdapter, conn: ConnInfo) -> str | None:
    """Put back the synced marker a live one replaced (its original count and time); the new
    comment, or None when the database is not marked live. A live marker without a count
    (older cutover) becomes a synced marker with the count of now."""
    live, _ = read_live(pg, conn)
    if live is None:
        return None
    if live.writes is not None:
        text = f"{MARKER_SYNCED} {live.synced_at or live.at} writes={live.writes}"
    else:
        text = f"{MARKER_SYNCED} {now_iso()} writes={write_count(pg, conn)}"
    mark(pg, conn, conn.dbname, text)
    return text
