"""The fakes print what the real CLIs print (shared/reference/*-cli.md), and cutover's own
adapters parse them: a contract check of the test doubles every other engine test relies on."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from fakes import seed
from fakes.harness import MANIFEST
from fakes.world import read_calls, read_world, update_world, write_world

from cutover.adapters.convox import ConvoxAdapter
from cutover.adapters.heroku import HerokuAdapter
from cutover.adapters.postgres import ConnInfo, PostgresAdapter
from cutover.errors import CommandError
from cutover.runner import Runner
from cutover.secrets import SecretMasker

ERR = " \u203a   Error"


class World:
    def __init__(self, folder: Path, bin_dir: Path) -> None:
        self.folder = folder
        self.bin_dir = bin_dir
        self.path = folder / "world.json"
        self.calls = folder / "calls.jsonl"
        self.secrets = seed.Secrets()
        write_world(self.path, seed.new_world(self.secrets, storage_port=9))
        (folder / "convox.yml").write_text(MANIFEST)

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "PATH": str(self.bin_dir),
            "FAKE_WORLD": str(self.path),
            "FAKE_CALLS": str(self.calls),
            **extra,
        }

    def run(
        self, *argv: str, stdin: str | None = None, **env: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin_dir / argv[0]), *argv[1:]],
            input=stdin,
            text=True,
            capture_output=True,
            env=self.env(**env),
            cwd=self.folder,
            timeout=30,
            check=False,
        )

    def data(self) -> dict[str, Any]:
        return read_world(self.path)

    def runner(self) -> Runner:
        return Runner(SecretMasker(), base_env=self.env(), path_prefix=[str(self.bin_dir)])

    def deployed(self) -> None:
        """The Convox app created, its env set and deployed (so it has a database resource)."""
        assert self.run("convox", "apps", "create", "shop").returncode == 0
        assert (
            self.run(
                "convox", "env", "set", "--id", "-a", "shop", stdin="SECRET_KEY_BASE=x\n"
            ).returncode
            == 0
        )
        done = self.run(
            "convox",
            "deploy",
            str(self.folder),
            "-m",
            "convox.yml",
            "--id",
            "-d",
            "first",
            "-a",
            "shop",
        )
        assert done.returncode == 0, done.stderr


@pytest.fixture
def world(tmp_path: Path, fake_bin: Path) -> World:
    return World(tmp_path, fake_bin)


# -- heroku --------------------------------------------------------------------------------------
def test_heroku_version_and_formation(world: World) -> None:
    version = world.run("heroku", "--version", HEROKU_API_KEY="k")
    assert version.stdout == "heroku/11.10.0 linux-x64 node-v20.20.2\n"
    assert version.stderr == " \u203a   Warning: HEROKU_API_KEY set to [REDACTED]\n"
    formation = world.run("heroku", "ps:scale", "-a", "acme-shop")
    assert (formation.stdout, formation.stderr) == ("web=2:standard-1X worker=1:standard-2X\n", "")

    scaled = world.run("heroku", "ps:scale", "worker=0", "-a", "acme-shop")

    assert scaled.returncode == 0
    assert scaled.stdout == ""
    assert scaled.stderr == "Scaling dynos... done, now running worker at 0:standard-2X\n"
    assert world.run("heroku", "ps:scale", "-a", "acme-shop").stdout == (
        "web=2:standard-1X worker=0:standard-2X\n"
    )
    dynos = json.loads(world.run("heroku", "ps", "--json", "-a", "acme-shop").stdout)
    assert [d["name"] for d in dynos] == ["web.1", "web.2"]


def test_heroku_maintenance_and_errors(world: World) -> None:
    assert world.run("heroku", "maintenance", "-a", "acme-shop").stdout == "off\n"
    on = world.run("heroku", "maintenance:on", "-a", "acme-shop")
    assert (on.returncode, on.stdout, on.stderr) == (
        0,
        "",
        "Enabling maintenance mode for acme-shop... done\n",
    )
    assert world.run("heroku", "maintenance", "-a", "acme-shop").stdout == "on\n"

    missing = world.run("heroku", "config", "--json", "-a", "nope")
    assert (missing.returncode, missing.stdout) == (2, "")
    assert missing.stderr == (
        f"{ERR}: Couldn't find that app.\n \u203a\n \u203a   Error ID: not_found\n"
    )
    unknown = world.run("heroku", "notacommand", "-a", "acme-shop")
    assert unknown.returncode == 127
    assert "is not a heroku command" in unknown.stderr


def test_heroku_fails_once_with_a_500(world: World) -> None:
    argv = ("heroku", "config", "--json", "-a", "acme-shop")
    first = world.run(*argv, FAKE_FAIL="heroku config:once")
    second = world.run(*argv, FAKE_FAIL="heroku config:once")

    assert first.returncode == 2
    assert first.stderr == (
        f"{ERR}: Internal server error.\n \u203a\n \u203a   Error ID: internal_server_error\n"
    )
    assert second.returncode == 0
    assert json.loads(second.stdout)["SECRET_KEY_BASE"] == world.secrets.secret_key_base
    assert second.stdout.startswith('{\n  "')  # the CLI prints 2-space-indented JSON


def test_the_heroku_adapter_reads_the_fake(world: World, tmp_path: Path) -> None:
    masker = SecretMasker()
    heroku = HerokuAdapter(world.runner(), masker, "acme-shop", tmp_path / "work")

    assert heroku.version() == (11, 10, 0)
    assert heroku.app_info()["app"]["name"] == "acme-shop"
    assert [(f.type, f.quantity, f.size) for f in heroku.formation()] == [
        ("web", 2, "standard-1X"),
        ("worker", 1, "standard-2X"),
    ]
    assert {a["addon_service"]["name"] for a in heroku.addons()} == {
        "heroku-postgresql",
        "heroku-redis",
        "papertrail",
    }
    assert heroku.maintenance() is False
    url = heroku.credentials_url("DATABASE")
    assert ConnInfo.from_url(url).password == world.secrets.heroku_db_password
    assert world.secrets.heroku_db_password in masker
    heroku.set_maintenance(True)
    heroku.scale("worker", 0)
    assert heroku.backup_capture("DATABASE", timeout=30) == "b001"
    assert heroku.backup_url("b001").startswith("https://127.0.0.1:9/backup.dump?")


# -- convox --------------------------------------------------------------------------------------
def test_convox_env_set_reads_stdin_and_prints_only_the_release_id(world: World) -> None:
    assert world.run("convox", "apps", "create", "shop").stdout == "Creating shop... OK\n"

    done = world.run("convox", "env", "set", "--id", "-a", "shop", stdin="B=2\nA=1\nnoequals\n")

    assert done.returncode == 0
    assert re.fullmatch(r"R[A-Z]{10}", done.stdout), done.stdout
    assert done.stderr == f"Setting A, B... OK\nRelease: {done.stdout}\n"
    assert world.run("convox", "env", "-a", "shop").stdout == "A=1\nB=2\n"
    (call,) = [c for c in read_calls(world.calls) if c["argv"][:3] == ["convox", "env", "set"]]
    assert call["stdin"] == "B=2\nA=1\nnoequals\n"


def test_convox_errors_look_real(world: World) -> None:
    missing = world.run("convox", "apps", "info", "-a", "shop")
    assert (missing.returncode, missing.stdout, missing.stderr) == (
        1,
        "",
        "ERROR: app not found: shop\n",
    )
    world.run("convox", "apps", "create", "shop")
    again = world.run("convox", "apps", "create", "shop")
    assert (again.returncode, again.stdout, again.stderr) == (
        1,
        "Creating shop... ",
        "ERROR: app already exists: shop\n",
    )
    rack = world.run("convox", "rack", "-r", "other/rack")
    assert (rack.returncode, rack.stderr) == (1, "ERROR: could not find rack: other/rack\n")
    help_text = world.run("convox", "domains")
    assert help_text.returncode == 0 and "convox deploy" in help_text.stdout
    failing = world.run(
        "convox", "deploy", ".", "--id", "-a", "shop", FAKE_FAIL="convox deploy:always"
    )
    assert (failing.returncode, failing.stdout) == (1, "")
    assert failing.stderr.endswith("ERROR: err1\n")


def test_convox_refuses_what_the_real_cli_refuses_from_the_facts_file(world: World) -> None:
    """The recording fake parses through cutover.adapters.convox_cli (pkg/cli/apps.go,
    stdcli validate.go): the same ``ERROR:`` line and exit 1 as the real CLI, nothing done."""
    created = world.run("convox", "apps", "create", "shop", "-a", "shop")
    assert (created.returncode, created.stdout, created.stderr) == (
        1,
        "",
        "ERROR: unknown flag: -a\n",
    )
    long_flag = world.run("convox", "apps", "create", "shop", "--app", "shop")
    assert (long_flag.returncode, long_flag.stderr) == (1, "ERROR: unknown flag: --app\n")
    extra = world.run("convox", "apps", "create", "shop", "other")
    assert (extra.returncode, extra.stderr) == (1, "ERROR: no more than 1 arg expected\n")
    assert "shop" not in world.data()["convox"]["apps"]
    run = world.run("convox", "run", "web", "-a", "shop")
    assert (run.returncode, run.stderr) == (1, "ERROR: at least 2 args required\n")


def test_the_convox_adapter_reads_the_fake(world: World) -> None:
    convox = ConvoxAdapter(world.runner(), SecretMasker(), "shop", "acme/production")
    assert convox.app_exists() is False
    convox.create_app()
    assert convox.app_exists() is True
    env_release = convox.env_set({"SECRET_KEY_BASE": "abcd", "PLAIN": "1"})
    assert convox.env() == {"PLAIN": "1", "SECRET_KEY_BASE": "abcd"}
    assert convox.active_release() is None

    release = convox.deploy(world.folder, "convox.yml", "cutover r1 deploy")

    assert release != env_release
    assert convox.active_release() == release
    (build,) = convox.builds()
    assert (build["STATUS"], build["RELEASE"], build["DESCRIPTION"]) == (
        "complete",
        release,
        "cutover r1 deploy",
    )
    assert "services:" in convox.release_manifest(release)
    assert convox.service_domain("web") == f"web.shop.{seed.RACK_DOMAIN}"
    assert convox.router() == seed.ROUTER
    assert convox.resource_url("database").startswith("postgres://app:")
    convox.promote(env_release)
    assert convox.active_release() == env_release


def test_a_deploy_without_required_env_fails_its_build(world: World) -> None:
    world.run("convox", "apps", "create", "shop")
    failed = world.run("convox", "deploy", str(world.folder), "--id", "-a", "shop")
    assert failed.returncode == 1
    assert "required env: SECRET_KEY_BASE" in failed.stderr
    assert failed.stderr.endswith("ERROR: build failed\n")


def test_the_proxy_really_listens_until_it_is_killed(world: World) -> None:
    world.deployed()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proxy = subprocess.Popen(
        [
            str(world.bin_dir / "convox"),
            "resources",
            "proxy",
            "database",
            "--port",
            str(port),
            "-a",
            "shop",
        ],
        env=world.env(),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert proxy.stdout is not None
        banner = proxy.stdout.readline()
        assert banner == (
            f"proxying localhost:{port} to resource-database.shop.svc.cluster.local:5432\n"
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert proxy.stdout.readline() == f"connect: {port}\n"
        assert proxy.poll() is None
    finally:
        proxy.terminate()
        proxy.communicate(timeout=10)
    assert proxy.returncode == -15  # killed by the signal, as the real (Go) proxy


def test_psql_answers_for_the_database_the_environment_selects(world: World) -> None:
    world.deployed()
    pg = PostgresAdapter(world.runner(), SecretMasker())
    source = ConnInfo.from_url(world.secrets.heroku_database_url)

    assert pg.server_major(source) == 15
    rows = pg.fingerprints(source)
    assert rows['public."AuditLog"'] == (
        77,
        seed.source_data()["tables"]['public."AuditLog"']["md5"],
    )
    assert rows["sequence:public.users_id_seq"] == (0, "1200")
    assert pg.fingerprints(source, checksums=False)["public.users"] == (1200, "")

    wrong = ConnInfo(source.host, source.port, source.user, source.dbname, "not-the-password")
    with pytest.raises(CommandError) as caught:
        pg.psql(wrong, "SHOW server_version_num;")
    assert caught.value.returncode == 2
    assert "password authentication failed" in caught.value.stderr_tail
    nowhere = ConnInfo("127.0.0.1", 9, "app", "app", "x")
    with pytest.raises(CommandError) as caught:
        pg.psql(nowhere, "SHOW server_version_num;")
    assert "Connection refused" in caught.value.stderr_tail


def test_hooks_can_live_in_the_world_and_fire_at_their_nth_match(world: World) -> None:
    with update_world(world.path) as data:
        data["hooks"] = {"fail": "heroku maintenance@2:once"}

    codes = [world.run("heroku", "maintenance", "-a", "acme-shop").returncode for _ in range(3)]

    assert codes == [0, 2, 0]
    assert world.data()["hook_counts"] == {"heroku maintenance@2:once": 3}


def test_a_kill_hook_never_kills_a_parent_that_is_not_cutover(world: World) -> None:
    relay = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            relay,
            str(world.bin_dir / "heroku"),
            "maintenance",
            "-a",
            "acme-shop",
        ],
        capture_output=True,
        text=True,
        env=world.env(FAKE_KILL_PARENT="heroku maintenance:before"),
        timeout=30,
        check=False,
    )
    assert result.returncode != 0
    assert "refusing to kill parent" in result.stderr
    assert world.data().get("kills") is None
