"""The playbook's ``dns:`` and ``tls:`` sections (cutover/playbook.py holds the rest): the
record to switch, the provider and its credentials' variable names, the name servers and
resolvers to ask, and how the certificate for the domain is obtained. Names are checked the way
dnspython reads them; ports are TCP/UDP port numbers.
"""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# DNS server port: a TCP/UDP port number.
_PORT_MAX = 65535


def _host_port_problem(value: str) -> str | None:
    """Why ``value`` is not ``host``, ``host:port`` or ``[ipv6]:port`` (port 1-65535)."""
    found = re.fullmatch(r"(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+)(?::(\d{1,5}))?", value.strip())
    if not found:
        return "must be host, host:port or [ipv6]:port"
    if found.group(2) is not None and not 1 <= int(found.group(2)) <= _PORT_MAX:
        return f"has port {found.group(2)}, out of range (1-{_PORT_MAX})"
    return None


# A DNS label as cutover accepts it: letters, digits, hyphen, underscore (``_acme-challenge``),
# 1-63 octets, and a name of at most 253 characters (RFC 1035 2.3.4; dnspython refuses more:
# dns.name.LabelTooLong / NameTooLong / EmptyLabel). An internationalised name goes in its
# ASCII (xn--) form: dnspython's IDNA encoding refuses some Unicode labels outright.
_DNS_LABEL = re.compile(r"^(\*|[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)$")
_DNS_NAME_MAX = 253


def _dns_name_problem(value: str) -> str | None:
    if not value:
        return "it is empty"
    if len(value) > _DNS_NAME_MAX:
        return f"it is {len(value)} characters long (at most {_DNS_NAME_MAX})"
    labels = value.split(".")
    for index, label in enumerate(labels):
        if not label:
            return "it has an empty label (two dots in a row)"
        if not _DNS_LABEL.match(label) or (label == "*" and index > 0):
            return (
                f"label {label[:70]!r} is not 1-63 letters, digits, '-' or '_' (write an "
                "internationalised name in its xn-- form)"
            )
    return None


class Route53Section(_Model):
    """``dns.route53``: credentials come the standard AWS way, never from here."""

    zone_id: str | None = Field(
        default=None, description="The hosted zone's id when more than one has the zone's name."
    )
    region: str | None = Field(
        default=None, description="Where the router's load balancer is (apex alias records)."
    )

    @field_validator("zone_id")
    @classmethod
    def _zone_id(cls, value: str | None) -> str | None:
        """A hosted zone id, bare or as the API's ``/hostedzone/<id>`` (API_HostedZone.html)."""
        if value is None:
            return None
        found = re.fullmatch(r"(?:/hostedzone/)?([A-Z0-9]{1,32})", value.strip())
        if not found:
            raise ValueError(
                "must be a Route 53 hosted zone id such as Z0123456789ABCDEFGHIJ "
                "(or /hostedzone/Z0123456789ABCDEFGHIJ)"
            )
        return found.group(1)

    @field_validator("region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[a-z]{2}(?:-[a-z]+)+-\d+", value.strip()):
            raise ValueError("must be an AWS region name such as eu-west-1")
        return value.strip() if value else None


