"""The half-size reference of issue 13's per-GB figures (cutover/bench/rows.py): its own database
on the "Heroku" cluster, attached to the sandbox's Heroku app as a second Postgres add-on, so that
its round runs the same cutover steps as the reference's, with a playbook whose
``database.heroku_attachment`` names it (``heroku pg:credentials:url HEROKU_POSTGRESQL_HALF``
answers with its URL, as Heroku does for a non-primary database).

The attachment lives only while the bench's rounds run: :func:`detach` removes the add-on and
its config var before the window (cutover/bench/window.py) runs the rest of the cutover, so
the app's config is the one the preparation copied to Convox.
"""

from __future__ import annotations

from pathlib import Path

from cutover.bench import baselines
from cutover.bench.baselines import Endpoint
from cutover.sandbox import heroku_api, manager

HALF_DB = "bench_half"  # the half-size reference, on the source cluster
COLOR = "HALF"
ATTACHMENT = f"HEROKU_POSTGRESQL_{COLOR}"  # what add_postgres_attachment names it


def half_database(source: Endpoint) -> Endpoint:
    """An empty database :data:`HALF_DB` on the source's cluster, owned by the source's role
    (made by the cluster's superuser, as the sandbox made the "Heroku" one)."""
    cluster = source.cluster
    admin = Endpoint(cluster, "postgres", cluster.superuser, cluster.password)
    baselines.run_sql(admin, f'DROP DATABASE IF EXISTS "{HALF_DB}" WITH (FORCE)')
    owner = source.user.replace('"', '""')
    baselines.run_sql(admin, f'CREATE DATABASE "{HALF_DB}" OWNER "{owner}"')
    return source.other(HALF_DB)


def _state_path(sandbox: Path) -> Path:
    return sandbox / "heroku" / "state.json"


def attach(sandbox: Path, half: Endpoint) -> str:
    """Attach ``half`` to the sandbox's Heroku app (the primary database's host and role, the
    half-size database); returns the attachment name for ``database.heroku_attachment``."""
    with heroku_api.update_state(_state_path(sandbox)) as state:
        primary = next(
            addon["database"]
            for addon in state["apps"][manager.HEROKU_APP].get("addons", [])
            if isinstance(addon.get("database"), dict)
        )
        db: dict[str, str | int] = {**primary, "database": half.dbname}
        return heroku_api.add_postgres_attachment(state, manager.HEROKU_APP, db=db, color=COLOR)


def detach(sandbox: Path, attachment: str) -> None:
    """Remove the add-on :func:`attach` made and its config var (the release it made stays, as
    in Heroku's history)."""
    with heroku_api.update_state(_state_path(sandbox)) as state:
        entry = state["apps"][manager.HEROKU_APP]
        entry["addons"] = [
            addon
            for addon in entry.get("addons", [])
            if not any(att.get("name") == attachment for att in addon.get("attachments") or [])
        ]
        entry.get("config_vars", {}).pop(f"{attachment}_URL", None)
