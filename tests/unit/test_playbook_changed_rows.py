"""database.final_sync: changed-rows in the playbook (issue 13)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cutover.errors import InvalidInput
from cutover.playbook import load_playbook

BASE = """
heroku: {{app: myapp}}
convox: {{app: myapp}}
database:
  final_sync: {value}
"""


def write(tmp_path: Path, value: str, extra: str = "") -> Path:
    path = tmp_path / "cutover.yml"
    path.write_text(BASE.format(value=value) + extra, encoding="utf-8")
    return path


def test_changed_rows_is_accepted_with_the_default_batch(tmp_path: Path) -> None:
    db = load_playbook(write(tmp_path, "changed-rows")).model.database
    assert db is not None
    assert db.final_sync == "changed-rows"
    assert db.catchup_batch_keys == 50_000


def test_the_batch_size_can_be_set(tmp_path: Path) -> None:
    db = load_playbook(
        write(tmp_path, "changed-rows", "  catchup_batch_keys: 500\n")
    ).model.database
    assert db is not None and db.catchup_batch_keys == 500


def test_a_bad_value_names_the_field(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as info:
        load_playbook(write(tmp_path, "changed-row"))
    text = f"{info.value.brief} {info.value.details or ''}"
    assert "database.final_sync" in text
    assert "changed-rows" in text  # the accepted values are named


def test_a_zero_batch_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as info:
        load_playbook(write(tmp_path, "changed-rows", "  catchup_batch_keys: 0\n"))
    assert "database.catchup_batch_keys" in f"{info.value.brief} {info.value.details or ''}"
