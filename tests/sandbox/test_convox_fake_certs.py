"""The convox stand-in's router: a custom domain's certificate is issued only once the name
resolves to the router (HTTP-01 semantics of the rack's cert-manager, provider/k8s).

Real Knot DNS server and real HTTPS web process: ``slow``.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import pytest
from convox_support import Sandbox
from support.tls import peer_dns_names
from support.waiting import wait_for

from cutover.adapters.dns import Record, Rfc2136Provider
from cutover.sandbox import convox_fake as fake
from cutover.sandbox import procs
from cutover.sandbox.knot import KnotServer
from cutover.sandbox.tls import SandboxCA

pytestmark = pytest.mark.slow

ROUTER = "router.sandbox.convox.test"
MANIFEST = """\
services:
  web:
    build: .
    port: 3000
    domain: app.example.test
"""


@pytest.fixture
def routed(app: Sandbox, knot_server: KnotServer) -> Iterator[tuple[Sandbox, int, SandboxCA]]:
    ca = SandboxCA.create(app.root / "ca")
    cert, key = app.root / "ca" / "router.pem", app.root / "ca" / "router-key.pem"
    ca.issue([ROUTER, "localhost", "127.0.0.1"], cert, key)
    port = procs.free_port()
    fake.configure_rack(
        app.config,
        name="sandbox",
        domain=ROUTER,
        router=fake.Router(
            "127.0.0.1",
            port,
            str(cert),
            str(key),
            ca_folder=str(ca.folder),
            dns_host="127.0.0.1",
            dns_port=knot_server.port,
        ),
    )
    yield app, port, ca
    fake.stop_processes(app.config)


def names_served(port: int, name: str, ca: SandboxCA) -> list[str]:
    return peer_dns_names(port, name, ssl.create_default_context(cafile=str(ca.ca_file)))


def test_custom_domain_gets_its_certificate_only_once_dns_points_at_the_router(
    routed: tuple[Sandbox, int, SandboxCA], knot_server: KnotServer
) -> None:
    app, port, ca = routed
    app.write_manifest(MANIFEST)
    app.ok("deploy", "-a", "demo")
    assert fake.read_state(app.config)["certificates"]["app.example.test"]["status"] == "pending"
    # The name still points at Heroku: the router serves its default certificate.
    with pytest.raises(ssl.SSLCertVerificationError):
        names_served(port, "app.example.test", ca)
    assert names_served(port, ROUTER, ca) == [ROUTER, "localhost"]
    Rfc2136Provider(
        "127.0.0.1",
        knot_server.port,
        knot_server.zone,
        knot_server.tsig_name,
        knot_server.tsig_secret,
    ).set(Record("app", "CNAME", 60, [ROUTER + "."]))

    def issued() -> bool:
        state = fake.read_state(app.config)
        return bool(state["certificates"]["app.example.test"]["status"] == "issued")

    wait_for(issued)
    assert names_served(port, "app.example.test", ca) == ["app.example.test"]
    assert not fake.read_state(app.config).get("jobs")
