"""``make audit``: a whole sandbox cutover, forward and rollback, recorded and scanned.

:func:`audit` starts a sandbox in a fresh temporary folder, runs ``cutover run -f <playbook>
--yes`` then ``cutover rollback -f <playbook> --yes --force`` with the recorder in their
environment (recorder.py), their own TMPDIR, and a webhook (the playbook's ``notify``) served
on 127.0.0.1 whose URL is a secret; then gathers every secret (secretset.py), scans every place
(scan.py) and stops the sandbox. :func:`examine` is the scan alone, for a run made elsewhere
(tests/e2e/test_sandbox_cutover.py reuses its module's run).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cutover
from cutover.sandbox import heroku_api, manager
from cutover.sandbox.audit import recorder, scan, secretset

WEBHOOK_VAR = "CUTOVER_AUDIT_WEBHOOK"
TLS_KEY_VAR = "CUTOVER_AUDIT_TLS_KEY"
# Config values the playbook leaves behind (env.exclude NEW_RELIC_*, the HEROKU_ rule): they must
# not reach Convox, nor any place, either (as tests/e2e/test_sandbox_cutover.py's EXTRA_VARS).
EXTRA_CONFIG = {
    "NEW_RELIC_LICENSE_KEY": "nrl-" + secrets.token_hex(16),
    "HEROKU_POSTGRESQL_ONYX_URL": f"postgres://x:{secrets.token_urlsafe(12)}@10.0.0.9:5432/d",
}
RUN_TIMEOUT = 1200.0


@dataclass
class Run:
    """What a recorded run left: its playbook (state folder beside it), the recorder's folder,
    its TMPDIR (None: not a private one), and the terminal output of each command."""

    playbook: Path
    record_dir: Path
    tmp: Path | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    codes: dict[str, int] = field(default_factory=dict)


@dataclass
class Report:
    leaks: list[scan.Leak]
    places: int
    uses: dict[str, dict[str, set[str]]]
    warnings: list[str]
    excluded: list[str]
    notes: list[str]
    failed: bool = False  # a command of the run failed: the audit covered less than a run

    def summary(self) -> str:
        return f"audit: {len(self.leaks)} leaks in {self.places} places checked"

    def lines(self) -> list[str]:
        out = list(self.notes)
        out.append(
            "excluded (the fixture, the secrets' legitimate home): " + ", ".join(self.excluded)
        )
        out.append("secrets in children's environments (allowed: the house rule's channel):")
        for tool, names in sorted(self.uses.items()):
            per = ", ".join(f"{n} (${'/$'.join(sorted(v))})" for n, v in sorted(names.items()))
            out.append(f"  {tool}: {per}")
        out.extend(self.warnings)
        out.extend(str(leak) for leak in self.leaks)
        out.append(self.summary())
        return out


def examine(sandbox: Path, run: Run, extra: dict[str, str] | None = None) -> Report:
    """Scan a finished run (the sandbox still up: some secrets are created during the run)."""
    secret_list, public = secretset.gather(sandbox, extra)
    record = recorder.load(run.record_dir / recorder.RECORD_FILE)
    found = scan.Scan()
    scan.scan_children(found, record, secret_list)
    for name, text in run.outputs.items():
        found.check(
            f"terminal output of {name}", text.encode(errors="surrogateescape"), secret_list
        )
    state_dir = run.playbook.parent / ".cutover"
    roots = {"state folder": state_dir, "playbook folder": run.playbook.parent}
    if run.tmp is not None:
        roots["temp folder"] = run.tmp
    cutover_pids = {c.pid for c in record.children if scan.is_cutover(c)}
    written = [p for p, pid in record.written.items() if pid in cutover_pids]
    skip = [sandbox, run.record_dir]
    scan.scan_files(found, roots=roots, written=written, skip=skip, secrets=secret_list)
    # Inside the fixture, but written by cutover's children: the heroku CLI's HOME (its cache,
    # its error.log with the argv of failed commands; heroku_api/env.py prepare_home).
    home = {"heroku CLI home": sandbox / "heroku" / "home"}
    scan.scan_files(found, roots=home, written=[], skip=[], secrets=secret_list)
    scan.check_modes(found, [state_dir, *([run.tmp] if run.tmp else [])])
    uses = scan.env_uses(record, secret_list)
    starts = [c for c in record.children if c.event == "start"]
    # The processes of the app the rack runs (the sample app and worker) get its env by design.
    app_tools = {c.tool for c in record.children if c.tool.startswith("cutover.sandbox.sample")}
    notes = [
        f"secrets: {len(secret_list)} values scanned for (public config values not: "
        f"{', '.join(sorted(public))})",
        f"recorded: {len(record.children)} process starts, {len(starts)} of them hooked "
        f"Python processes ({sum(1 for c in starts if not scan.is_cutover(c))} beside cutover), "
        f"{len(written)} files written by cutover",
    ]
    excluded = (
        [f"{sandbox}/{p.name}" for p in sorted(sandbox.iterdir())] if sandbox.exists() else []
    )
    return Report(
        found.leaks,
        len(found.places),
        uses,
        scan.env_warnings(uses, app_tools),
        excluded,
        notes,
    )


def playbook_text(sandbox: Path) -> str:
    """The demo playbook (playbooks/sandbox.yml) for ``sandbox``, with a webhook to notify and
    the sandbox's certificate for the name imported (``tls.mode: import``, its private key in
    :data:`TLS_KEY_VAR`) instead of http01, so that a private key goes through the run."""
    source = Path(cutover.__file__).resolve().parent.parent / "playbooks" / "sandbox.yml"
    lines = []
    for line in source.read_text(encoding="utf-8").splitlines():
        if line.startswith("sandbox:"):
            lines.append(f"sandbox: {sandbox}")
        elif line.startswith("  source:"):
            lines.append(f"  source: {sandbox / 'app'}")
        elif line.startswith("  mode: http01"):
            lines.append("  mode: import")
            lines.append(f"  cert: {sandbox / 'ca' / 'server.pem'}")
            lines.append(f"  key_env: {TLS_KEY_VAR}")
        elif not line.startswith("  accept_gap:"):
            lines.append(line)
    lines += ["", "notify:", f"  webhook_env: {WEBHOOK_VAR}"]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def webhook() -> Iterator[str]:
    """A webhook on 127.0.0.1 answering 200 to every POST; yields its (secret) URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks/{secrets.token_urlsafe(24)}"
    finally:
        server.shutdown()
        server.server_close()


