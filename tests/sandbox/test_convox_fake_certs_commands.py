"""The convox stand-in's certificate commands, from pkg/cli/certs.go (argv, output, exit codes),
pkg/structs/dns.go (solver validation) and provider/k8s/certificate.go (ids, listing, async
issuance); and the router serving a service's ``certificate: {id}`` (pkg/manifest/service.go).

The router tests start a real HTTPS web process (and the DNS-01 one a rack-side job): ``slow``.
"""

from __future__ import annotations

import hashlib
import re
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from convox_support import Sandbox
from support.tls import peer_dns_names
from support.waiting import wait_for

from cutover.sandbox import convox_fake as fake
from cutover.sandbox import procs
from cutover.sandbox.tls import SandboxCA

ROUTER = "router.sandbox.convox.test"
NAME = "app.example.test"


def _import_files(folder: Path, *names: str) -> tuple[trustme.CA, Path, Path, Path]:
    """A CA outside the sandbox (the operator's), a leaf for ``names`` and its chain files."""
    ca = trustme.CA(organization_name="operator CA")
    leaf = ca.issue_cert(*names, common_name=names[0])
    pub, key, chain = folder / "pub.pem", folder / "key.pem", folder / "chain.pem"
    pub.write_bytes(leaf.cert_chain_pems[0].bytes())
    key.write_bytes(leaf.private_key_pem.bytes())
    chain.write_bytes(ca.cert_pem.bytes())
    return ca, pub, key, chain


def test_certs_import_prints_the_id_like_pkg_cli_certs_go(sandbox: Sandbox) -> None:
    _, pub, key, chain = _import_files(sandbox.root, NAME)
    out = sandbox.ok("certs", "import", str(pub), str(key), "--chain", str(chain))
    match = re.fullmatch(r"Importing certificate\.\.\. OK, (cert-[a-z0-9]{5})\n", out)
    assert match, out
    listed = sandbox.ok("certs").splitlines()
    assert listed[0].split() == ["ID", "DOMAIN", "EXPIRES", "Status"]
    row = next(line for line in listed if line.startswith(match.group(1)))
    assert NAME in row and "from now" in row and row.endswith("Ready")


def test_certs_import_id_flag_puts_only_the_id_on_stdout(sandbox: Sandbox) -> None:
    _, pub, key, _ = _import_files(sandbox.root, NAME)
    result = sandbox.run("certs", "import", str(pub), str(key), "--id")
    assert result.returncode == 0
    assert re.fullmatch(r"cert-[a-z0-9]{5}", result.stdout)
    assert "Importing certificate... OK" in result.stderr


def test_certs_import_refuses_a_missing_file_and_a_wrong_arity(sandbox: Sandbox) -> None:
    missing = sandbox.run("certs", "import", "nope.pem", "key.pem")
    assert (missing.returncode, missing.stderr) == (
        1,
        "ERROR: open nope.pem: no such file or directory\n",
    )
    arity = sandbox.run("certs", "import", "one.pem")
    assert (arity.returncode, arity.stderr) == (1, "ERROR: 2 args required\n")


def test_route53_solver_add_validates_then_lists(sandbox: Sandbox) -> None:
    no_id = sandbox.run("letsencrypt", "dns", "route53", "add", "--dns-zones", "example.test")
    assert (no_id.returncode, no_id.stderr) == (1, "ERROR: invalid id or id is not provided\n")
    no_role = sandbox.run(
        "letsencrypt", "dns", "route53", "add", "--id", "1", "--dns-zones", "example.test"
    )
    assert no_role.stderr == "ERROR: route53 access role is required\n"
    args = ["--id", "1", "--dns-zones", "example.test", "--role", "arn:aws:iam::1:role/dns"]
    assert sandbox.ok("letsencrypt", "dns", "route53", "add", *args, "--region", "us-east-1") == (
        "OK\n"
    )
    again = sandbox.run("letsencrypt", "dns", "route53", "add", *args)
    assert again.stderr == "ERROR: id required or provided id is already in use\n"
    assert sandbox.ok("letsencrypt", "dns", "route53", "list").splitlines() == [
        "ID  DNS-ZONES     HOSTED-ZONE-ID  REGION     ROLE",
        "1   example.test                  us-east-1  arn:aws:iam::1:role/dns",
    ]


