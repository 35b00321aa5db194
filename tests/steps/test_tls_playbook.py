"""The playbook's tls section (playbook_dns.TlsSection): fields that only one tls.mode reads are
refused under another, naming the field, rather than ignored. An operator who gives
tls.cert and tls.key_file but forgets ``mode: import`` would otherwise get http01, whose gap a
``--yes`` run consents to at tls-ready's gate: visitors meet a certificate error after the
flip although the operator had the certificate."""

from __future__ import annotations

from pathlib import Path

import pytest

from cutover.errors import InvalidInput
from cutover.playbook import load_playbook

BASE = """\
heroku: {app: myapp}
convox: {app: myapp}
dns: {zone: example.test, record: www.example.test}
"""


@pytest.mark.parametrize(
    ("tls", "field"),
    [
        ("{cert: server.pem, key_file: server.key}", "cert"),
        ("{key_env: TLS_KEY}", "key_env"),
        ("{mode: dns01, role: 'arn:aws:iam::1:role/dns', cert: server.pem}", "cert"),
        ("{mode: import, cert: s.pem, key_file: s.key, role: 'arn:aws:iam::1:role/d'}", "role"),
        ("{dns_zones: [example.test]}", "dns_zones"),
    ],
)
def test_a_field_the_mode_does_not_read_is_named(tmp_path: Path, tls: str, field: str) -> None:
    path = tmp_path / "cutover.yml"
    path.write_text(BASE + f"tls: {tls}\n")

    with pytest.raises(InvalidInput) as info:
        load_playbook(path)

    message = str(info.value)
    assert str(path) in message
    assert "tls" in message and field in message and "mode" in message


def test_each_mode_with_its_own_fields_loads(tmp_path: Path) -> None:
    path = tmp_path / "cutover.yml"
    for tls in (
        "{mode: import, cert: s.pem, chain: c.pem, key_env: TLS_KEY}",
        "{mode: dns01, role: 'arn:aws:iam::1:role/d', dns_zones: [example.test], solver_id: 2}",
        "{accept_gap: true, min_days: 7, marker: {header: X-Platform, value: convox}}",
    ):
        path.write_text(BASE + f"tls: {tls}\n")
        assert load_playbook(path).model.tls is not None