def command(run: Run, env: dict[str, str], name: str, *args: str) -> int:
    proc = subprocess.run(
        [sys.executable, "-m", "cutover", *args, "-f", str(run.playbook), "--yes"],
        cwd=run.playbook.parent,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    run.outputs[name] = proc.stdout + proc.stderr
    run.codes[name] = proc.returncode
    return proc.returncode


def audit(work: Path | None = None, rows: int = 400, say: Callable[[str], None] = print) -> Report:
    """The whole audit; the sandbox is always stopped and the work folder removed after."""
    own = work is None
    work = Path(tempfile.mkdtemp(prefix="cutover-audit-")) if work is None else work
    # Not under the 0700 work folder: PostgreSQL runs as the postgres user (tests/e2e/conftest.py).
    sandbox = Path(tempfile.mkdtemp(prefix="cutover-audit-sandbox-"))
    try:
        say(f"sandbox up in {sandbox}")
        manager.up(sandbox, rows=rows, say=lambda m: None)
        with heroku_api.update_state(sandbox / "heroku" / "state.json") as state:
            state["apps"][manager.HEROKU_APP]["config_vars"].update(EXTRA_CONFIG)
        folder = work / "run"
        folder.mkdir(mode=0o700)
        run = Run(folder / "cutover.yml", work / "record", work / "tmp")
        run.playbook.write_text(playbook_text(sandbox))
        assert run.tmp is not None
        run.tmp.mkdir(mode=0o700)
        state_dir = run.playbook.parent / ".cutover"
        with webhook() as url, scan.ModeWatcher([state_dir, run.tmp]) as watcher:
            env = {**os.environ, **recorder.harness_env(run.record_dir)}
            env.update({"TMPDIR": str(run.tmp), WEBHOOK_VAR: url, "COLUMNS": "120"})
            env[TLS_KEY_VAR] = (sandbox / "ca" / "server-key.pem").read_text(encoding="utf-8")
            say("cutover run (recorded)")
            if command(run, env, "cutover run", "run") == 0:
                say("cutover rollback (recorded)")
                command(run, env, "cutover rollback", "rollback", "--force")
        report = examine(sandbox, run, {"webhook URL": url})
        # Paths gone by the end (dumps, lists, the key file): their modes as last seen.
        gone = watcher.gone()
        report.leaks += watcher.leaks(gone)
        report.places += len(gone)
        report.notes.append(
            f"modes watched during the run: {len(watcher.modes)} paths, {len(gone)} gone by the end"
        )
        for name, code in run.codes.items():
            if code != 0:
                report.failed = True
                report.notes.append(f"FAILED: {name} exited {code}:")
                report.notes.extend("  " + line for line in run.outputs[name].splitlines()[-15:])
        if "cutover rollback" not in run.codes:
            report.failed = True
            report.notes.append("FAILED: the rollback did not run")
        return report
    finally:
        with contextlib.suppress(Exception):
            manager.down(sandbox, say=lambda m: None)
        shutil.rmtree(sandbox, ignore_errors=True)
        if own:
            shutil.rmtree(work, ignore_errors=True)
