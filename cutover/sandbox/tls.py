"""The sandbox's certificate authority: one CA per sandbox, leaf certificates for its servers.

Built on trustme. The CA certificate and key are persisted as PEM (``ca.pem``, ``ca-key.pem``)
and re-loaded with ``trustme.CA.from_pem``, so the process that issues a certificate later (or
``cutover`` itself, which only needs ``ca.pem``) does not have to be the one that made the CA.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import trustme

from cutover.sandbox import procs

__all__ = ["CA_CERT_FILE", "CA_KEY_FILE", "SandboxCA"]

CA_CERT_FILE = "ca.pem"
CA_KEY_FILE = "ca-key.pem"
ORGANIZATION = "cutover sandbox"


@dataclass
class SandboxCA:
    """A CA whose certificate and key live in ``folder``."""

    folder: Path
    _ca: trustme.CA = field(repr=False)

    @classmethod
    def create(cls, folder: Path) -> SandboxCA:
        """Make the CA in ``folder`` (0700) and persist it; an existing CA there is re-used."""
        procs.ensure_private_dir(folder)
        if (folder / CA_CERT_FILE).exists() and (folder / CA_KEY_FILE).exists():
            return cls.load(folder)
        ca = trustme.CA(organization_name=ORGANIZATION)
        # Key first: a ca.pem without its key would make the next create() fail to load.
        procs.write_private(folder / CA_KEY_FILE, ca.private_key_pem.bytes().decode("ascii"))
        procs.write_atomic(folder / CA_CERT_FILE, ca.cert_pem.bytes().decode("ascii"))
        return cls(folder, ca)

    @classmethod
    def load(cls, folder: Path) -> SandboxCA:
        """Load the CA persisted in ``folder`` by :meth:`create`."""
        cert, key = folder / CA_CERT_FILE, folder / CA_KEY_FILE
        missing = [str(p) for p in (cert, key) if not p.exists()]
        if missing:
            raise FileNotFoundError(f"no sandbox CA in {folder}: missing {', '.join(missing)}")
        return cls(folder, trustme.CA.from_pem(cert.read_bytes(), key.read_bytes()))

    @property
    def ca_file(self) -> Path:
        """The CA certificate (PEM) that clients should trust."""
        return self.folder / CA_CERT_FILE

    def issue(self, names: list[str], cert_path: Path, key_path: Path) -> None:
        """Write a server certificate for ``names`` (DNS names and IP addresses) and its key.

        The certificate file holds the leaf followed by any intermediates (none for this CA);
        the key file is 0600.
        """
        if not names:
            raise ValueError("a certificate needs at least one DNS name or IP address")
        leaf = self._ca.issue_cert(*names, common_name=names[0], organization_name=ORGANIZATION)
        chain = "".join(blob.bytes().decode("ascii") for blob in leaf.cert_chain_pems)
        procs.write_private(key_path, leaf.private_key_pem.bytes().decode("ascii"))
        procs.write_atomic(cert_path, chain)
