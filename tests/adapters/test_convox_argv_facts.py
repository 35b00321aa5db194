"""Every argv the convox adapter can build, checked against the real CLI's registered flags.

The facts come from ``cutover/adapters/convox_cli.json`` (read from the convox source at the
commit it names: ``pkg/cli/*.go`` register calls, ``pkg/structs`` option tags, stdcli's
validators). The adapter and the steps' plan output (``describe``) are driven with a recording
runner that answers like the real CLI, so no stand-in is involved: a flag the real CLI does not
register fails here whatever the stand-ins accept (issue 7: ``apps create -a`` did exactly that).
"""

from __future__ import annotations

import contextlib
import inspect
import shlex
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cutover.adapters import convox_cli
from cutover.adapters.convox import ConvoxAdapter
from cutover.engine.context import build_context
from cutover.engine.plan import new_state
from cutover.playbook import load_playbook
from cutover.runner import Result
from cutover.secrets import SecretMasker
from cutover.steps import STEPS

APP = "shop"
RELEASE = "RABCDEFGHIJ"
MANIFEST = """\
resources:
  database:
    type: postgres
services:
  web:
    build: .
    port: 3000
  worker:
    build: .
timers:
  cleanup:
    schedule: "0 3 * * *"
    service: worker
    command: bin/cleanup
"""

# What the real commands print (pkg/cli/*.go: Info blocks, tables, ``--id`` release ids).
ANSWERS: dict[tuple[str, ...], str] = {
    ("version",): "client: 3.21.3\nserver: 3.21.3\n",
    ("switch",): "rack1\n",
    ("rack",): "Name     rack1\nRouter   router.rack1.example\nStatus   running\n",
    ("apps", "info"): f"Name     {APP}\nStatus   running\nRelease  {RELEASE}\n",
    ("env",): "A=1\n",
    ("env", "set"): RELEASE,
    ("deploy",): RELEASE,
    ("build",): RELEASE,
    ("builds",): f"ID          STATUS    RELEASE      STARTED  ELAPSED  DESCRIPTION\n"
    f"BABCDEFGHI  complete  {RELEASE}  1m ago   1m       cutover x deploy y\n",
    ("releases",): f"ID           STATUS  BUILD       CREATED  DESCRIPTION\n"
    f"{RELEASE}  active  BABCDEFGHI  1m ago   \n",
    ("releases", "manifest"): MANIFEST,
    ("services",): "SERVICE  DOMAIN                PORTS     SCALE\n"
    "web      web.shop.example  443:3000  1\n",
    ("scale",): "SERVICE  DESIRED  RUNNING  CPU  MEMORY\nweb      1        1        256  512\n",
    ("ps",): "ID     SERVICE  STATUS   RELEASE      STARTED  COMMAND\n",
    ("resources", "url"): "postgres://app:pw@resource-database.shop.svc:5432/app\n",
    # pkg/cli/certs.go: the table, and the id alone on stdout with --id.
    ("certs",): "ID          DOMAIN            EXPIRES          Status\n"
    "cert-abcde  www.example.test  2 months from now  Ready\n",
    ("certs", "import"): "cert-abcde",
    ("certs", "generate"): "cert-0123456789abcdef0123456789abcdef01234567",
    ("letsencrypt", "dns"): "ID  DNS-ZONES     HOSTED-ZONE-ID  REGION  ROLE\n"
    "1   example.test                          arn:aws:iam::1:role/dns\n",
}


class RecordingRunner:
    """Answers like the real convox CLI and records every argv (run and start)."""

    def __init__(self) -> None:
        self.argvs: list[list[str]] = []

    def environment(self, extra: Any = None) -> dict[str, str]:
        return {}

    def run(self, argv: list[str], **_: Any) -> Result:
        self.argvs.append(list(argv))
        words = tuple(a for a in argv[1:3] if not a.startswith("-"))
        out = ANSWERS.get(words[:2], ANSWERS.get(words[:1], ""))
        return Result(list(argv), 0, out, "", 0.0)

    @contextlib.contextmanager
    def start(self, argv: list[str], **_: Any) -> Iterator[None]:
        self.argvs.append(list(argv))
        yield None


