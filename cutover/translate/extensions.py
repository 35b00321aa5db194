"""PostgreSQL extensions an app needs that Convox's ``postgres`` image does not have.

Convox's in-cluster ``postgres`` resource runs the ``postgres:VERSION`` library image; its
``postgis`` resource type runs ``postgis/postgis:VERSION`` (default ``10-3.2``), and every
containerised resource accepts an ``image:`` instead (convox provider/k8s/release.go, the resource
image table; provider/k8s/template/resource/postgis.yml.tmpl: ``{{ if not .Image }}
postgis/postgis:{{ coalesce (index .Parameters "version") "10-3.2" }}{{ else }}{{ .Image }}``;
pkg/manifest/resource.go: ``IsContainerizedResource`` lists postgis). A dump holding
``CREATE EXTENSION postgis`` or ``vector`` stops pg_restore on the plain image.

Evidence is read from what the app ships: Rails ``db/schema.rb`` (``enable_extension``),
``db/structure.sql`` (``CREATE EXTENSION``), ``config/database.yml`` (``adapter: postgis``),
the Gemfile (activerecord-postgis-adapter, neighbor, pgvector), Python requirements (pgvector,
geoalchemy2), Django settings (``django.contrib.gis.db.backends.postgis``), package.json
(pgvector), and app.json's ``postgis://`` DATABASE_URL; with ``--heroku-app`` also from the live
database's ``pg_extension``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

__all__ = [
    "IMAGE_ONLY",
    "POSTGIS",
    "VECTOR",
    "detect_extensions",
    "postgis_version",
    "ssl_required",
]

POSTGIS: Final = frozenset(
    {
        "postgis",
        "postgis_topology",
        "postgis_raster",
        "postgis_tiger_geocoder",
        "address_standardizer",
    }
)
VECTOR: Final = "vector"
# Extensions neither postgres:N nor postgis/postgis:N ship (they need an image of your own).
IMAGE_ONLY: Final = frozenset(
    {"timescaledb", "pg_cron", "pgrouting", "h3", "pg_partman", "pgaudit"}
)

# (file glob under the app root, pattern, extension)
_EVIDENCE: Final[tuple[tuple[str, re.Pattern[str], str], ...]] = (
    ("Gemfile", re.compile(r"""^\s*gem\s+["']activerecord-postgis-adapter["']""", re.M), "postgis"),
    ("Gemfile", re.compile(r"""^\s*gem\s+["'](neighbor|pgvector)["']""", re.M), VECTOR),
    ("config/database.yml", re.compile(r"^\s*adapter:\s*postgis\b", re.M), "postgis"),
    ("db/schema.rb", re.compile(r"""enable_extension\s+["']([a-z0-9_]+)["']"""), ""),
    ("db/structure.sql", re.compile(r"CREATE EXTENSION IF NOT EXISTS\s+\"?([a-z0-9_]+)", re.I), ""),
    ("requirements*.txt", re.compile(r"^\s*pgvector\b", re.M | re.I), VECTOR),
    ("requirements*.txt", re.compile(r"^\s*geoalchemy2\b", re.M | re.I), "postgis"),
    ("Pipfile", re.compile(r"^\s*pgvector\s*=", re.M | re.I), VECTOR),
    ("pyproject.toml", re.compile(r"""["']?pgvector\b"""), VECTOR),
    ("*/settings*.py", re.compile(r"django\.contrib\.gis\.db\.backends\.postgis"), "postgis"),
    ("*/settings/*.py", re.compile(r"django\.contrib\.gis\.db\.backends\.postgis"), "postgis"),
    ("package.json", re.compile(r'"pgvector"\s*:'), VECTOR),
    ("app.json", re.compile(r'"postgis://'), "postgis"),
)


def detect_extensions(root: Path) -> list[tuple[str, str]]:
    """``(extension, evidence)`` for every extension that needs more than ``postgres:N``."""
    found: dict[str, str] = {}
    for pattern, regex, extension in _EVIDENCE:
        for path in sorted(root.glob(pattern)):
            if not path.is_file():
                continue
            text = path.read_text(encoding="utf-8", errors="replace")
            for match in regex.finditer(text):
                name = extension or match.group(1).lower()
                if name in POSTGIS or name == VECTOR or name in IMAGE_ONLY:
                    found.setdefault(name, str(path.relative_to(root)))
    return sorted(found.items())


def postgis_version(major: str) -> str:
    """The ``postgis/postgis`` tag for a PostgreSQL major: ``16`` -> ``16-3.4`` (PostGIS 3.4 is
    built for PostgreSQL 12-16; 17 has 3.5). Older majors keep Convox's 3.2 line."""
    try:
        number = int(major.split(".", maxsplit=1)[0])
    except ValueError:
        return f"{major}-3.4"
    if number >= 17:
        return f"{number}-3.5"
    if number >= 12:
        return f"{number}-3.4"
    return f"{number}-3.2"


# Heroku Postgres only accepts TLS connections, so apps often force it; Convox's in-cluster
# postgres/postgis images run without TLS (the library image's default), and a client that
# requires it fails with "server does not support SSL, but SSL was required".
_SSL_EVIDENCE: Final[tuple[tuple[str, re.Pattern[str]], ...]] = (
    ("*/settings*.py", re.compile(r"ssl_require\s*=\s*True")),
    ("*/settings/*.py", re.compile(r"ssl_require\s*=\s*True")),
    ("config/database.yml", re.compile(r"^\s*sslmode:\s*(require|verify-ca|verify-full)", re.M)),
    ("*.js", re.compile(r"rejectUnauthorized\s*:\s*false")),
    ("src/**/*.ts", re.compile(r"rejectUnauthorized\s*:\s*false")),
    ("app.json", re.compile(r"sslmode=require")),
)


def ssl_required(root: Path) -> str | None:
    """The file that makes the app require TLS to its database, if any."""
    for pattern, regex in _SSL_EVIDENCE:
        for path in sorted(root.glob(pattern)):
            if path.is_file() and regex.search(path.read_text(encoding="utf-8", errors="replace")):
                return str(path.relative_to(root))
    return None
