"""Secret masking: every value registered here is replaced by ``****`` in text cutover shows.

Config values, database passwords, URLs with credentials and DNS keys are registered as soon as an
adapter reads them, so the audit log, the terminal and error messages never carry them.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote, urlsplit

MASK = "****"
# Values shorter than this are too likely to occur by chance in ordinary text (``1``, ``true``).
_MIN_LEN = 4
# The scheme is capped so a long run of letters is not rescanned from every position.
_URL_PASSWORD = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]{0,31}://)(?P<user>[^:/@\s]*):(?P<pw>[^@\s]+)@"
)


class SecretMasker:
    """Holds secret values and masks them in strings and argv lists. Thread-safe."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()
        self._pattern: re.Pattern[str] | None = None

    def add(self, value: str | None) -> None:
        """Register one secret value (and, for URLs, the password inside it)."""
        if not value:
            return
        new = {value.strip()} if len(value.strip()) >= _MIN_LEN else set()
        for match in _URL_PASSWORD.finditer(value):
            pw = match.group("pw")
            new.update({pw, unquote(pw)})
        try:
            parts = urlsplit(value)
            if parts.password:
                new.update({parts.password, unquote(parts.password)})
        except ValueError:
            pass
        new = {v for v in new if len(v) >= _MIN_LEN}
        if not new:
            return
        with self._lock:
            if new <= self._values:
                return
            self._values |= new
            ordered = sorted(self._values, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(v) for v in ordered))

    def add_all(self, values: Iterable[str | None]) -> None:
        for value in values:
            self.add(value)

    def mask(self, text: str) -> str:
        """Return ``text`` with every registered secret and every URL password replaced."""
        if not text:
            return text
        pattern = self._pattern
        if pattern is not None:
            text = pattern.sub(MASK, text)
        return _URL_PASSWORD.sub(lambda m: f"{m.group('scheme')}{m.group('user')}:{MASK}@", text)

    def mask_data(self, value: Any) -> Any:
        """Mask every string value inside a JSON-like structure, leaving its shape, keys (our
        schema, or variable names), numbers and literals alone: masking serialised JSON text
        could break it (a config value of ``null`` or ``0.25``)."""
        if isinstance(value, str):
            return self.mask(value)
        if isinstance(value, dict):
            return {k: self.mask_data(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.mask_data(v) for v in value]
        return value

    def mask_argv(self, argv: Iterable[str]) -> list[str]:
        return [self.mask(arg) for arg in argv]

    def __contains__(self, value: str) -> bool:
        with self._lock:
            return value in self._values


# Config vars whose values are not secret: masking "production" or "en_US.UTF-8" everywhere
# would make the terminal and the log unreadable. Everything else is treated as a secret.
PUBLIC_CONFIG_NAMES = frozenset(
    {
        "RAILS_ENV",
        "RACK_ENV",
        "NODE_ENV",
        "APP_ENV",
        "ENVIRONMENT",
        "LANG",
        "LC_ALL",
        "TZ",
        "RAILS_LOG_TO_STDOUT",
        "RAILS_SERVE_STATIC_FILES",
        "WEB_CONCURRENCY",
        "RAILS_MAX_THREADS",
        "MALLOC_ARENA_MAX",
        "PYTHONUNBUFFERED",
        "DJANGO_SETTINGS_MODULE",
        "LOG_LEVEL",
        "BUNDLE_WITHOUT",
        "PORT",
    }
)
_PUBLIC_VALUES = frozenset(
    {
        "true",
        "false",
        "yes",
        "no",
        "on",
        "off",
        "enabled",
        "disabled",
        "production",
        "staging",
        "development",
        "test",
    }
)


def is_public_config(name: str, value: str) -> bool:
    """True for config values that are certainly not secret (by name, or trivial values)."""
    if name in PUBLIC_CONFIG_NAMES:
        return True
    v = value.strip().lower()
    if v in _PUBLIC_VALUES or v in ("null", "none", "nil"):
        return True
    try:
        float(v)  # plain numbers: 0.25, 10, 1e3
    except ValueError:
        return False
    return True


def register_config(masker: SecretMasker, config: dict[str, str]) -> None:
    """Register every config value that may be secret."""
    masker.add_all(v for k, v in config.items() if not is_public_config(k, v))
