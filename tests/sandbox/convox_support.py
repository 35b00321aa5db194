"""Helpers for the convox stand-in's tests: a private rack driven through the ``convox`` shim.

Fixtures (registered by ``conftest.py``): ``sandbox`` (a rack with short timings, nothing
deployed), ``app`` (app ``demo`` created, ``convox.yml`` written), ``deployed`` (deployed once).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from support.convox_rack import convox_rack

from cutover.sandbox import convox_fake as fake

RELEASE = r"R[A-Z]{10}"
BUILD = r"B[A-Z]{10}"
# humanize.Time of something that just happened (a loaded machine may take seconds).
AGO = r"(?:now|1 second ago|\d+ seconds ago)"
POD_LINE = re.compile(r"^  (\S+)\s+(\S+)\s+(pending|running)$")
# Short (never zero) rack timings: builds and rollouts still pass through their states.
FAST = {
    "build_created": 0.1,
    "build_running": 0.3,
    "rollout": 0.2,
    "poll": 0.1,
    "resource_start": 0.5,
    "certificate": 0.3,
}
NO_RACK = (
    "ERROR: no current rack, use `convox racks` to list and `convox switch <name>` to select\n"
)
MANIFEST = """\
environment:
  - RAILS_ENV=production
resources:
  database:
    type: postgres
services:
  web:
    build: .
    port: 3000
    resources:
      - database
  worker:
    command: bin/worker --queue default
    resources:
      - database:WORKER_DB_URL
"""


@dataclass
class Sandbox:
    root: Path
    config: Path
    bin: Path
    work: Path
    children: list[subprocess.Popen[str]] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("CONVOX_", "RACK_URL", "XDG_CONFIG"))
        }
        env.update(
            PATH=f"{self.bin}{os.pathsep}{os.environ['PATH']}",
            CONVOX_CONFIG=str(self.config),
            HOME=str(self.root),
        )
        env.update(extra)
        return env

    def run(
        self,
        *args: str,
        input: str | bytes | None = None,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        if isinstance(input, bytes):
            raw = subprocess.run(
                ["convox", *args],
                input=input,
                capture_output=True,
                cwd=cwd or self.work,
                env=env or self.env(),
                timeout=60,
                check=False,
            )
            return subprocess.CompletedProcess(
                raw.args, raw.returncode, raw.stdout.decode(), raw.stderr.decode()
            )
        return subprocess.run(
            ["convox", *args],
            input=input,
            stdin=subprocess.DEVNULL if input is None else None,
            capture_output=True,
            text=True,
            cwd=cwd or self.work,
            env=env or self.env(),
            timeout=60,
            check=False,
        )

    def ok(self, *args: str, input: str | None = None) -> str:
        result = self.run(*args, input=input)
        assert result.returncode == 0, (result.stdout, result.stderr)
        return result.stdout

    def start(self, *args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            ["convox", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=self.work,
            env=self.env(),
        )
        self.children.append(proc)
        return proc

    def state(self) -> dict[str, object]:
        return fake.read_state(self.config)

    def app(self, name: str = "demo") -> dict[str, object]:
        racks = self.state()["racks"]
        assert isinstance(racks, list)
        apps = racks[0]["apps"]
        return dict(apps[name])

    def write_manifest(self, text: str = MANIFEST, name: str = "convox.yml") -> None:
        (self.work / name).write_text(text, encoding="utf-8")


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    box = Sandbox(tmp_path, tmp_path / "cfg", tmp_path / "bin", tmp_path / "work")
    box.work.mkdir()
    with convox_rack(
        box.bin,
        box.config,
        name="sandbox",
        domain="router.sandbox.convox.test",
        postgres=fake.PostgresBackend("127.0.0.1", 5999, "app", "pw-s3cret", "appdb"),
        timings=FAST,
    ):
        try:
            yield box
        finally:
            for proc in box.children:
                if proc.poll() is None:
                    proc.kill()
                proc.communicate(timeout=10)


@pytest.fixture
def app(sandbox: Sandbox) -> Sandbox:
    sandbox.ok("apps", "create", "demo")
    sandbox.write_manifest()
    return sandbox


@pytest.fixture
def deployed(app: Sandbox) -> Sandbox:
    app.ok("deploy", "-a", "demo", "-d", "first deploy")
    return app


def release_ids(box: Sandbox, name: str = "demo") -> list[str]:
    releases = box.app(name)["releases"]
    assert isinstance(releases, list)
    return [r["id"] for r in releases]
