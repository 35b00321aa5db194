"""Found by `make audit` (cutover/sandbox/audit): cutover passed its whole environment to every
child, so the webhook URL (and a TLS key, a Cloudflare token, a TSIG secret) reached convox,
pg_dump, the heroku CLI, none of which reads it. The runner now withholds the variables of
secrets only cutover reads (engine/context.py own_secret_vars)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from cutover.engine.context import TSIG_SECRET_VAR, make_runner, own_secret_vars
from cutover.playbook import load_playbook
from cutover.secrets import SecretMasker

PLAYBOOK = """\
version: 1
heroku: {app: myapp-sandbox}
convox: {app: myapp, rack: sandbox}
dns:
  provider: cloudflare
  zone: example.test
  record: www.example.test
  cloudflare: {token_env: MY_CF_TOKEN}
notify: {webhook_env: MY_WEBHOOK}
tls: {mode: import, cert: server.pem, key_env: MY_TLS_KEY}
"""


def test_a_child_never_gets_the_webhook_url_nor_the_dns_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "cutover.yml"
    path.write_text(PLAYBOOK)
    playbook = load_playbook(path)
    assert own_secret_vars(playbook) == {"MY_WEBHOOK", "MY_CF_TOKEN", "MY_TLS_KEY", TSIG_SECRET_VAR}
    monkeypatch.setenv("MY_WEBHOOK", "https://hooks.example/T0/B0/s3cret-hook")
    monkeypatch.setenv("MY_CF_TOKEN", "cf-token-s3cret")
    monkeypatch.setenv(TSIG_SECRET_VAR, "dHNpZy1zM2NyZXQ=")
    monkeypatch.setenv("MY_TLS_KEY", "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----")
    monkeypatch.setenv("UNRELATED", "kept")
    runner, _ = make_runner(playbook, SecretMasker(), None)
    code = "import os, json; print(json.dumps(dict(os.environ)))"
    result = runner.run([sys.executable, "-c", code])
    child_env = json.loads(result.stdout)
    for name in ("MY_WEBHOOK", "MY_CF_TOKEN", "MY_TLS_KEY", TSIG_SECRET_VAR):
        assert name not in child_env
    assert child_env["UNRELATED"] == "kept"
    # A call that needs one hands it over explicitly, as for any other secret.
    assert runner.environment({"MY_WEBHOOK": "x"})["MY_WEBHOOK"] == "x"


def test_without_notify_or_cloudflare_only_the_tsig_variable_is_withheld(tmp_path: Path) -> None:
    path = tmp_path / "cutover.yml"
    path.write_text(PLAYBOOK.split("dns:", maxsplit=1)[0])
    assert own_secret_vars(load_playbook(path)) == {TSIG_SECRET_VAR}


def test_the_heroku_api_key_reaches_the_heroku_cli_and_git_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `make audit` warned that convox, pg_dump, psql and pg_restore got HEROKU_API_KEY, which
    # only the heroku CLI (and git, through the `heroku git:credentials` helper) reads.
    folder = tmp_path / "bin"
    folder.mkdir()
    for name in ("heroku", "git", "pg_dump", "convox"):
        tool = folder / name
        tool.write_text(
            f"#!{sys.executable}\nimport json, os\nprint(json.dumps(dict(os.environ)))\n"
        )
        tool.chmod(0o700)
    monkeypatch.setenv("HEROKU_API_KEY", "hk-s3cret")
    monkeypatch.setenv("RACK_URL", "https://convox:rack-s3cret@rack.example")
    runner, _ = make_runner(load_playbook(_write(tmp_path)), SecretMasker(), None)
    runner.path_prefix = [str(folder)]
    seen = {
        name: json.loads(runner.run([name]).stdout)
        for name in ("heroku", "git", "pg_dump", "convox")
    }
    assert seen["heroku"]["HEROKU_API_KEY"] == "hk-s3cret"
    assert seen["git"]["HEROKU_API_KEY"] == "hk-s3cret"
    assert "HEROKU_API_KEY" not in seen["pg_dump"]
    assert "HEROKU_API_KEY" not in seen["convox"]
    # The rack's credentials go to the convox CLI only.
    assert seen["convox"]["RACK_URL"].startswith("https://convox:rack-s3cret@")
    assert "RACK_URL" not in seen["heroku"] and "RACK_URL" not in seen["pg_dump"]
    # Also for a background child.
    with runner.start(["pg_dump"]) as bg:
        deadline = time.monotonic() + 30
        while bg.exit_code() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert bg.exit_code() == 0
        assert "HEROKU_API_KEY" not in json.loads(bg.stdout)


def _write(tmp_path: Path) -> Path:
    path = tmp_path / "cutover.yml"
    path.write_text(PLAYBOOK.split("dns:", maxsplit=1)[0])
    return path
