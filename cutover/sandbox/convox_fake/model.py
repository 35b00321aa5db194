"""The rack's data model: which rack a command talks to, apps, releases, builds, env.

Facts: ``pkg/rack`` ``Current`` (RACK_URL, ``--rack``, CONVOX_RACK, ``./.convox/rack``, the
settings' ``rack``/``current`` files; a name matches exactly, else as a unique substring),
``pkg/structs/environment.go`` (env ``Load``/``String``), ``pkg/common`` (``EnvDiff``),
``provider/k8s/release.go`` (``ReleaseCreate`` forks the latest release).
"""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from cutover.sandbox.convox_fake.output import CliError, now_iso
from cutover.sandbox.convox_fake.store import Json

NO_RACK = "no current rack, use `convox racks` to list and `convox switch <name>` to select"
RESERVED_APPS = ("rack", "system")


def _random_letters(count: int) -> str:
    return "".join(random.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(count))


def new_release_id() -> str:
    return "R" + _random_letters(10)


def new_build_id() -> str:
    return "B" + _random_letters(10)


def _strip_userinfo(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}".rstrip("/")


def match_rack(racks: Sequence[Json], name: str) -> Json:
    """Exact name, else a unique substring (§5)."""
    for rack in racks:
        if rack.get("name") == name:
            return rack
    found = [r for r in racks if name in str(r.get("name", ""))]
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise CliError(f"ambiguous rack name: {name}")
    raise CliError(f"could not find rack: {name}")


def select_rack(
    state: Json, *, flag: str, environ: Mapping[str, str], cwd: Path, folder: Path
) -> tuple[str, Json]:
    """``rack.Current``: RACK_URL, --rack, CONVOX_RACK, ./.convox/rack, settings (§5)."""
    racks: list[Json] = state["racks"]
    url = environ.get("RACK_URL", "").strip()
    if url:
        wanted = _strip_userinfo(url)
        for rack in racks:
            if rack.get("url") and _strip_userinfo(str(rack["url"])) == wanted:
                return "direct", rack
        host = urlsplit(url).hostname or url
        raise CliError(f'Get "{wanted}/system": dial tcp: lookup {host}: no such host')
    name = flag or environ.get("CONVOX_RACK", "")
    if not name:
        for path in (cwd / ".convox" / "rack", folder / "rack"):
            with contextlib.suppress(OSError):
                name = path.read_text(encoding="utf-8").strip()
            if name:
                break
    if name:
        rack = match_rack(racks, name)
        return str(rack["name"]), rack
    try:
        current = json.loads((folder / "current").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CliError(NO_RACK) from None
    except (OSError, json.JSONDecodeError):
        current = {}
    kind = str(current.get("type", "")) if isinstance(current, dict) else ""
    if kind not in ("terraform", "console", "test", "local"):
        raise CliError(f"unknown rack type: {kind}")
    cname = str(current.get("name", ""))
    for rack in racks:
        if rack.get("name") == cname:
            return cname, rack
    raise CliError(f"could not find rack: {cname}")


def rack_domain(rack: Json) -> str:
    domain = str(rack.get("domain", ""))
    return domain.removeprefix("router.")


# --- apps, releases, builds -------------------------------------------------------------------


def get_app(rack: Json, name: str) -> Json:
    app = rack.setdefault("apps", {}).get(name)
    if app is None:
        raise CliError(f"app not found: {name}")
    assert isinstance(app, dict)
    return app


def find_release(app: Json, release_id: str) -> Json:
    for release in app["releases"]:
        if release["id"] == release_id:
            assert isinstance(release, dict)
            return release
    raise CliError(f"release not found: {release_id}")


def find_build(app: Json, build_id: str) -> Json:
    for build in app["builds"]:
        if build["id"] == build_id:
            assert isinstance(build, dict)
            return build
    raise CliError(f"build not found: {build_id}")


def latest_release(app: Json) -> Json | None:
    releases: list[Json] = app["releases"]
    return releases[-1] if releases else None


def env_load(text: str) -> dict[str, str]:
    """``Environment.Load``: one KEY=VALUE per line, key trimmed, lines without = skipped."""
    env: dict[str, str] = {}
    for line in text.split("\n"):
        key, eq, value = line.partition("=")
        if eq:
            env[key.strip()] = value
    return env


def env_string(env: Mapping[str, str]) -> str:
    """``Environment.String``: lines sorted as whole strings, joined by newlines."""
    return "\n".join(sorted(f"{k}={v}" for k, v in env.items()))


def env_diff(old: Mapping[str, str], new: Mapping[str, str]) -> str:
    """``common.EnvDiff``: ``add:K change:K remove:K``."""
    parts = [f"add:{k}" for k in sorted(new) if k not in old]
    parts += [f"change:{k}" for k in sorted(new) if k in old and old[k] != new[k]]
    parts += [f"remove:{k}" for k in sorted(old) if k not in new]
    return " ".join(parts)


def app_env(app: Json, release_id: str = "") -> dict[str, str]:
    """The env of ``release_id``, else of the *latest* release (§8)."""
    if release_id:
        return env_load(find_release(app, release_id)["env"])
    latest = latest_release(app)
    return env_load(latest["env"]) if latest else {}


def create_release(
    app: Json, env: str, *, build: str | None = None, parent: str = "", description: str = ""
) -> Json:
    """A new release forking ``parent`` (default: the latest release) (§8)."""
    base = find_release(app, parent) if parent else latest_release(app)
    release = {
        "id": new_release_id(),
        "build": build if build is not None else (base["build"] if base else ""),
        "env": env,
        "description": description,
        "created": now_iso(),
    }
    app["releases"].append(release)
    return release


def rack_by_name(state: Json, name: str) -> Json:
    """The rack named exactly ``name`` (rack-side jobs know their rack)."""
    for rack in state["racks"]:
        if rack.get("name") == name:
            assert isinstance(rack, dict)
            return rack
    raise CliError(f"could not find rack: {name}")
