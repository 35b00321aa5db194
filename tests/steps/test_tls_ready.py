"""tls-ready (steps/tls.py) and add-domain's certificate import, in the engine tests' fake world:
the fake convox's ``certs import`` (tests/fakes/convox_certs.py, pkg/cli/certs.go) and the HTTPS
router serving the certificate a release's manifest names (``certificate: {id}``,
pkg/manifest/service.go); cutover runs as a real subprocess.

tls-ready fails for a certificate that does not cover the name and for an expired one, and
passes once a good one is imported; the key never reaches argv, the state or the audit log;
add-domain keeps the operator's comments; under http01 the gap is announced and consented to.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from fakes.harness import RECORD, Project
from fakes.world import update_world

KEY_ENV = "CUTOVER_TEST_TLS_KEY"


def _operator_ca(project: Project) -> trustme.CA:
    ca = trustme.CA(organization_name="operator CA")
    ca.cert_pem.write_to_path(str(project.root / "operator-ca.pem"))
    return ca


def _good(ca: trustme.CA, folder: Path, *names: str) -> tuple[Path, str]:
    """A leaf for ``names`` (cert file) and its key PEM (kept in memory: it goes in the env)."""
    leaf = ca.issue_cert(*names)
    cert = folder / "server.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    return cert, leaf.private_key_pem.bytes().decode()


def _expired(ca: trustme.CA, folder: Path, name: str) -> tuple[Path, str]:
    """cryptography's x509 builder: valid until 40 days ago, signed by ``ca``."""
    ca_key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), password=None)
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=400))
        .not_valid_after(now - timedelta(days=40))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    path = folder / "server.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return path, pem


def _use_import(project: Project, cert: Path) -> None:
    text = project.playbook.read_text()
    text += (
        f"tls:\n  mode: import\n  cert: {cert}\n  key_env: {KEY_ENV}\n"
        f"  ca_file: {project.root / 'operator-ca.pem'}\n"
    )
    project.playbook.write_text(text)


def _body_lines(pem: str) -> list[str]:
    return [line for line in pem.splitlines() if line and "-----" not in line]


def test_tls_ready_fails_for_a_certificate_that_does_not_cover_the_name(project: Project) -> None:
    ca = _operator_ca(project)
    cert, key = _good(ca, project.root, "other.example.test")
    _use_import(project, cert)

    result = project.run("run", "--yes", "--until", "tls-ready", env={KEY_ENV: key})

    assert result.returncode != 0
    assert project.state()["steps"]["tls-ready"]["status"] == "failed"
    assert f"the router does not serve a usable certificate for {RECORD}" in result.output
    assert "does not cover it: it covers other.example.test" in result.output


def test_tls_ready_fails_for_an_expired_certificate_then_passes_after_import(
    project: Project,
) -> None:
    ca = _operator_ca(project)
    cert, key = _expired(ca, project.root, RECORD)
    _use_import(project, cert)

    failed = project.run("run", "--yes", "--until", "tls-ready", env={KEY_ENV: key})

    expired_on = (datetime.now(UTC) - timedelta(days=40)).strftime("%Y-%m-%d")
    assert failed.returncode != 0
    assert f"expired on {expired_on}" in failed.output
    assert project.state()["steps"]["tls-ready"]["status"] == "failed"

    good, good_key = _good(ca, project.root, RECORD)  # same path: the playbook is unchanged
    assert good == cert
    passed = project.run(
        "run", "--yes", "--from", "add-domain", "--until", "tls-ready", env={KEY_ENV: good_key}
    )

    assert passed.returncode == 0, passed
    steps = project.state()["steps"]
    assert steps["tls-ready"]["status"] == "done"
    assert steps["tls-ready"]["outputs"]["names"] == [RECORD]
    assert steps["tls-ready"]["outputs"]["gap_expected"] is False
    imported = steps["add-domain"]["outputs"]["certificate"]
    assert imported in project.world()["convox"]["certs"]
    assert f"id: {imported}" in (project.root / "convox.yml").read_text()
    # The key went to the CLI as a file it reads: never in argv, the state or the audit log.
    places = {
        "argv": project.argv_log.read_text(),
        "state": project.state_path.read_text(),
        "events": project.events_path.read_text(),
        "output": failed.output + passed.output,
    }
    assert '"certs", "import"' in places["argv"]
    for where, text in places.items():
        for secret in (key, good_key):
            for line in _body_lines(secret):
                assert line not in text, f"key material in {where}"


def test_add_domain_keeps_the_operators_comments(project: Project) -> None:
    manifest = project.root / "convox.yml"
    text = manifest.read_text().replace(
        "services:\n  web:\n",
        "# the operator's notes stay\nservices:\n  web:  # takes the production domain\n",
    )
    manifest.write_text(text)
    ca = _operator_ca(project)
    cert, key = _good(ca, project.root, RECORD)
    _use_import(project, cert)

    result = project.run("run", "--yes", "--until", "add-domain", env={KEY_ENV: key})

    assert result.returncode == 0, result
    after = manifest.read_text()
    assert "# the operator's notes stay\n" in after
    assert "  web:  # takes the production domain\n" in after
    assert f"domain: {RECORD}" in after
    assert "certificate:\n      id: cert-" in after


