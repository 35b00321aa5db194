from __future__ import annotations

from cutover.secrets import MASK, SecretMasker


def test_masks_registered_values_and_url_passwords() -> None:
    m = SecretMasker()
    m.add("sk_live_abcdef123456")
    m.add("postgres://u1:p%40ss-word@db.example.com:5432/d1")
    text = "key=sk_live_abcdef123456 url=postgres://u1:p%40ss-word@db.example.com:5432/d1 p@ss-word"
    masked = m.mask(text)
    assert "sk_live_abcdef123456" not in masked
    assert "p%40ss-word" not in masked and "p@ss-word" not in masked
    assert MASK in masked


def test_unregistered_url_passwords_are_masked_too() -> None:
    assert (
        SecretMasker().mask("redis://h:topsecret@127.0.0.1:1/0") == "redis://h:****@127.0.0.1:1/0"
    )


def test_short_values_are_not_masked_everywhere() -> None:
    m = SecretMasker()
    m.add("1")
    assert m.mask("web=1") == "web=1"


def test_argv() -> None:
    m = SecretMasker()
    m.add("hunter2hunter2")
    assert m.mask_argv(["x", "--password=hunter2hunter2"]) == ["x", f"--password={MASK}"]
