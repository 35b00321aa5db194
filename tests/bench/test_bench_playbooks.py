"""The playbook variants the bench drives cutover with (cutover/bench/harness.py): the sandbox
playbook with only the sandbox paths, database.method and database.final_sync changed, all in
one folder so that they share one state folder."""

from __future__ import annotations

from pathlib import Path

import yaml

from cutover.bench.sandboxside import REPO, write_playbook
from cutover.playbook import load_playbook


def test_variants_differ_only_in_method_and_final_sync(tmp_path: Path) -> None:
    sandbox = tmp_path / "sandbox"
    direct = write_playbook(tmp_path, sandbox, "direct", "full")
    changed = write_playbook(tmp_path, sandbox, "in-rack", "changed-tables")
    a, b = load_playbook(direct), load_playbook(changed)
    assert a.model.database is not None
    assert b.model.database is not None
    assert (a.model.database.method, a.model.database.final_sync) == ("direct", "full")
    assert (b.model.database.method, b.model.database.final_sync) == ("in-rack", "changed-tables")
    assert a.state_dir == b.state_dir == tmp_path / ".cutover"
    assert a.resolve(a.model.sandbox or "") == sandbox
    original = yaml.safe_load((REPO / "playbooks" / "sandbox.yml").read_text(encoding="utf-8"))
    written = yaml.safe_load(direct.read_text(encoding="utf-8"))
    for key in ("heroku", "env", "smoke", "dns", "window"):
        assert written[key] == original[key]
    assert written["database"] == {**original["database"], "method": "direct", "final_sync": "full"}
    assert written["convox"] == {**original["convox"], "source": str(sandbox / "app")}


def test_the_half_size_variant_names_its_own_heroku_attachment(tmp_path: Path) -> None:
    sandbox = tmp_path / "sandbox"
    ref = write_playbook(tmp_path, sandbox, "direct", "changed-rows")
    half = write_playbook(tmp_path, sandbox, "direct", "changed-rows", "HEROKU_POSTGRESQL_HALF")
    assert half != ref
    a, b = load_playbook(ref), load_playbook(half)
    assert a.model.database is not None and b.model.database is not None
    assert a.model.database.heroku_attachment == "DATABASE"
    assert b.model.database.heroku_attachment == "HEROKU_POSTGRESQL_HALF"
    assert b.model.database.final_sync == "changed-rows"
    assert a.state_dir == b.state_dir  # one run, as every variant
