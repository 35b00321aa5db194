"""Filters for B's copies and comparisons: which ``pg_restore --list`` lines and which pg_dump
plain-format headers are objects of the change capture (cutover/adapters/pgcapture.py), so the
initial sync never carries them to Convox and verify-data ignores them. No database."""

from __future__ import annotations

import re

from cutover.adapters.pgcapture_sql import CAPTURE_SCHEMA, TRIGGER_PREFIX


def is_capture_toc_line(line: str) -> bool:
    """Whether a ``pg_restore --list`` line is an object of the capture.

    Line format (pg_backup_archiver.c PrintTOCSummary, PostgreSQL 15):
    ``<dumpId>; <tableoid> <oid> <desc> <namespace> <tag> <owner>``, where desc is one or more
    upper-case words (``TABLE DATA``, ``SEQUENCE SET``), namespace is ``-`` for objects outside
    a schema, and a trigger's tag is ``<table> <trigger>``."""
    text = line.strip()
    if not text or text.startswith(";") or ";" not in text:
        return False
    words = text.split(";", 1)[1].split()[2:]  # after the dump id, tableoid and oid
    at = 0
    while at < len(words) and re.fullmatch(r"[A-Z]+", words[at]):
        at += 1
    desc, rest = words[:at], words[at:]
    if not rest:
        return False
    namespace, tag = rest[0], rest[1:]
    if namespace == CAPTURE_SCHEMA:
        return True
    if namespace == "-" and (tag[:1] == [CAPTURE_SCHEMA] or tag[:2] == ["SCHEMA", CAPTURE_SCHEMA]):
        return True
    return desc == ["TRIGGER"] and any(w.startswith(TRIGGER_PREFIX) for w in tag[1:])


def is_capture_schema_header(name: str, type_: str, schema: str) -> bool:
    """Whether a pg_dump plain-format header (``-- Name: X; Type: T; Schema: S``, see
    cutover/adapters/pgschema.py) is an object of the capture."""
    if schema == CAPTURE_SCHEMA or (type_ == "SCHEMA" and name == CAPTURE_SCHEMA):
        return True
    return type_ == "TRIGGER" and name.rsplit(" ", maxsplit=1)[-1].startswith(TRIGGER_PREFIX)