def test_certs_generate_refuses_an_unknown_issuer(sandbox: Sandbox) -> None:
    result = sandbox.run("certs", "generate", NAME, "--issuer", "other")
    assert (result.returncode, result.stderr) == (1, "ERROR: invalid issuer\n")
    assert result.stdout == "Generating certificate... "


@pytest.fixture
def routed(sandbox: Sandbox) -> Iterator[tuple[Sandbox, int, SandboxCA]]:
    ca = SandboxCA.create(sandbox.root / "ca")
    cert, key = sandbox.root / "ca" / "router.pem", sandbox.root / "ca" / "router-key.pem"
    ca.issue([ROUTER, "localhost", "127.0.0.1"], cert, key)
    port = procs.free_port()
    # No DNS server: nothing here may depend on the name resolving (DNS-01, imports).
    fake.configure_rack(
        sandbox.config,
        name="sandbox",
        domain=ROUTER,
        router=fake.Router("127.0.0.1", port, str(cert), str(key), ca_folder=str(ca.folder)),
        # Issuing takes long enough for the two CLI calls that look for it before (a loaded
        # 2-core CI box took over 0.5 s for them).
        timings={"certificate": 4.0, "poll": 0.2},
    )
    sandbox.ok("apps", "create", "demo")
    yield sandbox, port, ca
    fake.stop_processes(sandbox.config)


def _manifest(certificate: str) -> str:
    return (
        "services:\n  web:\n    build: .\n    port: 3000\n"
        f"    domain: {NAME}\n    certificate:\n      id: {certificate}\n"
    )


@pytest.mark.slow
def test_router_serves_an_imported_certificate_named_in_the_manifest(
    routed: tuple[Sandbox, int, SandboxCA],
) -> None:
    box, port, _ = routed
    operator_ca, pub, key, chain = _import_files(box.root, NAME)
    result = box.run("certs", "import", str(pub), str(key), "--chain", str(chain), "--id")
    box.write_manifest(_manifest(result.stdout))
    box.ok("deploy", "-a", "demo")
    context = ssl.create_default_context()
    operator_ca.configure_trust(context)
    assert peer_dns_names(port, NAME, context) == [NAME]


@pytest.mark.slow
def test_dns01_certificate_is_issued_asynchronously_without_dns(
    routed: tuple[Sandbox, int, SandboxCA],
) -> None:
    box, port, ca = routed
    box.ok(
        "letsencrypt",
        "dns",
        "route53",
        "add",
        "--id",
        "1",
        "--dns-zones",
        "example.test",
        "--role",
        "arn:aws:iam::1:role/dns",
    )
    ident = box.run("certs", "generate", NAME, "--issuer", "letsencrypt", "--id").stdout
    assert ident == "cert-" + hashlib.sha1(NAME.encode()).hexdigest()
    pending = box.ok("certs", "--generated")
    assert re.search(rf"^{ident}\s+Not Ready$", pending, re.M), pending
    assert ident not in box.ok("certs")

    wait_for(lambda: ident in box.ok("certs"))
    row = next(line for line in box.ok("certs").splitlines() if line.startswith(ident))
    assert NAME in row and row.endswith("Ready") and "Not Ready" not in row
    again = box.run("certs", "generate", NAME, "--issuer", "letsencrypt")
    assert again.returncode == 1 and "already exists" in again.stderr

    box.write_manifest(_manifest(ident))
    box.ok("deploy", "-a", "demo")
    context = ssl.create_default_context(cafile=str(ca.ca_file))

    def served() -> bool:
        try:
            return peer_dns_names(port, NAME, context) == [NAME]
        except ssl.SSLCertVerificationError:
            return False  # the router's default certificate until the rollout installs it

    wait_for(served, "the DNS-01 certificate served for the name")