class CloudflareSection(_Model):
    """``dns.cloudflare``: the API token is read from the environment variable named here."""

    token_env: str = Field(
        default="CLOUDFLARE_API_TOKEN",
        description="Environment variable holding the API token (Zone:Read, DNS:Edit).",
    )
    zone_id: str | None = Field(default=None, description="The zone's id (else found by name).")
    proxied: bool | None = Field(
        default=None,
        description="Proxy the switched record through Cloudflare (default: keep as it is).",
    )

    @field_validator("token_env")
    @classmethod
    def _env_name(cls, value: str) -> str:
        if not _ENV_NAME.fullmatch(value):
            raise ValueError("must be an environment variable name")
        return value

    @field_validator("zone_id")
    @classmethod
    def _zone_id(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[0-9a-fA-F]{1,32}", value):
            raise ValueError("must be a Cloudflare zone id (hexadecimal)")
        return value


# Providers that can put a CNAME-like record at the zone apex (DnsProvider.apex()).
APEX_CAPABLE = {"route53": "a Route 53 alias record", "cloudflare": "Cloudflare's CNAME flattening"}


class DnsSection(_Model):
    provider: Literal["rfc2136", "manual", "route53", "cloudflare"] = "manual"
    zone: str
    record: str
    ttl: int = Field(default=60, ge=1, le=86400, description="Lowered TTL, set a day ahead.")
    server: str | None = Field(default=None, description="rfc2136: host[:port] of the primary.")
    key_name: str | None = Field(default=None, description="rfc2136: TSIG key name.")
    propagation_timeout: int = Field(default=300, ge=1)
    route53: Route53Section | None = None
    cloudflare: CloudflareSection | None = None
    nameservers: list[str] = Field(
        default_factory=list,
        description="host:port of every authoritative server to check (lower-ttl, verify-dns); "
        "default: the zone's NS set as the provider reports it, on port 53.",
    )
    resolvers: list[str] | None = Field(
        default=None,
        description="Recursive resolvers (host[:port]) verify-dns asks after the authoritative "
        "servers; default 1.1.1.1, 8.8.8.8, 9.9.9.9 (the sandbox's own resolver in the "
        "sandbox); [] checks none.",
    )
    soak_seconds: int = Field(
        default=3600,
        ge=0,
        description="restore-ttl sets the original TTL back this long after verify-site.",
    )

    @field_validator("nameservers", "resolvers")
    @classmethod
    def _servers(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        for item in value:
            if problem := _host_port_problem(item):
                raise ValueError(f"{item!r} {problem}")
        return [item.strip() for item in value]

    @field_validator("zone", "record")
    @classmethod
    def _fqdn(cls, value: str) -> str:
        value = value.strip().rstrip(".").lower()
        if problem := _dns_name_problem(value):
            raise ValueError(f"must be a DNS name: {problem}")
        return value

    @field_validator("server")
    @classmethod
    def _server(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if problem := _host_port_problem(value):
            raise ValueError(problem)
        return value.strip()

    @model_validator(mode="after")
    def _record_in_zone(self) -> DnsSection:
        for sub in ("route53", "cloudflare"):
            if getattr(self, sub) is not None and self.provider != sub:
                raise ValueError(f"dns.{sub} is set but dns.provider is {self.provider}")
        if self.record == self.zone and self.provider not in APEX_CAPABLE:
            raise ValueError(
                f"record {self.record} is the zone apex: a CNAME cannot live there and "
                f"provider {self.provider} has no alias or flattening; point a www-style "
                "record at the router instead, or use provider route53 (alias record) or "
                "cloudflare (CNAME flattening)"
            )
        if self.record == self.zone:
            return self
        if not self.record.endswith("." + self.zone):
            raise ValueError(f"record {self.record} is not inside zone {self.zone}")
        return self


class TlsMarker(_Model):
    """How verify-site and tls-ready tell a response came from Convox: a header (name and
    value) the Convox side sets, or text its body carries."""

    header: str | None = Field(default=None, description="Response header name, e.g. X-Platform.")
    value: str | None = Field(default=None, description="The header's value on Convox.")
    body: str | None = Field(default=None, description="Text the Convox response body holds.")

    @model_validator(mode="after")
    def _one(self) -> TlsMarker:
        if not self.header and not self.body:
            raise ValueError("set header (with value) or body")
        if self.header and not self.value:
            raise ValueError("header needs a value")
        return self


class TlsSection(_Model):
    """The production name's certificate (issue 12; steps add-domain, tls-ready, verify-site).

    ``import``: the operator's certificate (``cert``, optional ``chain``; the key from
    ``key_file`` or the environment variable ``key_env``, never argv or state) is imported with
    ``convox certs import`` and named in the staged convox.yml (``certificate: {id: ...}``).
    ``dns01``: ``convox letsencrypt dns route53 add`` then ``convox certs generate DOMAIN
    --issuer letsencrypt``, issued before the flip. ``http01`` (Convox's default): the name
    serves a certificate error after the flip until Let's Encrypt issues it; tls-ready asks for
    consent at its gate unless ``accept_gap: true``, and verify-site measures the gap."""

    # The fields add-domain obtains the certificate from (its inputs: steps/app.py).
    OBTAIN_FIELDS: ClassVar[tuple[str, ...]] = tuple(
        f"tls.{name}"
        for name in (
            "mode",
            "cert",
            "chain",
            "key_file",
            "key_env",
            "solver_id",
            "dns_zones",
            "hosted_zone_id",
            "role",
            "region",
        )
    )

    mode: Literal["http01", "import", "dns01"] = "http01"
    cert: str | None = Field(default=None, description="import: certificate PEM file.")
    chain: str | None = Field(default=None, description="import: intermediate chain PEM file.")
    key_file: str | None = Field(default=None, description="import: private key PEM file.")
    key_env: str | None = Field(
        default=None, description="import: environment variable holding the private key PEM."
    )
    solver_id: int = Field(default=1, ge=1, description="dns01: the route53 solver id.")
    dns_zones: list[str] = Field(default_factory=list, description="dns01: zones it solves.")
    hosted_zone_id: str | None = None
    role: str | None = Field(default=None, description="dns01: AWS role ARN (required by convox).")
    region: str | None = None
    issue_timeout: int = Field(default=600, ge=1, description="dns01: seconds to wait for issue.")
    min_days: int = Field(default=14, ge=0, description="Fail when it expires within this.")
    ca_file: str | None = Field(
        default=None, description="Extra trusted CA (PEM), relative to the playbook."
    )
    accept_gap: bool = Field(
        default=False,
        description="http01: consent, given in advance, to the certificate error between the "
        "flip and issuance (otherwise tls-ready asks at its gate).",
    )
    marker: TlsMarker | None = None

    @field_validator("key_env")
    @classmethod
    def _key_env(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.match(value):
            raise ValueError(f"{value!r} is not a valid environment variable name")
        return value

    # The fields only one mode reads: set under another mode, they would be silently ignored
    # (tls.cert without mode import gives http01 and its certificate gap).
    MODE_FIELDS: ClassVar[dict[str, tuple[str, ...]]] = {
        "import": ("cert", "chain", "key_file", "key_env"),
        "dns01": ("solver_id", "dns_zones", "hosted_zone_id", "role", "region", "issue_timeout"),
    }

    @model_validator(mode="after")
    def _mode_fields(self) -> TlsSection:
        for mode, names in self.MODE_FIELDS.items():
            stray = [n for n in names if n in self.model_fields_set and mode != self.mode]
            if stray:
                raise ValueError(
                    f"{', '.join(stray)} only apply to mode {mode}, and mode is {self.mode}: "
                    f"set mode: {mode} or remove them"
                )
        if self.mode == "import":
            if not self.cert:
                raise ValueError("mode import needs cert (the certificate file)")
            if bool(self.key_file) == bool(self.key_env):
                raise ValueError("mode import needs exactly one of key_file and key_env")
        if self.mode == "dns01" and not self.role:
            raise ValueError("mode dns01 needs role (convox: route53 access role is required)")
        return self
