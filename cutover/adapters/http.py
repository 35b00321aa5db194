"""HTTP for cutover: backup downloads that check status and size, and HTTPS checks.

``resolve`` maps a host name to ``ip:port`` (like curl's --connect-to) for rehearsals in the
sandbox; the certificate is still verified for the real host name (SNI), so a check proves that
the name is served, not just that a port answers.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

from cutover.errors import CutoverError
from cutover.secrets import SecretMasker

CHUNK = 1 << 20


@dataclass(frozen=True)
class Response:
    url: str
    status: int
    text: str


class CertificateNotValid(CutoverError):
    """The server's certificate does not verify for the name asked (e.g. not issued yet)."""


class HttpClient:
    def __init__(
        self,
        masker: SecretMasker,
        *,
        resolve: Mapping[str, str] | None = None,
        ca_file: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.masker = masker
        self.resolve = dict(resolve or {})
        self.ca_file = ca_file
        # httpx 0.28 deprecates verify=<path>: pass an SSL context built from the CA file.
        self.verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=ca_file) if ca_file else True
        )
        self.timeout = timeout

    def _target(self, url: str) -> tuple[str, dict[str, str], dict[str, str]]:
        """(url to connect to, headers, request extensions) after applying ``resolve``."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        override = self.resolve.get(host)
        if not override:
            return url, {}, {}
        netloc = override
        connect = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
        host_header = host if parts.port is None else f"{host}:{parts.port}"
        return connect, {"Host": host_header}, {"sni_hostname": host}

    def _client(self) -> httpx.Client:
        return httpx.Client(
            verify=self.verify, timeout=self.timeout, follow_redirects=False, trust_env=False
        )

    def get(self, url: str) -> Response:
        connect, headers, extensions = self._target(url)
        try:
            with self._client() as client:
                request = client.build_request(
                    "GET", connect, headers=headers, extensions=extensions
                )
                resp = client.send(request)
                return Response(url, resp.status_code, resp.text[:65536])
        except httpx.HTTPError as exc:
            reason = self.masker.mask(str(exc)) or type(exc).__name__
            kind = CertificateNotValid if "CERTIFICATE_VERIFY_FAILED" in reason else CutoverError
            raise kind(f"GET {self.masker.mask(url)} failed: {reason}") from None

    def download(self, url: str, dest: Path) -> tuple[int, str]:
        """Stream ``url`` into ``dest`` (0600). Check status 200 and Content-Length.

        Returns (bytes, sha256). A partial file is removed on any failure.
        """
        shown = self.masker.mask(url)
        connect, headers, extensions = self._target(url)
        dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".part")
        digest = hashlib.sha256()
        size = 0
        try:
            with self._client() as client:
                request = client.build_request(
                    "GET", connect, headers=headers, extensions=extensions
                )
                resp = client.send(request, stream=True)
                try:
                    if resp.status_code != 200:
                        raise CutoverError(
                            f"downloading the backup failed: HTTP {resp.status_code} from {shown}",
                            resolution="The backup URL may have expired; run the step again to "
                            "capture a new one.",
                        )
                    expected = resp.headers.get("content-length")
                    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                    with os.fdopen(fd, "wb") as fh:
                        for chunk in resp.iter_bytes(CHUNK):
                            fh.write(chunk)
                            digest.update(chunk)
                            size += len(chunk)
                        fh.flush()
                        os.fsync(fh.fileno())
                finally:
                    resp.close()
            if expected is not None and int(expected) != size:
                raise CutoverError(
                    f"the backup download is incomplete: got {size} of {expected} bytes"
                )
            if size == 0:
                raise CutoverError("the backup download is empty (0 bytes)")
            os.replace(tmp, dest)
        except httpx.HTTPError as exc:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            reason = self.masker.mask(str(exc)) or type(exc).__name__
            raise CutoverError(
                f"downloading the backup failed: {reason}",
                details=f"url: {shown}",
            ) from None
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        return size, digest.hexdigest()
