"""``make bench``: cutover's data path against plain PostgreSQL tools, in the same go.

It starts a sandbox seeded with ``--rows`` (default 60000: about 500k rows in all), prepares the
Convox app (``cutover run --until deploy``), then measures, alternating runs so both see the
same machine:

* sync: cutover's initial-sync step (capture through the API emulator, HTTPS download with
  checks, pg_restore --list, restore through ``convox resources proxy``) against a baseline of
  ``pg_dump -Fc`` straight into ``pg_restore`` on the two clusters, same flags, no proxy;
* verify: cutover's verify-data step against the same checksum query run by psql straight on
  both clusters (the difference is the heroku CLI, the proxy and the runner);
* memory: the peak resident size cutover adds while it moves the dump, against the dump's size
  (the download streams, so this stays far below 1).

Results are printed as ratios, never asserted: the numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from cutover.adapters.postgres import TABLES_SQL, fingerprint_sql
from cutover.engine.audit import NullAudit
from cutover.engine.context import build_context
from cutover.engine.plan import new_state
from cutover.playbook import load_playbook
from cutover.sandbox import convox_fake, manager, pgcluster
from cutover.secrets import SecretMasker
from cutover.state import StateStore
from cutover.steps.data import InitialSync
from cutover.steps.verify import VerifyData
from cutover.ui import Ui

REPO = Path(__file__).resolve().parent.parent


def _playbook(folder: Path, sandbox: Path) -> Path:
    text = (REPO / "playbooks" / "sandbox.yml").read_text(encoding="utf-8")
    text = text.replace("sandbox: ../.sandbox", f"sandbox: {sandbox}")
    text = text.replace("source: ../.sandbox/app", f"source: {sandbox / 'app'}")
    path = folder / "cutover.yml"
    path.write_text(text, encoding="utf-8")
    return path


def _baseline_sync(sandbox: Path, work: Path) -> float:
    src = pgcluster.load(sandbox / "pg-heroku.json")
    dst = pgcluster.load(sandbox / "pg-convox.json")
    owner = convox_fake.read_state(sandbox / "convox")["resource_backends"]["postgres"]
    dump = work / "baseline.dump"
    started = time.perf_counter()
    subprocess.run(
        ["pg_dump", "-Fc", "--no-owner", "--no-acl", "-f", str(dump)],
        env=pgcluster.client_env(src.libpq_env(manager.SOURCE_DB)),
        check=True,
    )
    subprocess.run(
        [
            "pg_restore",
            "--clean",
            "--if-exists",
            "--no-acl",
            "--no-owner",
            "--exit-on-error",
            "--jobs",
            "2",
            "--dbname",
            manager.TARGET_DB,
            str(dump),
        ],
        env=pgcluster.client_env(
            dst.libpq_env(manager.TARGET_DB, owner["user"], owner["password"])
        ),
        check=True,
    )
    elapsed = time.perf_counter() - started
    dump.unlink()
    return elapsed


def _baseline_verify(sandbox: Path) -> float:
    """The same checksum query, by psql straight on both clusters (no CLI, no proxy)."""
    envs = [
        pgcluster.client_env(
            pgcluster.load(sandbox / "pg-heroku.json").libpq_env(manager.SOURCE_DB)
        ),
        pgcluster.client_env(
            pgcluster.load(sandbox / "pg-convox.json").libpq_env(manager.TARGET_DB)
        ),
    ]
    started = time.perf_counter()
    for env in envs:
        tables = subprocess.run(
            ["psql", "-XAt", "-f", "-"],
            input=TABLES_SQL,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
        subprocess.run(
            ["psql", "-XAt", "-f", "-"],
            input=fingerprint_sql(tables, True),
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
    return time.perf_counter() - started


def _median(runs: int, fn: Callable[[], float]) -> float:
    return statistics.median(fn() for _ in range(runs))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cutover.bench", description=__doc__)
    parser.add_argument("--rows", type=int, default=60000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    console = Console()
    sandbox = Path(tempfile.mkdtemp(prefix="cutover-bench-"))
    work = Path(tempfile.mkdtemp(prefix="cutover-bench-run-"))
    try:
        console.print(f"starting a sandbox with {args.rows} rows per seed unit ...")
        manager.up(sandbox, rows=args.rows, say=lambda m: None)
        playbook_path = _playbook(work, sandbox)
        prep = subprocess.run(
            [sys.executable, "-m", "cutover", "run", "-f", str(playbook_path), "--until", "deploy"],
            capture_output=True,
            text=True,
            check=False,
        )
        if prep.returncode != 0:
            console.print(prep.stdout + prep.stderr)
            return 1
        playbook = load_playbook(playbook_path)
        masker = SecretMasker()
        state = StateStore(playbook.state_dir).load() or new_state(playbook)
        ui = Ui(Console(quiet=True), masker)
        ctx = build_context(playbook, state, masker=masker, audit=NullAudit(), reporter=ui)
        sizes: list[int] = []
        rss_growth: list[int] = []

        def cutover_sync() -> float:
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            started = time.perf_counter()
            outputs = InitialSync().apply(ctx)
            elapsed = time.perf_counter() - started
            sizes.append(outputs.bytes)
            rss_growth.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
            return elapsed

        def cutover_verify() -> float:
            started = time.perf_counter()
            VerifyData().apply(ctx)
            return time.perf_counter() - started

        cutover_sync()  # warm-up: the first restore creates the schema
        sync_c, sync_b, ver_c, ver_b = [], [], [], []
        for _ in range(args.runs):
            sync_c.append(cutover_sync())
            sync_b.append(_baseline_sync(sandbox, work))
            ver_c.append(cutover_verify())
            ver_b.append(_baseline_verify(sandbox))
        dump_mb = max(sizes) / 1e6
        growth_mb = max(rss_growth) * 1024 / 1e6
        results = {
            "rows_seed": args.rows,
            "dump_mb": round(dump_mb, 1),
            "sync_seconds": {
                "cutover": round(statistics.median(sync_c), 2),
                "baseline": round(statistics.median(sync_b), 2),
            },
            "sync_ratio": round(statistics.median(sync_c) / statistics.median(sync_b), 2),
            "verify_seconds": {
                "cutover": round(statistics.median(ver_c), 2),
                "baseline": round(statistics.median(ver_b), 2),
            },
            "verify_ratio": round(statistics.median(ver_c) / statistics.median(ver_b), 2),
            "peak_rss_growth_mb": round(growth_mb, 1),
            "memory_ratio_to_dump": round(growth_mb / dump_mb, 3) if dump_mb else None,
        }
        console.print(f"dump {dump_mb:.1f} MB, median of {args.runs} runs each:")
        console.print(
            f"  sync    cutover {results['sync_seconds']['cutover']}s vs pg_dump|"
            f"pg_restore {results['sync_seconds']['baseline']}s  -> "
            f"{results['sync_ratio']}x"
        )
        console.print(
            f"  verify  cutover {results['verify_seconds']['cutover']}s vs the same "
            f"checksum query by psql on both clusters "
            f"{results['verify_seconds']['baseline']}s -> {results['verify_ratio']}x"
        )
        console.print(
            f"  memory  peak RSS +{growth_mb:.1f} MB moving a {dump_mb:.1f} MB dump "
            f"-> {results['memory_ratio_to_dump']}x of the dump"
        )
        print(json.dumps(results))
        return 0
    finally:
        manager.down(sandbox, say=lambda m: None)
        shutil.rmtree(sandbox, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
