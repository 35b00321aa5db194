"""The audit's parts (cutover/sandbox/audit/) without a sandbox: the recorder really records
children started every way Python can, and the scan finds every form of a secret and every
wrong mode, naming the secret, never its value."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

from cutover.sandbox.audit import recorder, scan
from cutover.sandbox.audit.harness import Report
from cutover.sandbox.audit.secretset import Secret, forms, pem_lines

CHILD = """
import os, subprocess, sys
import sh
subprocess.run(["/bin/true", "popen-arg"], env={"A_VAR": "popen-env"}, check=True)
sh.Command("/bin/true")("sh-arg", _env={"B_VAR": "sh-env"})
pid = os.posix_spawn("/bin/true", ["/bin/true", "spawn-arg"], {"C_VAR": "spawn-env"})
os.waitpid(pid, 0)
subprocess.run([sys.executable, "-c", "pass", "grandchild-arg"], check=True)
with open(sys.argv[1], "w") as f:
    f.write("x")
"""


def recorded(tmp_path: Path) -> recorder.Record:
    env = {**os.environ, **recorder.harness_env(tmp_path / "record")}
    target = tmp_path / "out.txt"
    subprocess.run([sys.executable, "-c", CHILD, str(target)], env=env, check=True, timeout=60)
    return recorder.load(tmp_path / "record" / recorder.RECORD_FILE)


def test_the_recorder_sees_children_started_every_way(tmp_path: Path) -> None:
    record = recorded(tmp_path)
    by_arg = {c.argv[-1]: c for c in record.children if c.event != "start"}
    assert by_arg["popen-arg"].env == {"A_VAR": "popen-env"}
    assert by_arg["popen-arg"].event == "subprocess.Popen"
    # sh forks, then calls os.execve in the child: the hook came along with the fork.
    assert by_arg["sh-arg"].event == "os.exec"
    assert by_arg["sh-arg"].env["B_VAR"] == "sh-env"
    assert by_arg["spawn-arg"].event == "os.posix_spawn"
    assert by_arg["spawn-arg"].env == {"C_VAR": "spawn-env"}
    # A Python grandchild records itself as it was started (its own `start`).
    starts = [c for c in record.children if c.event == "start"]
    assert any(c.argv[-1] == "grandchild-arg" for c in starts)
    assert (tmp_path / "out.txt") in record.written
    mode = (tmp_path / "record" / recorder.RECORD_FILE).stat().st_mode & 0o777
    assert mode == 0o600


def test_the_recorder_is_off_without_its_variable(tmp_path: Path) -> None:
    env = {**os.environ, **recorder.harness_env(tmp_path / "record")}
    env.pop(recorder.RECORD_VAR)
    subprocess.run([sys.executable, "-c", "import subprocess; subprocess.run(['true'])"],
                   env=env, check=True, timeout=60)  # fmt: skip
    assert recorder.load(tmp_path / "record" / recorder.RECORD_FILE).children == []


def test_every_form_of_a_secret_is_found_by_name() -> None:
    secret = Secret("db password", "p@ss/w0rd+x")
    for form in (secret.value, quote(secret.value, safe=""), "p%40ss%2Fw0rd%2Bx"):
        found = scan.Scan()
        found.check("a place", f"url=postgres://u:{form}@h/d".encode(), [secret])
        assert [str(leak) for leak in found.leaks] == ["leak: db password in a place"]
    b64 = base64.b64encode(b"p@ss/w0rd+x").decode()
    found = scan.Scan()
    found.check("header", f"Authorization: Basic {b64}".encode(), [secret])
    found.check("clean", b"nothing here", [secret])
    assert [leak.place for leak in found.leaks] == ["header"]
    assert found.places == ["header", "clean"]
    assert all(secret.value not in str(leak) for leak in found.leaks)


def test_short_forms_are_not_scanned_for() -> None:
    assert forms("abc") == []
    assert forms("abcdef") == ["abcdef", "YWJjZGVm"]


def test_a_pem_key_is_scanned_line_by_line() -> None:
    pem = "-----BEGIN PRIVATE KEY-----\nAAAABBBBCCCC\nDDDDEEEE\n-----END PRIVATE KEY-----\n"
    assert pem_lines(pem) == ["AAAABBBBCCCC", "DDDDEEEE"]


def test_modes_wrong_are_named(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / "ok.json").write_text("{}")
    (state / "ok.json").chmod(0o600)
    (state / "events.jsonl").write_text("")
    (state / "events.jsonl").chmod(0o644)
    (state / "logs").mkdir(mode=0o755)
    (state / "logs").chmod(0o755)
    found = scan.Scan()
    scan.check_modes(found, [state])
    assert sorted(str(leak) for leak in found.leaks) == [
        f"leak: mode 0o644 (want 0o600) in file {state / 'events.jsonl'}",
        f"leak: mode 0o755 (want 0o700) in folder {state / 'logs'}",
    ]


def test_files_under_the_fixture_are_left_out(tmp_path: Path) -> None:
    secret = Secret("api key", "k3y-value-123")
    (tmp_path / "sandbox").mkdir()
    (tmp_path / "sandbox" / "state.json").write_text(secret.value)
    (tmp_path / "left.txt").write_text(f"key={secret.value}")
    found = scan.Scan()
    scan.scan_files(
        found,
        roots={"work": tmp_path},
        written=[tmp_path / "sandbox" / "state.json"],
        skip=[tmp_path / "sandbox"],
        secrets=[secret],
    )
    assert [str(leak) for leak in found.leaks] == ["leak: api key in work file left.txt"]
    assert found.places == ["work file left.txt"]


def test_env_secrets_are_listed_and_stray_ones_warned() -> None:
    webhook = Secret("webhook URL", "http://127.0.0.1:9/hooks/tok3n")
    db = Secret("heroku db password", "dbpass-123")
    children = [
        recorder.Child("os.exec", "/x/pg_dump", ["/x/pg_dump"], {"PGPASSWORD": db.value}, 1),
        recorder.Child(
            "os.exec", "/x/convox", ["/x/convox"], {"CUTOVER_AUDIT_WEBHOOK": webhook.value}, 2
        ),
    ]
    uses = scan.env_uses(recorder.Record(children, {}), [webhook, db])
    assert uses == {
        "pg_dump": {"heroku db password": {"PGPASSWORD"}},
        "convox": {"webhook URL": {"CUTOVER_AUDIT_WEBHOOK"}},
    }
    assert scan.env_warnings(uses, set()) == [
        "warning: convox got webhook URL in $CUTOVER_AUDIT_WEBHOOK (no use for it)"
    ]


def test_the_report_ends_with_the_count() -> None:
    report = Report([scan.Leak("argv of child x (pid 1)", "db password")], 7, {}, [], [], [])
    assert report.lines()[-2:] == [
        "leak: db password in argv of child x (pid 1)",
        "audit: 1 leaks in 7 places checked",
    ]


def test_the_mode_watcher_judges_files_gone_by_the_end_by_their_last_mode(tmp_path: Path) -> None:
    """A dump written 0644 then removed before the run ends is still a finding; a file made
    0600 right after its creation is not."""
    from support.waiting import wait_for  # noqa: PLC0415

    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    with scan.ModeWatcher([state], interval=0.02) as watcher:
        dump, fixed = state / "initial-sync.dump", state / "fixed.json"
        dump.write_text("x")
        dump.chmod(0o644)
        fixed.write_text("{}")
        fixed.chmod(0o644)
        wait_for(lambda: dump in watcher.modes and fixed in watcher.modes, "the watcher", 30)
        fixed.chmod(0o600)
        wait_for(lambda: watcher.modes[fixed][1] == 0o600, "the watcher", 30)
        dump.unlink()
        fixed.unlink()
    assert watcher.gone() == [fixed, dump]
    assert [str(leak) for leak in watcher.leaks(watcher.gone())] == [
        f"leak: mode 0o644 (want 0o600) in file {dump} (during the run)"
    ]


def test_every_secret_of_a_sandbox_is_gathered_from_its_files(tmp_path: Path) -> None:
    """The sandbox's own files, in their shapes (heroku_api state, env.json, pg-*.json, the
    rack's state, mysql box.json, the CA's keys): every secret-named field, every URL password,
    every config value but the public ones, each PEM body line."""
    import json  # noqa: PLC0415

    from cutover.sandbox.audit.secretset import gather  # noqa: PLC0415
    from cutover.sandbox.names import HEROKU_APP  # noqa: PLC0415

    def put(rel: str, data: object) -> None:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(data if isinstance(data, str) else json.dumps(data))

    config = {
        "RAILS_ENV": "production",
        "STRIPE_API_KEY": "sk_live_abcdef123",
        "REDIS_URL": "rediss://:redis-pass-1@127.0.0.1:6380",
    }
    addons = [{"database": {"password": "hpg-pass-1"}}]
    app = {"config_vars": config, "addons": addons}
    put("heroku/state.json", {"api_key": "heroku-api-key-1", "apps": {HEROKU_APP: app}})
    put("env.json", {"dns": {"key_name": "cutover-key", "key_secret": "tsig-secret-1"}})
    put("pg-convox.json", {"superuser": "postgres", "password": "pg-super-1"})
    put("convox/sandbox-rack.json", {"resource_backends": {"postgres": {"password": "cx-pass-1"}}})
    put("mysql/heroku/box.json", {"admin_password": "maria-admin-1"})
    put("mysql/cleardb.json", {"url": "mysql://u:cleardb-pass-1@127.0.0.1:3306/d"})
    body = ["MIIEvQIBADANBgkq", "hkiG9w0BAQEFAASC"]
    pem = "\n".join(["-----BEGIN PRIVATE KEY-----", *body, "-----END PRIVATE KEY-----"])
    put("ca/server-key.pem", pem)
    found, public = gather(tmp_path, {"webhook URL": "http://127.0.0.1:1/hooks/tok-1"})
    values = {s.value: s.name for s in found}
    for value in (
        "heroku-api-key-1",
        "sk_live_abcdef123",
        "redis-pass-1",
        "hpg-pass-1",
        "tsig-secret-1",
        "pg-super-1",
        "cx-pass-1",
        "maria-admin-1",
        "cleardb-pass-1",
        "MIIEvQIBADANBgkq",
        "hkiG9w0BAQEFAASC",
        "http://127.0.0.1:1/hooks/tok-1",
    ):
        assert value in values, value
    assert values["sk_live_abcdef123"] == "heroku config STRIPE_API_KEY"
    assert public == ["RAILS_ENV"]
    assert "production" not in values and "cutover-key" not in values
