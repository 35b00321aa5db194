"""Hostile input (issue 15, "Found already"): each case drives the real CLI as a user would and
checks what they see: the exit code, a message naming the file and field, no traceback, and
the state folder left as it was."""

from __future__ import annotations

import json
import os
import resource
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from cutover.engine.audit import EVENTS_FILE, AuditLog
from cutover.engine.lock import LOCK_FILE, RunLock
from cutover.errors import EXIT_INVALID, EXIT_LOCKED, InvalidInput
from cutover.fsutil import StateFolderError
from cutover.playbook import load_playbook
from cutover.playbook_yaml import MAX_PLAYBOOK_BYTES
from cutover.secrets import SecretMasker
from cutover.steps.manifests import load_manifest
from cutover.translate.shell import MAX_COMMAND_BYTES, convert_command
from cutover.translate.sources import MAX_SOURCE_BYTES

MINIMAL = "heroku: {app: myapp}\nconvox: {app: myapp}\n"


def cutover(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "cutover", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def refused(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    """The run was refused as invalid input, without a traceback; returns its output."""
    out = result.stdout + result.stderr
    assert result.returncode == EXIT_INVALID, out
    assert "Traceback" not in out, out
    assert "unexpected error" not in out, out
    for needle in needles:
        assert needle in out, (needle, out)
    return out


def playbook(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cutover.yml"
    path.write_text(text)
    return path


# 1. Duplicate keys (PyYAML keeps the last one silently).


def test_duplicate_top_level_block_is_refused_naming_key_and_line(tmp_path: Path) -> None:
    path = playbook(
        tmp_path,
        "heroku: {app: myapp}\nconvox:\n  app: myapp\n  rack: prod\nconvox:\n  app: myapp\n",
    )
    refused(cutover("status", "-f", str(path), cwd=tmp_path), str(path), "'convox'", "line 5")
    assert not (tmp_path / ".cutover" / "state.json").exists()


def test_duplicate_nested_key_is_refused(tmp_path: Path) -> None:
    path = playbook(
        tmp_path,
        MINIMAL + "dns:\n  zone: example.com\n  record: www.example.com\n"
        "  record: api.example.com\n",
    )
    refused(cutover("status", "-f", str(path), cwd=tmp_path), str(path), "'record'", "line 5")


def test_merge_key_overridden_explicitly_is_no_duplicate(tmp_path: Path) -> None:
    path = playbook(
        tmp_path, "heroku: &h {app: myapp}\nconvox:\n  <<: *h\n  app: other\n  rack: prod\n"
    )
    result = cutover("status", "-f", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    model = load_playbook(path).model
    assert (model.convox.app, model.convox.rack) == ("other", "prod")


# 2. Strict types and ranges.


def test_version_true_is_refused(tmp_path: Path) -> None:
    path = playbook(tmp_path, "version: true\n" + MINIMAL)
    refused(cutover("status", "-f", str(path), cwd=tmp_path), str(path), "version")


@pytest.mark.parametrize("server", ["127.0.0.1:99999", "127.0.0.1:0", "[::1]:65536"])
def test_dns_server_port_out_of_range_is_refused(tmp_path: Path, server: str) -> None:
    path = playbook(
        tmp_path,
        MINIMAL + "dns:\n  provider: rfc2136\n  zone: example.com\n  record: www.example.com\n"
        f"  server: '{server}'\n",
    )
    refused(cutover("status", "-f", str(path), cwd=tmp_path), str(path), "dns.server", "65535")


def test_dns_nameserver_port_out_of_range_is_refused(tmp_path: Path) -> None:
    path = playbook(
        tmp_path,
        MINIMAL + "dns:\n  zone: example.com\n  record: www.example.com\n"
        "  nameservers: ['ns1.example.com:70000']\n",
    )
    refused(cutover("status", "-f", str(path), cwd=tmp_path), str(path), "dns.nameservers")


# 3. Deep nesting: RecursionError is invalid input naming the file, not a crash.


def test_deeply_nested_playbook_is_invalid_input(tmp_path: Path) -> None:
    path = playbook(tmp_path, MINIMAL + "timers: " + "[" * 100_000 + "\n")
    refused(cutover("status", "-f", str(path), cwd=tmp_path), str(path), "nested too deeply")


def test_deeply_nested_app_json_is_invalid_input(tmp_path: Path) -> None:
    (tmp_path / "Procfile").write_text("web: ./server\n")
    (tmp_path / "app.json").write_text('{"env": ' + "[" * 50_000 + "]" * 50_000 + "}")
    result = cutover("translate", str(tmp_path), "-o", str(tmp_path / "convox.yml"), cwd=tmp_path)
    refused(result, "app.json", "nested too deeply")
    assert not (tmp_path / "convox.yml").exists()


# 4. Size and name limits.


def test_playbook_over_the_limit_is_refused_at_once(tmp_path: Path) -> None:
    path = playbook(tmp_path, MINIMAL + "# " + "x" * MAX_PLAYBOOK_BYTES + "\n")
    out = refused(cutover("status", "-f", str(path), cwd=tmp_path), str(path))
    assert str(MAX_PLAYBOOK_BYTES) in out


def test_playbook_at_the_limit_loads(tmp_path: Path) -> None:
    pad = MAX_PLAYBOOK_BYTES - len(MINIMAL) - 3
    path = playbook(tmp_path, MINIMAL + "# " + "x" * pad + "\n")
    assert path.stat().st_size == MAX_PLAYBOOK_BYTES
    result = cutover("status", "-f", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "name", ["a" * 100_000, "ab", "My-App", "1app", "app_name", "a" * 31, "app\nx"]
)
def test_bad_heroku_app_name_is_refused(tmp_path: Path, name: str) -> None:
    path = playbook(tmp_path, f"heroku: {{app: {json.dumps(name)}}}\nconvox: {{app: myapp}}\n")
    out = refused(cutover("status", "-f", str(path), cwd=tmp_path), str(path), "heroku.app")
    assert len(out) < 5000  # a 100 kB name is not echoed back


@pytest.mark.parametrize("name", ["abc", "my-app-2", "a" * 30])
def test_good_heroku_app_names_load(tmp_path: Path, name: str) -> None:
    path = playbook(tmp_path, f"heroku: {{app: {name}}}\nconvox: {{app: myapp}}\n")
    result = cutover("status", "-f", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_overlong_convox_app_name_is_refused(tmp_path: Path) -> None:
    path = playbook(tmp_path, "heroku: {app: myapp}\nconvox: {app: " + "a" * 64 + "}\n")
    refused(cutover("status", "-f", str(path), cwd=tmp_path), str(path), "convox.app", "63")


# 5. A state folder that cannot be written: a clear message naming it, no traceback.


def _no_file_writes() -> None:
    """In the child: every write that grows a file fails with EFBIG, as on a full disk
    (setrlimit(2) RLIMIT_FSIZE; SIGXFSZ ignored so the write returns the error)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))


def test_full_state_folder_is_a_clear_error(tmp_path: Path) -> None:
    path = playbook(tmp_path, MINIMAL)
    result = subprocess.run(
        [sys.executable, "-m", "cutover", "run", "-f", str(path), "--yes"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
        preexec_fn=_no_file_writes,
        check=False,
    )
    out = result.stdout + result.stderr
    assert result.returncode not in (0, EXIT_INVALID), out
    assert "Traceback" not in out and "unexpected error" not in out, out
    assert f"state folder {tmp_path / '.cutover'}" in out, out
    assert "File too large" in out, out
    assert not (tmp_path / ".cutover" / "state.json").exists()


def test_state_folder_that_is_a_file_is_a_clear_error(tmp_path: Path) -> None:
    path = playbook(tmp_path, MINIMAL)
    (tmp_path / ".cutover").write_text("not a folder\n")
    result = cutover("run", "-f", str(path), "--yes", cwd=tmp_path)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "Traceback" not in out and "unexpected error" not in out, out
    assert f"state folder {tmp_path / '.cutover'}" in out, out
    assert (tmp_path / ".cutover").read_text() == "not a folder\n"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder anyway")
def test_read_only_state_folder_is_a_clear_error(tmp_path: Path) -> None:
    path = playbook(tmp_path, MINIMAL)
    folder = tmp_path / ".cutover"
    folder.mkdir(mode=0o500)
    try:
        result = cutover("run", "-f", str(path), "--yes", cwd=tmp_path)
    finally:
        folder.chmod(0o700)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "Traceback" not in out and "unexpected error" not in out, out
    assert f"state folder {folder}" in out, out


def test_event_log_write_failure_names_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / ".cutover"
    folder.mkdir()
    (folder / EVENTS_FILE).mkdir()  # open(2) for writing fails with EISDIR
    with pytest.raises(StateFolderError, match=str(folder)):
        AuditLog(folder, SecretMasker()).event("probe")


# 6. Existing lock and event files of a wider mode are made 0600 when opened.


def test_existing_lock_file_0644_is_made_0600(tmp_path: Path) -> None:
    folder = tmp_path / ".cutover"
    folder.mkdir(mode=0o700)
    (folder / LOCK_FILE).write_text("")
    (folder / LOCK_FILE).chmod(0o644)
    with RunLock(folder, "cutover run"):
        assert stat.S_IMODE((folder / LOCK_FILE).stat().st_mode) == 0o600


def test_existing_event_log_0644_is_made_0600(tmp_path: Path) -> None:
    folder = tmp_path / ".cutover"
    folder.mkdir(mode=0o700)
    (folder / EVENTS_FILE).write_text('{"kind": "earlier"}\n')
    (folder / EVENTS_FILE).chmod(0o644)
    AuditLog(folder, SecretMasker()).event("probe")
    assert stat.S_IMODE((folder / EVENTS_FILE).stat().st_mode) == 0o600
    kinds = [json.loads(line)["kind"] for line in (folder / EVENTS_FILE).read_text().splitlines()]
    assert kinds == ["earlier", "probe"]


# 7. unlock --force never clears a lock whose holder is alive on this host.

HOLD = """
import sys, time
from pathlib import Path
from cutover.engine.lock import RunLock
RunLock(Path(sys.argv[1]), "cutover run").acquire()
print("locked", flush=True)
time.sleep(120)
"""


def test_unlock_force_refuses_a_live_holder_on_this_host(tmp_path: Path) -> None:
    path = playbook(tmp_path, MINIMAL)
    folder = tmp_path / ".cutover"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        before = (folder / LOCK_FILE).read_bytes()
        result = cutover("unlock", "--force", "-f", str(path), cwd=tmp_path)
        out = result.stdout + result.stderr
        assert result.returncode == EXIT_LOCKED, out
        assert "Traceback" not in out, out
        assert f"pid {holder.pid}" in out and "alive on this host" in out, out
        assert (folder / LOCK_FILE).read_bytes() == before  # the lock is still there
        second = cutover("run", "-f", str(path), "--yes", cwd=tmp_path)
        assert second.returncode == EXIT_LOCKED, second.stdout + second.stderr
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    # Once the holder is dead, --force (and plain unlock) clear it as before.
    cleared = cutover("unlock", "--force", "-f", str(path), cwd=tmp_path)
    assert cleared.returncode == 0, cleared.stdout + cleared.stderr
    assert "lock cleared" in cleared.stdout + cleared.stderr
    assert not (folder / LOCK_FILE).exists()


def test_unlock_force_still_clears_another_hosts_lock(tmp_path: Path) -> None:
    path = playbook(tmp_path, MINIMAL)
    folder = tmp_path / ".cutover"
    folder.mkdir(mode=0o700)
    record = {"pid": 1, "host": "elsewhere.invalid", "user": "x", "since": "t", "command": "run"}
    (folder / LOCK_FILE).write_text(json.dumps(record))
    plain = cutover("unlock", "-f", str(path), cwd=tmp_path)
    assert plain.returncode == EXIT_LOCKED, plain.stdout + plain.stderr
    forced = cutover("unlock", "--force", "-f", str(path), cwd=tmp_path)
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert not (folder / LOCK_FILE).exists()


# 8. Procfile lines and source files: bounded, so translate's time is bounded.


def test_procfile_line_longer_than_one_exec_argument_is_refused(tmp_path: Path) -> None:
    (tmp_path / "Procfile").write_text("web: ./server " + "a" * MAX_COMMAND_BYTES + "\n")
    result = cutover("translate", str(tmp_path), "-o", str(tmp_path / "convox.yml"), cwd=tmp_path)
    refused(result, "Procfile", "web", str(MAX_COMMAND_BYTES))
    assert not (tmp_path / "convox.yml").exists()


def test_huge_procfile_is_refused_at_once(tmp_path: Path) -> None:
    (tmp_path / "Procfile").write_text("web: ./server\n" + "# padding\n" * 200_000)
    result = cutover("translate", str(tmp_path), "-o", str(tmp_path / "convox.yml"), cwd=tmp_path)
    refused(result, "Procfile", str(MAX_SOURCE_BYTES))


def test_command_at_the_limit_is_still_translated() -> None:
    command = "./server " + "a" * (MAX_COMMAND_BYTES - len("./server "))
    converted = convert_command(command, port=5000, subject="web", where="Procfile", line=1)
    assert converted.command == command


# The same loader where cutover reads convox.yml and a playbook's timers.


def test_duplicate_key_in_convox_yml_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "convox.yml"
    path.write_text("services:\n  web:\n    port: 3000\n    port: 4000\n")
    with pytest.raises(InvalidInput, match=r"convox\.yml:4: .*duplicate key 'port'"):
        load_manifest(path)


def test_deeply_nested_convox_yml_is_invalid_input(tmp_path: Path) -> None:
    path = tmp_path / "convox.yml"
    path.write_text("services: " + "[" * 100_000 + "\n")
    with pytest.raises(InvalidInput, match="nested too deeply"):
        load_manifest(path)


def test_translate_refuses_a_playbook_with_duplicate_timers(tmp_path: Path) -> None:
    (tmp_path / "Procfile").write_text("web: ./server\n")
    timers = "timers:\n  - {name: a, schedule: '0 * * * *', command: ./a}\n"
    playbook(tmp_path, MINIMAL + timers + timers)
    result = cutover("translate", str(tmp_path), "-o", str(tmp_path / "convox.yml"), cwd=tmp_path)
    refused(result, "cutover.yml", "duplicate key 'timers'")
