"""The sandbox side of ``make bench`` (cutover/bench/harness.py): the playbook variants, the two
databases as loaded, the reference data, and ``convox resources proxy`` for the baselines."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import yaml
from rich.console import Console

from cutover.bench import baselines, reference
from cutover.bench.baselines import BaselineError, Endpoint
from cutover.engine.audit import NullAudit
from cutover.engine.context import build_context
from cutover.engine.plan import new_state
from cutover.errors import CutoverError
from cutover.playbook import load_playbook
from cutover.sandbox import convox_fake, heroku_api, manager, pgcluster
from cutover.secrets import SecretMasker
from cutover.state import StateStore
from cutover.ui import Ui

REPO = Path(__file__).resolve().parent.parent.parent
# The convox stand-in's rack delays that only the (untimed) preparation meets: building and
# rolling out the app, the resource's start-up, the certificate (convox_fake/store.py
# DEFAULT_TIMINGS: 1 + 4 + 3 + 8 + 2 s). The CLI's poll interval and `convox run`'s wait stay as
# the stand-in models them: a figure may meet those.
SETUP_TIMINGS = {
    "build_created": 0.1,
    "build_running": 0.1,
    "rollout": 0.1,
    "resource_start": 0.1,
    "certificate": 0.1,
}


def write_playbook(
    folder: Path, sandbox: Path, method: str, final_sync: str, attachment: str | None = None
) -> Path:
    """The sandbox playbook (playbooks/sandbox.yml) pointed at ``sandbox``, with the method and
    final-sync mode set (and, for issue 13's half-size round, ``database.heroku_attachment``).
    Every variant lives in ``folder``: one state folder for all."""
    data = yaml.safe_load((REPO / "playbooks" / "sandbox.yml").read_text(encoding="utf-8"))
    data["sandbox"] = str(sandbox)
    data["convox"]["source"] = str(sandbox / "app")
    data["database"]["method"] = method
    data["database"]["final_sync"] = final_sync
    suffix = ""
    if attachment is not None:
        data["database"]["heroku_attachment"] = attachment
        suffix = f"-{attachment.lower()}"
    path = folder / f"cutover-{method}-{final_sync}{suffix}.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


@contextlib.contextmanager
def rack_proxy(playbook: Path) -> Iterator[int]:
    """``convox resources proxy`` to the playbook's database resource, run as cutover runs it
    (ConvoxAdapter.proxy: a free local port, probed; stopped at the end); yields the port. The
    baselines restore through it, as the guide's restore and cutover's own sync do."""
    masker = SecretMasker()
    book = load_playbook(playbook)
    state = StateStore(book.state_dir, masker).load() or new_state(book)
    ui = Ui(Console(stderr=True, highlight=False), masker)
    ctx = build_context(book, state, masker=masker, audit=NullAudit(), reporter=ui)
    assert book.model.database is not None  # the sandbox playbook has one
    with ctx.convox.proxy(book.model.database.resource, speaks="postgres") as port:
        yield port


def source_endpoint(sandbox: Path) -> Endpoint:
    """The "Heroku Postgres" database and its (non-superuser) role, from the emulator's state."""
    state = heroku_api.load_state(sandbox / "heroku" / "state.json")
    for addon in state["apps"][manager.HEROKU_APP].get("addons", []):
        db = addon.get("database")
        if isinstance(db, dict):
            cluster = pgcluster.load(sandbox / "pg-heroku.json")
            return Endpoint(cluster, str(db["database"]), str(db["user"]), str(db["password"]))
    raise CutoverError("the sandbox's Heroku app has no backing database")


def target_endpoint(sandbox: Path) -> Endpoint:
    """The Convox resource's database and role (created by the stand-in at the first promote)."""
    backend = convox_fake.read_state(sandbox / "convox")["resource_backends"]["postgres"]
    cluster = pgcluster.load(sandbox / "pg-convox.json")
    return Endpoint(cluster, str(backend["dbname"]), str(backend["user"]), str(backend["password"]))


def load_reference(source: Endpoint, ref: reference.Reference) -> float:
    """Load the reference data as the source role; returns the database's size in MB."""
    proc = subprocess.run(
        reference.pgbench_argv(pgcluster.pg_bindir(), ref),
        env=source.env(),
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        raise BaselineError(f"pgbench -i: {proc.stderr.decode(errors='replace')[-300:]}")
    baselines.run_sql(source, reference.events_sql(ref))
    size = baselines.run_sql(source, "SELECT pg_database_size(current_database())")
    return int(size.strip()) / 1e6
