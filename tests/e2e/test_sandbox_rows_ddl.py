"""Issue 13 in the sandbox: a column added on Heroku after the capture was installed.

Row-level capture logs keys, not definitions: a row applied across a definition change could
not be written into the old one. cutover notices (cutover/adapters/pgcapture_ddl.py): catch-up
refuses and says the final sync will copy only that table whole; the window's final sync
replaces orders with its new definition and rows (the view order_totals reading it re-created,
the foreign key of order_items re-created), applies the log to every other table, and
verify-data passes (its schema comparison shows the new definition arrived). The workload
keeps writing throughout.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from test_sandbox_cutover import write_playbook
from test_sandbox_rows import capture_objects, convox_url, heroku, run, said, wait_for
from workload import Workload, references

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def scenario(sandbox: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    work = tmp_path_factory.mktemp("rows-ddl")
    playbook = write_playbook(work, sandbox)
    text = re.sub(
        r"(?m)^database:\n", "database:\n  final_sync: changed-rows\n", playbook.read_text()
    )
    playbook.write_text(text)
    argv_log = work / "argv.jsonl"
    out: dict[str, Any] = {"work": work}
    with Workload(sandbox, interval=0.05) as load:
        out["load"] = load
        out["url"] = url = load.url
        wait_for(lambda: len(load.client.acked) >= 5, "the workload's first writes")
        out["initial"] = run(work, playbook, argv_log, "run", "--yes", "--until", "initial-sync")
        out["catchup"] = run(work, playbook, argv_log, "catch-up")
        heroku(
            url,
            "ALTER TABLE orders ADD COLUMN gift_note text",
            "UPDATE orders SET gift_note = 'wrapped' WHERE id = (SELECT min(id) FROM orders)",
        )
        out["refused"] = run(work, playbook, argv_log, "catch-up")
        out["window"] = run(work, playbook, argv_log, "run", "--yes")
    out["cleanup"] = run(work, playbook, argv_log, "cleanup", "--yes")
    yield out


def test_catch_up_before_the_change_works(scenario: dict[str, Any]) -> None:
    assert scenario["initial"].returncode == 0, said(scenario["initial"])
    assert scenario["catchup"].returncode == 0, said(scenario["catchup"])


def test_catch_up_refuses_after_the_column_was_added_and_names_the_table(
    scenario: dict[str, Any],
) -> None:
    refused = scenario["refused"]
    text = " ".join(said(refused).split())  # the UI wraps long lines
    assert refused.returncode != 0, text
    assert "schema changed" in text
    assert "final sync will copy only the affected tables whole (public.orders)" in text
    assert "Traceback" not in text


def test_the_final_sync_copies_only_orders_whole_and_verifies(
    sandbox: Path, scenario: dict[str, Any]
) -> None:
    window = scenario["window"]
    text = " ".join(said(window).split())
    assert window.returncode == 0, said(window)
    assert "changed-rows: the final sync copies everything" not in text
    assert (
        "changed-rows: Heroku's schema changed since the capture (public.orders: column added "
        "(gift_note)); those 1 table(s) are copied whole, the other " in text
    )
    assert "re-created the view(s) public.order_totals" in text
    state = json.loads((scenario["work"] / ".cutover" / "state.json").read_text())
    outputs = state["steps"]["final-sync"]["outputs"]
    assert outputs["method"] == "changed-rows"
    assert outputs["schema_changed"] == ["public.orders: column added (gift_note)"]
    assert "public.orders" in outputs["whole"]
    assert "public.order_items" not in outputs["whole"]  # from the log
    assert state["steps"]["verify-data"]["status"] == "done"
    with psycopg.connect(convox_url(sandbox), autocommit=True) as conn:
        notes = conn.execute("SELECT gift_note FROM orders WHERE gift_note IS NOT NULL").fetchall()
        leaked = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = '_cutover'").fetchall()
    assert notes == [("wrapped",)]
    assert leaked == []
    load: Workload = scenario["load"]
    acked = {r for _, r in load.app.acked + load.client.acked}
    assert acked and acked <= references(convox_url(sandbox))


def test_cleanup_after_the_fallback_leaves_nothing(scenario: dict[str, Any]) -> None:
    assert scenario["cleanup"].returncode == 0, said(scenario["cleanup"])
    assert capture_objects(scenario["url"]) == []