# Every public ConvoxAdapter method, called the ways cutover calls it. A new method must be added
# here (test_every_adapter_method_is_covered), so its argv is checked too.
CALLS: dict[str, list[Callable[[ConvoxAdapter], Any]]] = {
    "argv": [lambda a: a.runner.run(a.argv("rack", app=False))],
    "version": [lambda a: a.version()],
    "version_argv": [lambda a: a.runner.run(a.version_argv())],
    "create_app_argv": [lambda a: a.runner.run(a.create_app_argv())],
    "current_rack": [lambda a: a.current_rack()],
    "rack_info": [lambda a: a.rack_info()],
    "router": [lambda a: a.router()],
    "app_exists": [lambda a: a.app_exists()],
    "app_status": [lambda a: a.app_status()],
    "create_app": [lambda a: a.create_app()],
    "env": [lambda a: a.env()],
    "env_set": [lambda a: a.env_set({"A": "1"})],
    "deploy": [lambda a: a.deploy(Path("/src"), "convox.yml", "cutover r deploy n")],
    "build": [lambda a: a.build(Path("/src"), "convox.yml", "cutover r deploy n")],
    "builds": [lambda a: a.builds()],
    "releases": [lambda a: a.releases()],
    "latest_release": [lambda a: a.latest_release()],
    "active_release": [lambda a: a.active_release()],
    "release_manifest": [lambda a: a.release_manifest(RELEASE)],
    "promote": [lambda a: a.promote(RELEASE)],
    "services": [lambda a: a.services()],
    "service_domain": [lambda a: a.service_domain("web")],
    "scale_table": [lambda a: a.scale_table()],
    "scale_argv": [lambda a: a.runner.run(a.scale_argv("worker", 0))],
    "scale": [lambda a: a.scale("worker", 2)],
    "processes": [lambda a: a.processes(), lambda a: a.processes(service="web", release=RELEASE)],
    "resource_url": [lambda a: a.resource_url("database")],
    "proxy_argv": [lambda a: a.runner.run(a.proxy_argv("database", 5999))],
    "proxy": [lambda a: a.runner.run(a.proxy_argv("database", 5999))],  # the same argv
    "hold_proxy": [lambda a: a.runner.run(a.proxy_argv("database", 5999))],  # the same argv
    "close": [lambda a: a.runner.run(a.proxy_argv("database", 5999))],  # stops hold_proxy's
    "run_argv": [
        lambda a: a.runner.run(a.run_argv("web", "bin/migrate", RELEASE, 600)),
        lambda a: a.runner.run(a.run_argv("web", "rake db:migrate && x", None, 60)),
    ],
    "run_command": [
        lambda a: a.run_command("web", "bin/migrate", release=RELEASE, timeout=600),
        lambda a: a.run_command("web", "bin/migrate"),
    ],
    # Certificates (steps/tls.py): rack-level, no -a.
    "certs_argv": [lambda a: a.runner.run(a.certs_argv(generated=True))],
    "certificates": [lambda a: a.certificates(), lambda a: a.certificates(generated=True)],
    "certs_import_argv": [lambda a: a.runner.run(a.certs_import_argv("p.pem", "k.pem", "c.pem"))],
    "certs_import": [lambda a: a.certs_import(Path("p.pem"), Path("k.pem"), None)],
    "certs_generate_argv": [lambda a: a.runner.run(a.certs_generate_argv("www.example.test"))],
    "certs_generate": [lambda a: a.certs_generate("www.example.test")],
    "route53_solvers": [lambda a: a.route53_solvers()],
    "route53_add_argv": [
        lambda a: a.runner.run(a.route53_add_argv(1, ["example.test"], "arn", "Z1", "us-east-1"))
    ],
    "route53_add": [lambda a: a.route53_add(1, ["example.test", "example.org"], "arn")],
    # The in-rack copy (cutover/steps/inrack.py): the runner records the argv when started.
    "start_run": [
        lambda a: a.start_run("pgclient", "sh -c 'read -r x'", "secret\n", 3600).__enter__()
    ],
}


def _adapter(rack: str | None) -> ConvoxAdapter:
    return ConvoxAdapter(RecordingRunner(), SecretMasker(), APP, rack)  # type: ignore[arg-type]


def test_every_adapter_method_is_covered() -> None:
    public = {
        name
        for name, _ in inspect.getmembers(ConvoxAdapter, inspect.isfunction)
        if not name.startswith("_")
    }
    assert public <= set(CALLS), f"add these to CALLS: {sorted(public - set(CALLS))}"


@pytest.mark.parametrize("rack", ["rack1", None])
@pytest.mark.parametrize("method", sorted(CALLS))
def test_adapter_argv_is_accepted_by_the_real_cli(method: str, rack: str | None) -> None:
    """pkg/cli/*.go at the facts file's commit registers every flag the adapter passes."""
    adapter = _adapter(rack)
    for call in CALLS[method]:
        call(adapter)
    argvs = adapter.runner.argvs  # type: ignore[attr-defined]
    assert argvs, f"{method} ran nothing"
    for argv in argvs:
        assert argv[0] == "convox"
        assert convox_cli.refusal(argv) is None, (
            f"{shlex.join(argv)}: the real CLI says {convox_cli.refusal(argv)}"
        )
        parsed = convox_cli.parse(argv[1:])
        assert parsed.command is not None, f"{shlex.join(argv)}: not a convox command"


def test_version_asks_the_playbook_rack_when_known() -> None:
    """pkg/cli/version.go registers -r (flagRack) and asks rack.Current(c), which honours it:
    an unreachable *current* rack does not fail preflight when the playbook names the rack."""
    with_rack, without = _adapter("rack1"), _adapter(None)
    with_rack.version()
    without.version()
    assert with_rack.runner.argvs == [["convox", "version", "-r", "rack1"]]  # type: ignore[attr-defined]
    assert without.runner.argvs == [["convox", "version"]]  # type: ignore[attr-defined]


