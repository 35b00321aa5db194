"""The staged convox.yml (deploy, add-domain) keeps the operator's comments and layout: it is the
operator's file round-tripped (steps/manifests.py), with the same content holding.py decides
(held services at scale.count 0, timers left out, sizing kept)."""

from __future__ import annotations

import stat
from pathlib import Path

import yaml

from cutover.steps.holding import staged_manifest, staged_name
from cutover.steps.manifests import write_staged_keeping_comments
from cutover.steps.tls import set_certificate_in_manifest

MANIFEST = """\
# Production manifest: owned by the platform team.
environment:
  - PORT=3000   # the router's target port
resources:
  database:
    type: postgres
services:
  web:  # takes www.example.test
    build: .
    port: 3000
    domain: www.example.test
  worker:
    build: .
    command: "bundle exec sidekiq"   # quoted on purpose
    scale:
      count: 2
      memory: 1024  # measured in October
timers:
  cleanup:
    schedule: "0 3 * * *"
    service: worker
    command: bin/cleanup
"""


def test_the_staged_manifest_keeps_comments_and_holds_like_holding_py(tmp_path: Path) -> None:
    original = tmp_path / "convox.yml"
    original.write_text(MANIFEST)
    original.chmod(0o640)

    name = write_staged_keeping_comments(tmp_path, "convox.yml", "web")

    assert name == staged_name("convox.yml")
    text = (tmp_path / name).read_text()
    for kept in (
        "# Production manifest: owned by the platform team.\n",
        "  - PORT=3000   # the router's target port\n",
        "  web:  # takes www.example.test\n",
        '    command: "bundle exec sidekiq"   # quoted on purpose\n',
    ):
        assert kept in text
    assert "timers:" not in text
    assert yaml.safe_load(text) == staged_manifest(yaml.safe_load(MANIFEST), "web", str(original))
    assert yaml.safe_load(text)["services"]["worker"]["scale"] == {"count": 0, "memory": 1024}
    assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o640
    assert original.read_text() == MANIFEST  # the operator's file is not touched


def test_naming_the_certificate_edits_the_text_only_where_needed(tmp_path: Path) -> None:
    original = tmp_path / "convox.yml"
    original.write_text(MANIFEST)

    assert set_certificate_in_manifest(original, "web", "cert-abcde") is True
    first = original.read_text()
    assert "  web:  # takes www.example.test\n    certificate:\n      id: cert-abcde\n" in first
    assert first.replace("    certificate:\n      id: cert-abcde\n", "") == MANIFEST
    assert set_certificate_in_manifest(original, "web", "cert-abcde") is False

    assert set_certificate_in_manifest(original, "web", "cert-fghij") is True
    second = original.read_text()
    assert second == first.replace("cert-abcde", "cert-fghij")


def test_start_workers_release_keeps_comments_and_brings_the_timers_back(tmp_path: Path) -> None:
    """start-workers' staged file (release_to: the Heroku formation) keeps the operator's
    comments as add-domain's does, with the held services scaled back and the timers in."""
    original = tmp_path / "convox.yml"
    original.write_text(MANIFEST)

    name = write_staged_keeping_comments(tmp_path, "convox.yml", "web", release_to={"worker": 2})

    text = (tmp_path / name).read_text()
    assert "# Production manifest: owned by the platform team.\n" in text
    assert '    command: "bundle exec sidekiq"   # quoted on purpose\n' in text
    released = staged_manifest(
        yaml.safe_load(MANIFEST), "web", str(original), release_to={"worker": 2}
    )
    assert yaml.safe_load(text) == released
    assert yaml.safe_load(text)["services"]["worker"]["scale"]["count"] == 2
    assert ("timers" in yaml.safe_load(MANIFEST)) == ("timers:" in text)


def test_the_certificate_goes_under_services_not_a_balancer_of_the_same_name(
    tmp_path: Path,
) -> None:
    """A top-level section before services: may hold a key spelled like the web service (a
    custom balancer ``web``, pkg/manifest/manifest.go Balancers): the certificate belongs to
    services.web, as add_domain_to_manifest already looks only under services:."""
    manifest = tmp_path / "convox.yml"
    manifest.write_text(
        "balancers:\n  web:\n    service: web\n    ports:\n      443: 3000\n" + MANIFEST
    )

    assert set_certificate_in_manifest(manifest, "web", "cert-abcde") is True

    data = yaml.safe_load(manifest.read_text())
    assert data["services"]["web"]["certificate"] == {"id": "cert-abcde"}
    assert "certificate" not in data["balancers"]["web"]
