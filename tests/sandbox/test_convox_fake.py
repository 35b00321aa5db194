"""The convox stand-in, driven as a real executable (the shim) like cutover's adapter drives it.

Every call is a subprocess with ``CONVOX_CONFIG`` in a temporary folder, stdin closed unless the
test feeds it, and the expected text taken from shared/reference/convox-cli.md.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO

import pytest
import trustme
from convox_support import (
    AGO,
    BUILD,
    MANIFEST,
    NO_RACK,
    POD_LINE,
    RELEASE,
    Sandbox,
    release_ids,
)

from cutover.sandbox import convox_fake as fake
from cutover.sandbox import procs

# --- mechanics ------------------------------------------------------------------------------


def test_shim_is_an_executable_sh_script(sandbox: Sandbox) -> None:
    shim = sandbox.bin / "convox"
    assert stat.S_IMODE(shim.stat().st_mode) == 0o755
    assert shim.read_text().startswith("#!/bin/sh\n")
    assert shutil.which("convox", path=sandbox.env()["PATH"]) == str(shim)


def test_version_flag_and_command(sandbox: Sandbox) -> None:
    for flag in ("-v", "--version"):
        result = sandbox.run(flag)
        assert (result.returncode, result.stdout, result.stderr) == (0, "3.19.0\n", "")
    assert sandbox.ok("version") == "client: 3.19.0\nserver: 3.19.0\n"
    (sandbox.config / "current").unlink()
    result = sandbox.run("version")
    assert (result.returncode, result.stdout) == (0, "client: 3.19.0\nserver: none\n")


def test_unknown_command_prints_global_help_and_succeeds(sandbox: Sandbox) -> None:
    for argv in (["domains"], ["-a", "demo", "env"], []):
        result = sandbox.run(*argv)
        assert result.returncode == 0
        assert result.stderr == ""
        lines = result.stdout.splitlines()
        # Padded to the longest emulated command (stdcli pads to the longest registered one).
        width = max(len(line.split("  ")[0]) for line in lines)
        assert f"{'convox apps create':<{width}}  create an app" in lines
        assert lines == sorted(lines)


def test_help_flag_prints_command_usage(sandbox: Sandbox) -> None:
    result = sandbox.run("env", "set", "--help")
    assert result.returncode == 0
    assert result.stdout.startswith("USAGE\n  convox env set <key=value> [key=value]...\n")
    assert "--promote" in result.stdout
    assert "--wait" not in result.stdout


def test_commands_not_emulated_fail_loudly(sandbox: Sandbox) -> None:
    result = sandbox.run("logs", "-a", "demo")
    assert result.returncode == 1
    assert result.stderr == 'ERROR: the convox stand-in does not emulate "convox logs"\n'


def test_no_current_rack(sandbox: Sandbox) -> None:
    (sandbox.config / "current").unlink()
    for argv in (["apps"], ["rack"], ["switch"], ["env", "-a", "demo"]):
        result = sandbox.run(*argv)
        assert (result.returncode, result.stdout, result.stderr) == (1, "", NO_RACK)


def test_settings_folder_falls_back_to_xdg(sandbox: Sandbox, tmp_path: Path) -> None:
    xdg = tmp_path / "xdg"
    fake.configure_rack(xdg / "convox", name="xdgrack")
    env = sandbox.env(XDG_CONFIG_HOME=str(xdg))
    del env["CONVOX_CONFIG"]
    result = sandbox.run("switch", env=env)
    assert (result.returncode, result.stdout) == (0, "xdgrack\n")
    assert fake.settings_dir({"HOME": "/h"}) == Path("/h/.config/convox")
    assert fake.settings_dir({"CONVOX_CONFIG": "/c"}) == Path("/c")


def test_flag_errors(app: Sandbox) -> None:
    cases = {
        ("apps", "--foo"): "ERROR: unknown flag: --foo\n",
        ("apps", "-x"): "ERROR: unknown flag: -x\n",
        ("run", "web", "ls", "-la", "-a", "demo"): "ERROR: unknown flag: -la\n",
        ("resources", "proxy", "database", "--port"): "ERROR: flag needs an argument: --port\n",
        ("resources", "proxy", "database", "-p", "abc"): (
            'ERROR: invalid argument "abc" for "-p, --port" flag: '
            'strconv.Atoi: parsing "abc": invalid syntax\n'
        ),
        ("env", "set", "--promote=maybe"): (
            'ERROR: invalid argument "maybe" for "-p, --promote" flag: '
            'strconv.ParseBool: parsing "maybe": invalid syntax\n'
        ),
    }
    for argv, stderr in cases.items():
        result = app.run(*argv)
        assert (result.returncode, result.stdout, result.stderr) == (1, "", stderr), argv


def test_apps_create_refuses_the_app_flag_before_touching_the_rack(sandbox: Sandbox) -> None:
    """pkg/cli/apps.go registers only --generation/-g, --timeout and --rack/-r for apps create:
    the real CLI prints ``ERROR: unknown flag: -a`` and exits 1 before it contacts the rack."""
    before = sandbox.state()
    for flag in ("-a", "--app"):
        result = sandbox.run("apps", "create", "myapp", flag, "myapp", "-r", "sandbox")
        assert (result.returncode, result.stdout) == (1, "")
        assert result.stderr == f"ERROR: unknown flag: {flag}\n"
    assert sandbox.state() == before
    assert sandbox.ok("apps", "create", "myapp", "-r", "sandbox") == "Creating myapp... OK\n"


def test_argument_count_errors(app: Sandbox) -> None:
    cases = {
        ("racks", "x"): "ERROR: 0 args required\n",
        ("env", "get", "-a", "demo"): "ERROR: 1 arg required\n",
        ("env", "unset", "-a", "demo"): "ERROR: at least 1 arg required\n",
        ("run", "web", "-a", "demo"): "ERROR: at least 2 args required\n",
        ("apps", "info", "a", "b"): "ERROR: no more than 1 arg expected\n",
        ("scale", "--count", "2", "-a", "demo"): "ERROR: service name required\n",
    }
    for argv, stderr in cases.items():
        result = app.run(*argv)
        assert (result.returncode, result.stderr) == (1, stderr), argv


def test_wait_is_accepted_everywhere_and_flags_parse_like_pflag(deployed: Sandbox) -> None:
    assert deployed.ok("apps", "--wait") == deployed.ok("apps", "-w")
    assert deployed.ok("env", "--app=demo", "-w") == "\n"
    deployed.ok("env", "set", "X=1", "-a", "demo")
    assert deployed.ok("env", "get", "-ademo", "--wait=false", "X") == "1\n"
    out = deployed.ok("env", "set", "-a", "demo", "--", "-DASHED=1")
    assert out.startswith("Setting -DASHED... OK\n")
    assert "-DASHED=1" in deployed.ok("env", "-a", "demo")


# --- racks ----------------------------------------------------------------------------------


def test_racks_and_rack_goldens(sandbox: Sandbox) -> None:
    fake.configure_rack(sandbox.config, name="acme/production", provider="aws", switch=False)
    assert sandbox.ok("racks") == (
        "NAME             PROVIDER  STATUS\n"
        "sandbox          local     running\n"
        "acme/production  aws       running\n"
    )
    assert sandbox.ok("rack") == (
        "Name      sandbox\n"
        "Provider  local\n"
        "Router    router.sandbox.convox.test\n"
        "Status    running\n"
        "Version   3.19.0\n"
    )
    result = sandbox.run("rack", "-r", "nope")
    assert (result.returncode, result.stdout, result.stderr) == (
        1,
        "",
        "ERROR: could not find rack: nope\n",
    )


def test_racks_without_any_rack_prints_the_header(tmp_path: Path) -> None:
    box = Sandbox(tmp_path, tmp_path / "empty", tmp_path / "bin", tmp_path)
    fake.install_shim(box.bin)
    assert box.ok("racks") == "NAME  PROVIDER  STATUS\n"


def test_switch(sandbox: Sandbox) -> None:
    fake.configure_rack(sandbox.config, name="acme/production", provider="aws", switch=False)
    fake.configure_rack(sandbox.config, name="dev1", switch=False)
    fake.configure_rack(sandbox.config, name="dev2", switch=False)
    assert sandbox.ok("switch") == "sandbox\n"
    assert sandbox.ok("switch", "prod") == "Switched to acme/production\n"
    current = json.loads((sandbox.config / "current").read_text())
    assert current == {"name": "acme/production", "type": "terraform"}
    assert sandbox.ok("switch") == "acme/production\n"
    assert sandbox.run("switch", "dev").stderr == "ERROR: ambiguous rack name: dev\n"
    result = sandbox.run("switch", "rack1")
    assert (result.returncode, result.stderr) == (1, "ERROR: could not find rack: rack1\n")


def test_rack_selection_order(sandbox: Sandbox) -> None:
    fake.configure_rack(sandbox.config, name="other", switch=False)
    with fake.Store(sandbox.config).locked() as state:
        state["racks"][1]["url"] = "https://convox:pw@api.other.test"
    assert sandbox.ok("switch") == "sandbox\n"
    (sandbox.work / ".convox").mkdir()
    (sandbox.work / ".convox" / "rack").write_text("other\n")
    assert sandbox.ok("switch") == "other\n"
    env = sandbox.env(CONVOX_RACK="sandbox")
    assert sandbox.run("switch", env=env).stdout == "sandbox\n"
    assert "Name      other" in sandbox.ok("rack", "--rack", "other")
    env = sandbox.env(RACK_URL="https://convox:secret@api.other.test", CONVOX_RACK="sandbox")
    assert sandbox.run("switch", env=env).stdout == "direct\n"
    assert "Name      other" in sandbox.run("rack", "-r", "sandbox", env=env).stdout
    env = sandbox.env(RACK_URL="https://convox:secret@api.nowhere.test")
    result = sandbox.run("rack", env=env)
    assert result.returncode == 1
    assert "secret" not in result.stderr
    assert result.stderr.startswith('ERROR: Get "https://api.nowhere.test/system"')


# --- apps -----------------------------------------------------------------------------------


def test_apps_create_list_info(sandbox: Sandbox) -> None:
    assert sandbox.ok("apps") == "APP  STATUS  RELEASE\n"
    assert sandbox.ok("apps", "create", "demo", "--wait") == "Creating demo... OK\n"
    result = sandbox.run("apps", "create", "demo")
    assert (result.returncode, result.stdout, result.stderr) == (
        1,
        "Creating demo... ",
        "ERROR: app already exists: demo\n",
    )
    result = sandbox.run("apps", "create", "system")
    assert (result.stdout, result.stderr) == (
        "Creating system... ",
        "ERROR: app name is reserved\n",
    )
    assert sandbox.ok("apps", "create") == "Creating work... OK\n"  # the cwd's basename
    assert sandbox.ok("apps") == "APP   STATUS   RELEASE\ndemo  running  \nwork  running  \n"
    assert sandbox.ok("apps", "info", "-a", "demo") == (
        "Name        demo\n"
        "Status      running\n"
        "Generation  3\n"
        "Locked      false\n"
        "Release     \n"
        "Router      router.sandbox.convox.test\n"
    )
    assert sandbox.ok("apps", "info", "demo") == sandbox.ok("apps", "info", "-a", "demo")
    result = sandbox.run("apps", "info", "-a", "nope")
    assert (result.returncode, result.stdout, result.stderr) == (
        1,
        "",
        "ERROR: app not found: nope\n",
    )


def test_app_resolution_from_convox_app_file_and_cwd(app: Sandbox) -> None:
    (app.work / ".convox").mkdir()
    (app.work / ".convox" / "app").write_text("demo\n")
    assert app.ok("apps", "info").startswith("Name        demo\n")
    other = app.root / "somewhere"
    other.mkdir()
    result = app.run("apps", "info", cwd=other)
    assert result.stderr == "ERROR: app not found: somewhere\n"


# --- env ------------------------------------------------------------------------------------


def test_env_set_get_unset_goldens(app: Sandbox) -> None:
    assert app.ok("env", "-a", "demo") == "\n"
    out = app.ok("env", "set", "FOO=bar", "BAZ=quux", "-a", "demo")
    assert re.fullmatch(rf"Setting BAZ, FOO\.\.\. OK\nRelease: {RELEASE}\n", out)
    assert app.ok("env", "-a", "demo") == "BAZ=quux\nFOO=bar\n"
    assert app.ok("env", "get", "FOO", "-a", "demo") == "bar\n"
    result = app.run("env", "get", "FOOO", "-a", "demo")
    assert (result.returncode, result.stdout, result.stderr) == (
        1,
        "",
        "ERROR: env not found: FOOO\n",
    )
    out = app.ok("env", "unset", "FOO", "NOPE", "-a", "demo")
    assert re.fullmatch(rf"Unsetting FOO, NOPE\.\.\. OK\nRelease: {RELEASE}\n", out)
    assert app.ok("env", "-a", "demo") == "BAZ=quux\n"
    first, second = release_ids(app)
    assert app.ok("env", "-a", "demo", "--release", first) == "BAZ=quux\nFOO=bar\n"
    releases = app.ok("releases", "-a", "demo").splitlines()
    assert re.fullmatch(r"ID           STATUS  BUILD  CREATED +DESCRIPTION", releases[0])
    assert re.fullmatch(rf"{second}                 {AGO} +env remove:FOO", releases[1])
    assert re.fullmatch(rf"{first}                 {AGO} +env add:BAZ add:FOO", releases[2])
    assert app.ok("env", "set", "--replace", "NEW=1", "-a", "demo").startswith("Setting NEW")
    assert app.ok("env", "-a", "demo") == "NEW=1\n"


def test_env_set_reads_stdin_and_never_echoes_values(app: Sandbox) -> None:
    secret = "hunter2-" + "x" * 40
    stdin = f"SECRET_KEY_BASE={secret}\nnot a pair\nFOO=from-stdin\r\nEMPTY=\n"
    result = app.run("env", "set", "FOO=from-argv", "-a", "demo", input=stdin)
    assert result.returncode == 0, result.stderr
    assert secret not in result.stdout + result.stderr
    assert result.stdout.startswith("Setting EMPTY, FOO, FOO, SECRET_KEY_BASE... OK\n")
    env = app.ok("env", "-a", "demo")
    assert env == f"EMPTY=\nFOO=from-stdin\nSECRET_KEY_BASE={secret}\n"


def test_env_set_stops_at_a_stdin_line_over_64_kib(app: Sandbox) -> None:
    fits = "A=" + "a" * (65535 - 2)
    too_long = "B=" + "b" * (65536 - 2)
    app.ok("env", "set", "-a", "demo", input=f"{fits}\n{too_long}\nC=3\n")
    env = app.ok("env", "-a", "demo")
    assert env == fits + "\n"
    app.ok("env", "set", "-a", "demo", input=f"D=4\n{too_long}")
    assert "D=4" in app.ok("env", "-a", "demo")


def test_env_set_id_mode(app: Sandbox) -> None:
    result = app.run("env", "set", "X=1", "--id", "-a", "demo")
    assert result.returncode == 0
    assert re.fullmatch(RELEASE, result.stdout)
    assert result.stderr == f"Setting X... OK\nRelease: {result.stdout}\n"
    result = app.run("env", "unset", "X", "--id", "-a", "demo")
    assert re.fullmatch(RELEASE, result.stdout)
    assert result.stderr == f"Unsetting X... OK\nRelease: {result.stdout}\n"


def test_env_of_unknown_app(sandbox: Sandbox) -> None:
    result = sandbox.run("env", "set", "A=1", "-a", "ghost")
    assert (result.returncode, result.stdout, result.stderr) == (
        1,
        "",
        "ERROR: app not found: ghost\n",
    )


def test_concurrent_env_sets_keep_the_state_consistent(app: Sandbox) -> None:
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: app.run("env", "set", f"K{i}=v", "-a", "demo"), range(8)))
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    assert len(set(release_ids(app))) == 8
    state_file = app.config / fake.STATE_FILE
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
    json.loads(state_file.read_text())


# --- build and deploy -----------------------------------------------------------------------


def test_build_fails_validation_when_required_env_is_missing(app: Sandbox) -> None:
    app.write_manifest(
        "environment:\n  - B\n  - A\nservices:\n  web:\n    port: 3000\n"
        "    environment:\n      - C=default\n"
    )
    result = app.run("build", "-a", "demo")
    assert result.returncode == 1
    assert result.stdout == (
        "Packaging source... OK\n"
        "Uploading source... OK\n"
        "Starting build... OK\n"
        "ERROR: validation errors:\n"
        "required env: A, B\n"
    )
    assert result.stderr == "ERROR: build failed\n"
    assert re.fullmatch(
        rf"ID           STATUS  RELEASE  STARTED +ELAPSED  DESCRIPTION\n{BUILD}  failed"
        rf"           {AGO} +\d+s       \n",
        app.ok("builds", "-a", "demo"),
    )
    app.ok("env", "set", "A=1", "B=2", "-a", "demo")
    assert app.run("build", "-a", "demo").returncode == 0


def test_build_reports_manifest_errors(app: Sandbox) -> None:
    cases = {
        "services:\n  worker_high:\n    command: x\n": (
            "service name worker_high invalid, must contain only lowercase alphanumeric and dashes"
        ),
        "services:\n  web:\n    resources: [cache]\n": (
            "service web references a resource that does not exist: cache"
        ),
        "resources:\n  db: {}\nservices:\n  web: {}\n": 'resource "db" has blank type',
        "services:\n  web:\n    environment:\n      A: b\n": (
            "unknown type for service environment: map[A:b]"
        ),
        "timers:\n  nightly:\n    schedule: '0 3 * * ?'\n    service: nope\n": (
            "timer nightly references a service that does not exist: nope"
        ),
        # pkg/manifest/yaml.go ServiceDomains: Errorf("unknown type for service domain: %T")
        "services:\n  web:\n    port: 3000\n    domain: [a.example.test, 5]\n": (
            "unknown type for service domain: int"
        ),
    }
    for manifest, message in cases.items():
        app.write_manifest(manifest)
        result = app.run("build", "-a", "demo")
        assert result.returncode == 1, manifest
        assert message in result.stdout, (manifest, result.stdout)
        assert result.stderr == "ERROR: build failed\n"
    (app.work / "convox.yml").unlink()
    result = app.run("build", "-a", "demo")
    assert result.stdout.endswith("Starting build... OK\nERROR: no such file: convox.yml\n")
    result = app.run("build", "missing-dir", "-a", "demo")
    assert result.stdout == "Packaging source... "
    assert result.stderr.startswith("ERROR: lstat ")


def test_build_golden_and_id(app: Sandbox) -> None:
    out = app.ok("build", "-a", "demo")
    assert re.fullmatch(
        "Packaging source\\.\\.\\. OK\nUploading source\\.\\.\\. OK\nStarting build\\.\\.\\. OK\n"
        rf"Building: \.\nBuild:   {BUILD}\nRelease: {RELEASE}\n",
        out,
    )
    assert app.app()["release"] == ""  # a build is not promoted
    result = app.run("build", ".", "--id", "-a", "demo", "-m", "convox.yml")
    assert re.fullmatch(RELEASE, result.stdout)
    assert result.stderr.endswith(f"Release: {result.stdout}\n")
    result = app.run("build", "-a", "ghost")
    assert (result.stdout, result.stderr) == (
        "Packaging source... OK\nUploading source... ",
        "ERROR: app not found: ghost\n",
    )


def test_deploy_golden(app: Sandbox) -> None:
    result = app.run("deploy", "-a", "demo", "--wait")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split("\n")
    assert lines[:4] == [
        "Packaging source... OK",
        "Uploading source... OK",
        "Starting build... OK",
        "Building: .",
    ]
    (release,) = release_ids(app)
    assert lines[4] == f"Promoting {release}... "
    pods = [POD_LINE.match(line) for line in lines[5:-2]]
    assert all(pods) and len(pods) == 4
    assert [m.group(3) for m in pods if m] == ["pending", "pending", "running", "running"]
    assert lines[-2:] == ["OK", ""]
    assert app.app()["release"] == release


def test_deploy_id_puts_only_the_release_on_stdout(app: Sandbox) -> None:
    result = app.run("deploy", "--id", "-a", "demo", "-d", "by cutover")
    assert result.returncode == 0
    assert re.fullmatch(RELEASE, result.stdout)
    assert f"Promoting {result.stdout}... \n" in result.stderr
    assert result.stderr.endswith("OK\n")
    assert app.ok("releases", "info", result.stdout, "-a", "demo").splitlines()[3] == (
        "Description  by cutover"
    )


def test_deploy_with_git_description(app: Sandbox) -> None:
    git = shutil.which("git")
    if git is None:
        pytest.skip("git is not installed")
    env = {**os.environ, "GIT_CONFIG_GLOBAL": "/dev/null", "HOME": str(app.root)}
    for argv in (
        ["init", "-q"],
        ["-c", "user.email=a@b", "-c", "user.name=a", "add", "."],
        ["-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qm", "ship it"],
    ):
        subprocess.run([git, *argv], cwd=app.work, env=env, check=True, capture_output=True)
    app.ok("build", "-a", "demo")
    builds = app.ok("builds", "-a", "demo")
    assert re.search(r"build [0-9a-f]{10} ship it\n", builds), builds


def test_releases_promote_and_info(deployed: Sandbox) -> None:
    deployed.ok("env", "set", "A=1", "-a", "demo")
    first, second = release_ids(deployed)
    table = deployed.ok("releases", "-a", "demo").splitlines()
    assert re.fullmatch(rf"{second}          {BUILD}  {AGO} +env add:A", table[1])
    assert re.fullmatch(rf"{first}  active  {BUILD}  {AGO} +first deploy", table[2])
    info = deployed.ok("releases", "info", second, "-a", "demo").splitlines()
    assert info[0] == f"Id           {second}"
    assert re.fullmatch(rf"Build        {BUILD}", info[1])
    assert re.fullmatch(r"Created      \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", info[2])
    assert info[3:] == ["Description  env add:A", "Env          A=1"]
    out = deployed.ok("releases", "promote", "-a", "demo")
    assert out.startswith(f"Promoting {second}... \n") and out.endswith("OK\n")
    assert deployed.app()["release"] == second
    deployed.ok("releases", "promote", first, "-a", "demo")
    assert deployed.app()["release"] == first
    result = deployed.run("releases", "info", "RNOPE", "-a", "demo")
    assert result.stderr == "ERROR: release not found: RNOPE\n"
    manifest = deployed.ok("releases", "manifest", first, "-a", "demo")
    assert manifest == MANIFEST.strip() + "\n"


def test_releases_promote_without_releases(app: Sandbox) -> None:
    result = app.run("releases", "promote", "-a", "demo")
    assert (result.returncode, result.stderr) == (1, "ERROR: no releases to promote\n")


def test_promote_checks_required_env(deployed: Sandbox) -> None:
    deployed.write_manifest("environment:\n  - TOKEN\nservices:\n  web:\n    port: 3000\n")
    deployed.ok("env", "set", "TOKEN=x", "-a", "demo")
    deployed.ok("build", "-a", "demo")
    deployed.ok("env", "unset", "TOKEN", "-a", "demo")
    result = deployed.run("releases", "promote", "-a", "demo")
    # pkg/cli/releases.go releasePromote: Startf("Promoting ..."), Writef("\n"), then the rack
    # call, which fails.
    assert (result.stdout, result.stderr) == (
        f"Promoting {release_ids(deployed)[-1]}... \n",
        "ERROR: required env: TOKEN\n",
    )


# --- services, ps, scale --------------------------------------------------------------------


def test_services_golden_has_the_scale_column_on_v3(deployed: Sandbox) -> None:
    # pkg/cli/services.go: SCALE after PORTS whenever a service has Min/Max, which the k8s
    # provider (provider/k8s/service.go) sets on every service from scale.count.
    assert deployed.ok("services", "-a", "demo") == (
        "SERVICE  DOMAIN                           PORTS     SCALE\n"
        "web      web.demo.sandbox.convox.test     443:3000  1\n"
        "worker   worker.demo.sandbox.convox.test            1\n"
    )
    ranged = MANIFEST.replace("    port: 3000\n", "    port: 3000\n    scale:\n      count: 2-4\n")
    deployed.write_manifest(ranged)
    deployed.ok("deploy", "-a", "demo")
    assert deployed.ok("services", "-a", "demo").splitlines()[1].endswith("443:3000  2-4")


def test_services_ps_scale_before_the_first_release(app: Sandbox) -> None:
    assert app.ok("services", "-a", "demo") == "SERVICE  DOMAIN  PORTS\n"
    assert app.ok("ps", "-a", "demo") == "ID  SERVICE  STATUS  RELEASE  STARTED  COMMAND\n"


def test_ps_and_scale(deployed: Sandbox) -> None:
    (release,) = release_ids(deployed)
    ps = deployed.ok("ps", "-a", "demo").splitlines()
    assert ps[0].split() == ["ID", "SERVICE", "STATUS", "RELEASE", "STARTED", "COMMAND"]
    assert re.fullmatch(rf"web-\S+\s+web      running  {release}  {AGO} +", ps[1])
    assert re.fullmatch(
        rf"worker-\S+  worker   running  {release}  {AGO} +bin/worker --queue default", ps[2]
    )
    assert deployed.ok("scale", "-a", "demo") == (
        "SERVICE  DESIRED  RUNNING  CPU  MEMORY  GPU  MIN  MAX  STATUS\n"
        "web      1        1        250  512     -    1    1    \n"
        "worker   1        1        250  512     -    1    1    \n"
    )
    out = deployed.ok("scale", "worker", "--count", "3", "--memory", "1024", "-a", "demo")
    lines = out.split("\n")
    assert lines[0] == "Scaling worker... "
    statuses = [m.group(3) for m in map(POD_LINE.match, lines[1:5]) if m]
    assert statuses == ["pending"] * 2 + ["running"] * 2
    assert lines[5:] == ["OK", ""]
    assert deployed.ok("scale", "worker", "-a", "demo") == (
        "SERVICE  DESIRED  RUNNING  CPU  MEMORY  GPU  MIN  MAX  STATUS\n"
        "worker   3        3        250  1024    -    1    1    \n"
    )
    assert len(deployed.ok("ps", "-a", "demo", "-s", "worker").splitlines()) == 4
    result = deployed.run("scale", "web", "-a", "demo")
    assert result.returncode == 0
    result = deployed.run("scale", "nope", "-a", "demo")
    assert result.stderr == 'ERROR: service "nope" not found in app demo\n'
    result = deployed.run("scale", "web", "--count", "1", "--min", "1", "-a", "demo")
    assert result.stderr == "ERROR: --min/--max and --count are mutually exclusive\n"
    # Runtime scale persists across deploys.
    deployed.ok("deploy", "-a", "demo")
    assert "worker   3        3" in deployed.ok("scale", "-a", "demo")


# --- resources ------------------------------------------------------------------------------


def test_resources_goldens(deployed: Sandbox) -> None:
    url = "postgres://app:pw-s3cret@127.0.0.1:5999/appdb?sslmode=disable"
    assert deployed.ok("resources", "-a", "demo") == (
        f"NAME      TYPE      URL\ndatabase  postgres  {url}\n"
    )
    assert deployed.ok("resources", "info", "database", "-a", "demo") == (
        f"Name  database\nType  postgres\nURL   {url}\n"
    )
    assert deployed.ok("resources", "url", "database", "-a", "demo") == url + "\n"
    result = deployed.run("resources", "url", "nope", "-a", "demo")
    assert result.stderr == "ERROR: no such resource: nope\n"


def test_resource_without_backend_has_no_url(app: Sandbox) -> None:
    app.write_manifest("resources:\n  cache:\n    type: redis\nservices:\n  web:\n    port: 3000\n")
    app.ok("deploy", "-a", "demo")
    assert app.ok("resources", "-a", "demo") == "NAME   TYPE   URL\ncache  redis  \n"
    assert app.ok("resources", "info", "cache", "-a", "demo") == "Name  cache\nType  redis\n"
    for argv in (["url"], ["proxy"]):
        result = app.run("resources", *argv, "cache", "-a", "demo")
        assert (result.returncode, result.stdout, result.stderr) == (
            1,
            "",
            "ERROR: no url for resource: cache\n",
        )


def test_resources_before_a_release(app: Sandbox) -> None:
    assert app.ok("resources", "-a", "demo") == "NAME  TYPE  URL\n"
    result = app.run("resources", "url", "database", "-a", "demo")
    assert result.stderr == "ERROR: no release for app: demo\n"


def test_resource_env_injection_and_overlay(deployed: Sandbox) -> None:
    script = "env | sort | grep -E '^(DATABASE_|WORKER_DB_URL|APP|RELEASE|SERVICE|PORT|PLATFORM)'"
    web = deployed.ok("run", "web", "-a", "demo", "--", f'sh -c "{script}"')
    url = "postgres://app:pw-s3cret@127.0.0.1:5999/appdb?sslmode=disable"
    (release,) = release_ids(deployed)
    assert web.splitlines() == [
        "APP=demo",
        "DATABASE_HOST=127.0.0.1",
        "DATABASE_NAME=appdb",
        "DATABASE_PASS=pw-s3cret",
        "DATABASE_PORT=5999",
        f"DATABASE_URL={url}",
        "DATABASE_USER=app",
        "PLATFORM=convox",
        "PORT=3000",
        f"RELEASE={release}",
        "SERVICE=web",
    ]
    worker = deployed.ok("run", "worker", "-a", "demo", "--", f'sh -c "{script}"')
    assert f"WORKER_DB_URL={url}" in worker.splitlines()
    assert "DATABASE_USER=app" not in worker
    # Overlay: DATABASE_URL in the app env wins and the rack provides no database.
    heroku = "postgres://u:p@heroku.example:5432/d"
    deployed.ok("env", "set", f"DATABASE_URL={heroku}", "--promote", "-a", "demo")
    web = deployed.ok("run", "web", "-a", "demo", "--", f'sh -c "{script}"')
    assert f"DATABASE_URL={heroku}" in web.splitlines()
    assert "DATABASE_USER" not in web
    assert deployed.ok("resources", "-a", "demo") == "NAME  TYPE  URL\n"
    assert deployed.ok("resources", "url", "database", "-a", "demo") == heroku + "\n"


# --- resources proxy ------------------------------------------------------------------------


class EchoServer:
    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(4096):
                conn.sendall(data)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.close()


def read_line(stream: IO[str] | None, timeout: float = 10.0) -> str:
    assert stream is not None
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(stream.readline()))
    reader.daemon = True
    reader.start()
    reader.join(timeout)
    assert result, "no line within the timeout"
    return result[0]


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            assert time.monotonic() < deadline, f"nothing listens on {port}"
            time.sleep(0.05)


def test_resources_proxy_really_proxies(deployed: Sandbox, echo: EchoServer) -> None:
    fake.configure_rack(
        deployed.config,
        name="sandbox",
        domain="router.sandbox.convox.test",
        postgres=fake.PostgresBackend("127.0.0.1", echo.port, "app", "pw", "appdb"),
    )
    port = procs.free_port()
    proc = deployed.start("resources", "proxy", "database", "-a", "demo", "--port", str(port))
    assert read_line(proc.stdout) == f"proxying localhost:{port} to 127.0.0.1:{echo.port}\n"
    wait_port(port)
    for payload in (b"hello", b"x" * 200_000):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(payload)
            conn.shutdown(socket.SHUT_WR)
            received = b""
            while chunk := conn.recv(65536):
                received += chunk
        assert received == payload
    assert read_line(proc.stdout) == f"connect: {port}\n"
    assert proc.poll() is None  # it never exits by itself
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == -signal.SIGTERM


def test_resources_proxy_default_port_is_the_remote_port(deployed: Sandbox) -> None:
    proc = deployed.start("resources", "proxy", "database", "-a", "demo")
    assert read_line(proc.stdout) == "proxying localhost:5999 to 127.0.0.1:5999\n"


def test_resources_proxy_bind_failure_hangs(deployed: Sandbox) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        proc = deployed.start("resources", "proxy", "database", "-a", "demo", "-p", str(port))
        assert read_line(proc.stdout) == f"proxying localhost:{port} to 127.0.0.1:5999\n"
        assert read_line(proc.stderr) == (
            f"ERROR: listen tcp 127.0.0.1:{port}: bind: address already in use\n"
        )
        time.sleep(1.0)
        assert proc.poll() is None
    proc.kill()
    assert proc.wait(timeout=10) == -signal.SIGKILL


def test_resources_proxy_connection_error_is_reported_and_survived(deployed: Sandbox) -> None:
    port = procs.free_port()
    proc = deployed.start("resources", "proxy", "database", "-a", "demo", "-p", str(port))
    read_line(proc.stdout)
    wait_port(port)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        assert conn.recv(10) == b""
    assert read_line(proc.stderr) == (
        "ERROR: dial tcp 127.0.0.1:5999: connect: connection refused\n"
    )
    assert proc.poll() is None


# --- run ------------------------------------------------------------------------------------


def test_run_passes_the_exit_code_and_merges_output(deployed: Sandbox) -> None:
    result = deployed.run(
        "run", "web", "-a", "demo", "--", "sh -c 'echo out; echo err >&2; exit 7'"
    )
    assert (result.returncode, result.stdout, result.stderr) == (7, "out\nerr\n", "")
    result = deployed.run("run", "web", "true", "-a", "demo")
    assert (result.returncode, result.stdout) == (0, "")
    result = deployed.run("run", "web", "no-such-binary", "-a", "demo")
    assert result.returncode == 126
    assert 'exec: "no-such-binary": executable file not found in $PATH' in result.stdout
    result = deployed.run("run", "nope", "true", "-a", "demo")
    assert (result.returncode, result.stderr) == (1, "ERROR: no such service: nope\n")


def test_run_forwards_stdin_and_honours_release(deployed: Sandbox) -> None:
    # `head -n 1`, not `cat`: the command never sees end of input (test_convox_run_stdin.py).
    result = deployed.run("run", "web", "-a", "demo", "--", "head -n 1", input="piped\n")
    assert result.stdout == "piped\n"
    (first,) = release_ids(deployed)
    deployed.ok("env", "set", "MARK=new", "-a", "demo")
    out = deployed.ok("run", "web", "-a", "demo", "--release", first, "--", "sh -c 'echo $RELEASE'")
    assert out == f"{first}\n"


def test_run_without_release(app: Sandbox) -> None:
    result = app.run("run", "web", "true", "-a", "demo")
    assert result.stderr == "ERROR: no release for app: demo\n"


# --- faults ---------------------------------------------------------------------------------


def test_faults_fire_then_are_consumed(app: Sandbox) -> None:
    fake.add_fault(app.config, {"command": "deploy", "stderr": "ERROR: err1\n", "exit": 1})
    fake.add_fault(
        app.config, {"command": "services", "stdout": "garbage\x00\n", "exit": 0, "times": 2}
    )
    result = app.run("deploy", "-a", "demo")
    assert (result.returncode, result.stdout, result.stderr) == (1, "", "ERROR: err1\n")
    assert app.run("deploy", "-a", "demo").returncode == 0
    for _ in range(2):
        result = app.run("services", "-a", "demo")
        assert (result.returncode, result.stdout) == (0, "garbage\x00\n")
    assert app.ok("services", "-a", "demo").startswith("SERVICE  DOMAIN")
    assert app.state().get("faults") == []


def test_fault_hang_before_listen(deployed: Sandbox) -> None:
    fake.add_fault(deployed.config, {"command": "resources proxy", "hang_before_listen": True})
    port = procs.free_port()
    proc = deployed.start("resources", "proxy", "database", "-a", "demo", "-p", str(port))
    assert read_line(proc.stdout).startswith(f"proxying localhost:{port} ")
    time.sleep(0.5)
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass
    assert proc.poll() is None
    proc.kill()
    proc.wait(timeout=10)
    proc = deployed.start("resources", "proxy", "database", "-a", "demo", "-p", str(port))
    wait_port(port)


def test_fault_keys_are_checked(sandbox: Sandbox) -> None:
    with pytest.raises(ValueError, match="command"):
        fake.add_fault(sandbox.config, {"stderr": "x"})


# --- the served web process -----------------------------------------------------------------


@pytest.fixture
def router(sandbox: Sandbox) -> Iterator[tuple[fake.Router, ssl.SSLContext]]:
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "web.demo.sandbox.convox.test")
    folder = Path(tempfile.mkdtemp(dir=sandbox.root))
    cert, key = folder / "cert.pem", folder / "key.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    config = fake.Router("127.0.0.1", procs.free_port(), str(cert), str(key))
    fake.configure_rack(
        sandbox.config, name="sandbox", domain="router.sandbox.convox.test", router=config
    )
    context = ssl.create_default_context()
    ca.configure_trust(context)
    yield config, context
    fake.stop_processes(sandbox.config)


def healthz(router: tuple[fake.Router, ssl.SSLContext]) -> tuple[int, dict[str, str]]:
    config, context = router
    request = urllib.request.Request(f"https://127.0.0.1:{config.port}/healthz")
    try:
        with urllib.request.urlopen(request, context=context, timeout=15) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def served_pid(box: Sandbox) -> int:
    racks = box.state()["racks"]
    assert isinstance(racks, list)
    return int(racks[0]["served"]["pid"])


def test_promote_serves_the_web_service_over_https(
    app: Sandbox, router: tuple[fake.Router, ssl.SSLContext]
) -> None:
    app.ok("deploy", "-a", "demo")
    (first,) = release_ids(app)
    status, body = healthz(router)
    # The backend on port 5999 does not exist: the check fails, without leaking the password.
    assert status == 503
    assert body["platform"] == "convox"
    assert (body["app"], body["release"], body["database"]) == ("demo", first, "error")
    assert "pw-s3cret" not in json.dumps(body)
    old = served_pid(app)
    assert re.search(r"web-\S+\s+web      running", app.ok("ps", "-a", "demo"))

    app.ok("env", "set", "FEATURE=on", "--promote", "-a", "demo")
    second = release_ids(app)[-1]
    assert healthz(router)[1]["release"] == second
    new = served_pid(app)
    assert new != old
    assert not procs.pid_alive(old)

    app.ok("scale", "web", "--count", "0", "-a", "demo")
    assert not procs.pid_alive(new)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", router[0].port), timeout=1).close()
    app.ok("scale", "web", "--count", "1", "-a", "demo")
    assert healthz(router)[1]["release"] == second
    last = served_pid(app)
    # The worker service runs too now (its sample worker process): both are stopped.
    worker = next(p["pid"] for p in app.app()["processes"] if p["service"] == "worker")  # type: ignore[attr-defined]
    assert sorted(fake.stop_processes(app.config)) == sorted([last, worker])
    assert not procs.pid_alive(last)
    assert not procs.pid_alive(worker)


def test_failed_start_rolls_back(app: Sandbox, router: tuple[fake.Router, ssl.SSLContext]) -> None:
    app.ok("deploy", "-a", "demo")
    (first,) = release_ids(app)
    with fake.Store(app.config).locked() as state:
        state["router"]["tls_cert"] = str(app.root / "missing.pem")
    result = app.run("env", "set", "X=1", "--promote", "-a", "demo")
    assert result.returncode == 1
    assert result.stderr == "ERROR: rollback\n"
    assert result.stdout.startswith("Setting X... OK\nRelease: ")
    assert app.app()["release"] == first
    assert app.app()["status"] == "running"