def test_run_passes_the_timeout_and_ends_flags_before_the_command() -> None:
    """pkg/cli/run.go: ``--timeout`` (IntFlag "timeout", "t") is how long the pod sleeps, i.e.
    how long the command may run; ``--`` keeps the command's own flags away from the CLI."""
    adapter = _adapter("rack1")
    adapter.run_command("web", "bin/rails db:migrate --trace", release=RELEASE, timeout=900)
    argv = adapter.runner.argvs[0]  # type: ignore[attr-defined]
    assert argv == [
        "convox",
        "run",
        "web",
        "--release",
        RELEASE,
        "--timeout",
        "900",
        "-a",
        APP,
        "-r",
        "rack1",
        "--",
        "bin/rails db:migrate --trace",
    ]
    parsed = convox_cli.parse(argv[1:])
    assert parsed.flags["timeout"] == 900
    assert parsed.args == ["web", "bin/rails db:migrate --trace"]


def test_apps_create_passes_the_name_and_rack_only() -> None:
    """pkg/cli/apps.go ``apps create`` registers --generation/-g, --timeout and -r only
    (structs.AppCreateOptions): ``-a`` is ``ERROR: unknown flag: -a``, exit 1."""
    adapter = _adapter("rack1")
    adapter.create_app()
    assert adapter.runner.argvs == [  # type: ignore[attr-defined]
        ["convox", "apps", "create", APP, "-r", "rack1"]
    ]
    assert convox_cli.refusal(["convox", "apps", "create", APP, "-a", APP]) == (
        "ERROR: unknown flag: -a"
    )


PLAYBOOK = f"""\
version: 1
heroku:
  app: shop-heroku
convox:
  app: {APP}
{{rack}}
database:
  resource: database
smoke:
  service: web
  checks:
    - path: /
dns:
  provider: manual
  zone: example.test
  record: www.example.test
window:
  scale_down: [worker]
{{release}}
"""


@pytest.mark.parametrize("rack", ["  rack: rack1", ""])
@pytest.mark.parametrize(
    "release", ["release:\n  command: bin/rails db:migrate\n  timeout: 900", ""]
)
def test_every_planned_convox_command_is_accepted(tmp_path: Path, rack: str, release: str) -> None:
    """The plan (``describe``) of every step, with and without a rack and a release command:
    every convox line in it must parse as the real CLI parses it (pkg/cli, stdcli)."""
    (tmp_path / "convox.yml").write_text(MANIFEST, encoding="utf-8")
    path = tmp_path / "cutover.yml"
    path.write_text(PLAYBOOK.format(rack=rack, release=release), encoding="utf-8")
    playbook = load_playbook(path)
    state = new_state(playbook)

    class Quiet:
        def note(self, message: str) -> None:
            pass

    ctx = build_context(
        playbook, state, masker=SecretMasker(), audit=None, reporter=Quiet(), sandbox_optional=True
    )
    seen = 0
    for step in STEPS:
        if step.applies(playbook.model) is not None:
            continue
        for line in step.describe(ctx):
            if not line.startswith("convox "):
                continue
            # Placeholders a plan shows for values known only at run time.
            argv = shlex.split(line.split("   ")[0].replace("'<free port>'", "5999"))
            assert convox_cli.refusal(argv) is None, (
                f"{step.id}: {line}: the real CLI says {convox_cli.refusal(argv)}"
            )
            seen += 1
    assert seen >= 10


def test_services_parse_by_header_with_every_optional_column() -> None:
    """pkg/cli/services.go: SERVICE DOMAIN PORTS, then NLB PORTS (a header with a space), SCALE,
    AUTOSCALE, COLD, BUDGET when present: columns are found by header, not by position."""
    from cutover.adapters.convoxparse import parse_table  # noqa: PLC0415

    cells = [
        ["SERVICE", "DOMAIN", "PORTS", "NLB PORTS", "SCALE", "AUTOSCALE", "COLD"],
        ["web", "web.shop.rack.example", "443:3000", "8443:3000/tls", "1-4", "cpu>70%", "-"],
        ["worker", "", "", "", "1", "-", "-"],
    ]
    # stdcli's table: every column but the last padded to its widest cell, two-space gutters.
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    text = "".join(
        "  ".join([c.ljust(w) for c, w in zip(row[:-1], widths, strict=False)] + [row[-1]]) + "\n"
        for row in cells
    )
    rows = parse_table(text, ["SERVICE", "DOMAIN"])
    assert [(r["SERVICE"], r["DOMAIN"], r["SCALE"]) for r in rows] == [
        ("web", "web.shop.rack.example", "1-4"),
        ("worker", "", "1"),
    ]
    assert rows[0]["NLB PORTS"] == "8443:3000/tls" and rows[0]["PORTS"] == "443:3000"