def test_http01_announces_the_gap_and_records_the_consent(project: Project) -> None:
    """The router has no certificate for the name before the flip (the world's
    certificate_delay): tls-ready says so, asks at its gate (--yes consents), and still checks
    that the smoke paths answer with that Host."""
    with update_world(project.world_path) as world:
        world["convox"]["certificate_delay"] = 600

    result = project.run("run", "--yes", "--until", "tls-ready")

    assert result.returncode == 0, result
    outputs = project.state()["steps"]["tls-ready"]["outputs"]
    assert outputs["gap_expected"] is True
    assert outputs["consent"] == "gate"
    assert outputs["checks"] == ["/healthz: HTTP 200"]
    assert f"visitors of https://{RECORD} get a certificate error" in result.output


def test_dns01_gets_the_certificate_before_the_flip(project: Project) -> None:
    """tls.mode dns01: the Route53 solver is added, the certificate generated and waited for
    (``certs --generated`` shows it Not Ready first), named in convox.yml, and served by the
    router before switch-dns: no gap."""
    with update_world(project.world_path) as world:
        world["convox"]["certificate_delay_dns01"] = 2
    project.playbook.write_text(
        project.playbook.read_text()
        + "tls:\n  mode: dns01\n  role: arn:aws:iam::1:role/dns\n  issue_timeout: 60\n"
        f"  ca_file: {project.world_path.parent / 'certs' / 'letsencrypt-ca.pem'}\n"
    )

    result = project.run("run", "--yes", "--until", "tls-ready")

    assert result.returncode == 0, result
    steps = project.state()["steps"]
    ident = steps["add-domain"]["outputs"]["certificate"]
    assert ident.startswith("cert-")
    assert steps["tls-ready"]["outputs"]["names"] == [RECORD]
    assert steps["tls-ready"]["outputs"]["gap_expected"] is False
    world = project.world()
    assert [s["dns-zones"] for s in world["convox"]["solvers"]] == [["example.test"]]
    effects = [e["effect"] for e in world["effects"]]
    assert effects.count("convox certs generate") == 1
    assert f"id: {ident}" in (project.root / "convox.yml").read_text()


def test_verify_tls_on_demand_names_the_gap_and_exits_1(project: Project) -> None:
    """``cutover verify --tls`` before the certificate exists (http01, before the flip): exit 1,
    the finding says what the router serves instead; the audit log records the on-demand check
    and the state records no step."""
    with update_world(project.world_path) as world:
        world["convox"]["certificate_delay"] = 600
    assert project.run("run", "--yes", "--until", "add-domain").returncode == 0
    before = project.state()["steps"].get("tls-ready", {}).get("status")

    result = project.run("verify", "--tls")

    assert result.returncode == 1, result
    text = " ".join(result.output.split())
    assert f"the certificate check for {RECORD} found" in text
    assert f"the router has no certificate for {RECORD} yet" in text
    assert project.state()["steps"].get("tls-ready", {}).get("status") == before
    events = [e for e in project.events() if e.get("kind") == "tls-ready"]
    assert events and events[-1]["on_demand"] is True and events[-1]["ok"] is False


def test_verify_site_trusts_the_ca_file_tls_ready_trusted(project: Project) -> None:
    """tls.ca_file is trusted by tls-ready before the flip; verify-site, after it, must trust
    the same roots: else a certificate tls-ready accepted fails the cutover inside the window."""
    with update_world(project.world_path) as world:
        world["convox"]["certificate_delay_dns01"] = 1
    project.playbook.write_text(
        project.playbook.read_text()
        + "tls:\n  mode: dns01\n  role: arn:aws:iam::1:role/dns\n  issue_timeout: 60\n"
        f"  ca_file: {project.world_path.parent / 'certs' / 'letsencrypt-ca.pem'}\n"
    )

    result = project.run("run", "--yes", "--until", "verify-site")

    assert result.returncode == 0, result.output[-1500:]
    assert project.state()["steps"]["verify-site"]["status"] == "done"


def test_a_missing_tls_ca_file_is_named_not_blamed_on_the_certificate(project: Project) -> None:
    """tls.ca_file that is not there (a typo, another checkout): exit 2 naming the field, not
    'does not chain to a trusted root' about a certificate that may be fine, and no traceback."""
    missing = project.root / "no-such-ca.pem"
    project.playbook.write_text(project.playbook.read_text() + f"tls:\n  ca_file: {missing}\n")
    assert project.run("run", "--yes", "--until", "add-domain").returncode == 0

    result = project.run("verify", "--tls")

    assert result.returncode == 2, result
    text = " ".join(result.output.split())
    assert "tls.ca_file" in text and str(missing) in text
    assert "trusted root" not in text
    assert "Traceback" not in result.output


def test_verify_tls_after_the_flip_names_cutover_rollback(project: Project) -> None:
    """After maintenance-on, a failing ``cutover verify --tls`` (http01: the certificate is
    not issued yet after switch-dns) says what to do for the mode and names `cutover
    rollback`, as every failure in the window does."""
    with update_world(project.world_path) as world:
        world["convox"]["certificate_delay"] = 600
    assert project.run("run", "--yes", "--until", "switch-dns").returncode == 0

    result = project.run("verify", "--tls")

    assert result.returncode == 1, result
    text = " ".join(result.output.split())
    assert "Or bring Heroku back with: cutover rollback" in text
    assert "tls.mode import or dns01" in text  # mode_resolution, not a README section
