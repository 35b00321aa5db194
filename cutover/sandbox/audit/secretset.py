"""Every secret value a sandbox holds, named, with the forms a tool might write it in.

Gathered from the sandbox's own files, the secrets' legitimate homes (the scan leaves the
sandbox folder out), after the run (the convox stand-in creates resource passwords during it):

* every Heroku config value that may be secret (cutover/secrets.py ``is_public_config``: the
  same rule cutover's masker uses; the public ones, e.g. ``RAILS_ENV=production``, are named,
  not scanned for), the sandbox's extra ones included, and the password inside each URL value;
* the Heroku API key, backup tokens, the Heroku Postgres password (heroku/state.json);
* both PostgreSQL clusters' superuser passwords (pg-*.json), the MariaDB servers' admin
  passwords (mysql/*/box.json), the ClearDB URL (mysql/cleardb.json);
* the convox rack's resource backends and resources (convox/state.json): every ``password``
  field and URL password (Postgres, MySQL, Redis);
* the TSIG secret (env.json), and ``CUTOVER_AUDIT_*`` values the harness adds (the webhook URL);
* the TLS private keys (ca/*key*.pem): the whole PEM and each of its base64 lines.

Forms (:func:`forms`): the raw value, URL-encoded (``quote``/``quote_plus``) and base64, the
ways a URL builder, a form post or an ``Authorization: Basic`` header would write it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus, urlsplit

from cutover.sandbox import heroku_api
from cutover.sandbox.names import HEROKU_APP
from cutover.secrets import is_public_config

MIN_LENGTH = 6  # shorter values match by chance (and no sandbox secret is that short)
SECRET_KEYS = {"password", "admin_password", "api_key", "key_secret", "token", "secret"}


@dataclass(frozen=True)
class Secret:
    name: str
    value: str

    def forms(self) -> list[str]:
        return forms(self.value)


def forms(value: str) -> list[str]:
    """The raw value and the encodings a tool might write it in (distinct, in this order)."""
    out = [value, quote(value, safe=""), quote_plus(value)]
    out.append(base64.b64encode(value.encode()).decode().rstrip("="))
    return list(dict.fromkeys(f for f in out if len(f) >= MIN_LENGTH))


def _url_password(value: str) -> str | None:
    if "://" not in value:
        return None
    try:
        return urlsplit(value).password
    except ValueError:
        return None


def _walk(data: Any, where: str) -> Iterator[tuple[str, str]]:
    """(name, value) for every secret-named field and URL password inside a JSON document."""
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(value, str) and str(key) in SECRET_KEYS:
                yield f"{where}.{key}", value
            else:
                yield from _walk(value, f"{where}.{key}")
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from _walk(value, f"{where}[{i}]")
    elif isinstance(data, str):
        password = _url_password(data)
        if password:
            yield f"{where} (URL password)", password


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def pem_lines(text: str) -> list[str]:
    """A PEM private key's base64 body lines."""
    return [line for line in text.splitlines() if line and not line.startswith("-----")]


def gather(sandbox: Path, extra: dict[str, str] | None = None) -> tuple[list[Secret], list[str]]:
    """The sandbox's secrets (deduplicated by value, first name kept) and the names of the
    config values that are public and so not scanned for."""
    found: dict[str, str] = {}  # value -> name

    def add(name: str, value: str | None) -> None:
        if value and len(value) >= MIN_LENGTH and value not in found:
            found[value] = name

    heroku = heroku_api.load_state(sandbox / "heroku" / "state.json")
    public: list[str] = []
    config = heroku["apps"][HEROKU_APP]["config_vars"]
    for key, value in config.items():
        if is_public_config(key, str(value)):
            public.append(str(key))
            continue
        add(f"heroku config {key}", str(value))
        add(f"heroku config {key} (URL password)", _url_password(str(value)))
    for name, value in _walk(heroku, "heroku"):
        add(name, value)
    documents = ["env.json", "pg-heroku.json", "pg-convox.json"]
    for pattern in ("convox/**/*.json", "mysql/**/*.json"):  # the rack's state, the MariaDBs
        documents += [str(p.relative_to(sandbox)) for p in sorted(sandbox.glob(pattern))]
    for rel in documents:
        for name, value in _walk(_json(sandbox / rel), rel):
            add(name, value)
    for key_file in sorted((sandbox / "ca").glob("*key*.pem")):
        text = key_file.read_text(encoding="utf-8")
        add(f"TLS key ca/{key_file.name}", text.strip())
        for n, line in enumerate(pem_lines(text), 1):
            add(f"TLS key ca/{key_file.name} line {n}", line)
    for name, value in (extra or {}).items():
        add(name, value)
    return [Secret(name, value) for value, name in found.items()], public
