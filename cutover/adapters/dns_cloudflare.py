"""The ``cloudflare`` DNS provider: Cloudflare's API v4 over httpx.

The API token comes from the environment variable the playbook names
(``dns.cloudflare.token_env``, default ``CLOUDFLARE_API_TOKEN``) and only ever travels in the
``Authorization: Bearer`` header; it is registered with the masker by engine/context.py.
Routes and shapes (developers.cloudflare.com/api/):

* envelope ``{success, errors: [{code, message}], messages, result, result_info}``
  (resources/dns/subresources/settings/index.md, records/methods/list);
* ``GET /zones?name=`` and ``GET /zones/{zone_id}`` (resources/zones/methods/list): a zone's
  ``id``, ``name``, ``name_servers``; List Zones takes ``per_page`` 5 to 50 (operationId
  zones-get in cloudflare/api-schemas openapi.yaml), List DNS Records 100 by default;
* ``GET /zones/{zone_id}/dns_records?type=&name.exact=`` (records/methods/list), ``POST``
  (operations/dns-records-for-a-zone-create-dns-record), ``PUT`` (overwrite) and ``DELETE
  .../dns_records/{dns_record_id}``; a record's ``type, name, content, ttl, proxied``;
* TTL ``1`` means automatic; otherwise 60 to 86400 s (create-dns-record). Automatic is 300 s and
  every proxied record's TTL is automatic (dns/proxy-status/proxied-records); resolvers asking
  for a proxied name get Cloudflare's own addresses, never the record's content;
* A/AAAA and CNAME cannot share a name (create-dns-record); a CNAME at the zone apex is
  always flattened (dns_settings: "a CNAME record at the zone apex will always be flattened").
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import httpx

from cutover.adapters.dns import DnsError, Record

__all__ = [
    "API_URL",
    "AUTO_TTL",
    "BASE_URL_VAR",
    "TOKEN_ENV",
    "CloudflareProvider",
    "api_url",
]

API_URL = "https://api.cloudflare.com/client/v4"
# Tests only: the stand-in's address (cutover/sandbox/cloudflare_api.py); loopback or refused.
BASE_URL_VAR = "CUTOVER_TEST_CLOUDFLARE_API_URL"
TOKEN_ENV = "CLOUDFLARE_API_TOKEN"  # noqa: S105 - the variable's default name, not a token
AUTO_TTL = 300  # what TTL 1 ("automatic") serves, proxied records included
_PROXIABLE = ("A", "AAAA", "CNAME")
_CLASH = {"CNAME": ("A", "AAAA"), "A": ("CNAME",), "AAAA": ("CNAME",)}
_ZONES_PER_PAGE = 50  # List Zones' maximum (zones-get: per_page minimum 5, maximum 50)
_AUTH_CODES = {10000}  # "Authentication error" (community.cloudflare.com/t/627742)
_TOKEN_CHARS = re.compile(r"[\x21-\x7e]+")  # visible ASCII: a header value carried as is


def api_url(environ: dict[str, str]) -> str:
    """The API base: Cloudflare's, or the test stand-in's when BASE_URL_VAR is set."""
    override = environ.get(BASE_URL_VAR)
    if not override:
        return API_URL
    host = urlsplit(override).hostname or ""
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise DnsError(f"{BASE_URL_VAR} must point at a loopback address (test stand-in only)")
    return override.rstrip("/")


def _norm(name: str) -> str:
    return name.strip().rstrip(".").lower()


class CloudflareProvider:
    """Read and replace record sets in one Cloudflare zone."""

    synced_by_provider = False  # the API accepting a change says nothing of the edge

    def __init__(
        self,
        zone: str,
        token: str | None,
        *,
        token_env: str = TOKEN_ENV,
        zone_id: str | None = None,
        proxied: bool | None = None,
        base_url: str = API_URL,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.zone = _norm(zone)
        # A pasted line's newline or spaces around it are no part of a token.
        self._token = token.strip() if token else token
        self.token_env = token_env
        self.zone_id = zone_id
        self.proxied = proxied  # the playbook's dns.cloudflare.proxied (None: keep as is)
        self._http = httpx.Client(base_url=base_url, timeout=timeout, transport=transport)
        self._zone: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"CloudflareProvider(zone={self.zone!r}, token_env={self.token_env!r})"

    # -- HTTP -----------------------------------------------------------------------------
    def _api(
        self, method: str, path: str, *, params: dict[str, Any] | None = None, body: Any = None
    ) -> dict[str, Any]:
        if not self._token:
            raise DnsError(
                f"Cloudflare: environment variable {self.token_env} is not set "
                "(dns.cloudflare.token_env names it)",
                resolution=f"Export {self.token_env} with an API token allowed Zone:Read and "
                "DNS:Edit on the zone.",
            )
        if not _TOKEN_CHARS.fullmatch(self._token):
            # httpx/h11 would quote an illegal header value in their exception text
            # ("Illegal header value b'Bearer ...'"); a non-ASCII one raised UnicodeEncodeError.
            raise DnsError(
                f"Cloudflare: the value of {self.token_env} holds spaces, control or non-ASCII "
                "characters, which no API token has (not shown)",
                resolution=f"Copy the token again from Cloudflare's dashboard into "
                f"{self.token_env}.",
            )
        what = f"{method} {path}"
        try:
            response = self._http.request(
                method,
                path,
                params=params,
                json=body,
                headers={"Authorization": f"Bearer {self._token}"},
            )
        except httpx.HTTPError as exc:
            text = str(exc).replace(self._token, "***")
            raise DnsError(f"Cloudflare API {what} failed: {type(exc).__name__}: {text}") from None
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise DnsError(
                f"Cloudflare API {what} answered HTTP {response.status_code} without a JSON body"
            )
        if not answer.get("success"):
            errors = [e for e in answer.get("errors") or [] if isinstance(e, dict)]
            text = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)
            auth = any(e.get("code") in _AUTH_CODES for e in errors) or response.status_code in (
                401,
                403,
            )
            raise DnsError(
                f"Cloudflare API {what} refused (HTTP {response.status_code}): "
                f"{text or 'no error given'}",
                resolution=(
                    f"The token in {self.token_env} is wrong, expired, or not allowed "
                    f"Zone:Read and DNS:Edit on {self.zone}."
                    if auth
                    else "Check the record at Cloudflare, then `cutover run` again."
                ),
            )
        return answer

    def _pages(
        self, path: str, params: dict[str, Any], per_page: int = 100
    ) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        page = 1
        while True:
            answer = self._api("GET", path, params={**params, "page": page, "per_page": per_page})
            found += [r for r in answer.get("result") or [] if isinstance(r, dict)]
            info = answer.get("result_info") or {}
            if page >= int(info.get("total_pages") or 1):
                return found
            page += 1

    # -- the zone -------------------------------------------------------------------------
    def zone_info(self) -> dict[str, Any]:
        if self._zone is None:
            if self.zone_id:
                zone = self._api("GET", f"/zones/{self.zone_id}")["result"]
                if _norm(str(zone.get("name", ""))) != self.zone:
                    raise DnsError(
                        f"Cloudflare zone {self.zone_id} is {zone.get('name')}, "
                        f"not dns.zone {self.zone}"
                    )
            else:
                zones = [
                    z
                    for z in self._pages("/zones", {"name": self.zone}, per_page=_ZONES_PER_PAGE)
                    if _norm(str(z.get("name", ""))) == self.zone
                ]
                if not zones:
                    raise DnsError(
                        f"no Cloudflare zone named {self.zone} is visible to the token in "
                        f"{self.token_env}",
                        resolution="Check dns.zone, and that the token covers this zone.",
                    )
                if len(zones) > 1:
                    ids = ", ".join(str(z.get("id")) for z in zones)
                    raise DnsError(
                        f"{len(zones)} Cloudflare zones are named {self.zone} ({ids})",
                        resolution="Set dns.cloudflare.zone_id to the active one.",
                    )
                zone = zones[0]
            self.zone_id = str(zone["id"])
            self._zone = dict(zone)
        return self._zone

    def nameservers(self) -> list[str]:
        return [_norm(str(n)) for n in self.zone_info().get("name_servers") or []]

    def apex(self) -> str | None:
        return "flattening"

    def fqdn(self, name: str) -> str:
        if name in ("@", ""):
            return self.zone
        name = _norm(name)
        full = name if "." in name else f"{name}.{self.zone}"
        if full != self.zone and not full.endswith("." + self.zone):
            raise DnsError(f"{name} is not inside Cloudflare zone {self.zone}")
        return full

    # -- reading --------------------------------------------------------------------------
    def _records(self, full: str, rtype: str) -> list[dict[str, Any]]:
        zone_id = self.zone_info()["id"]
        return self._pages(f"/zones/{zone_id}/dns_records", {"type": rtype, "name.exact": full})

    def get(self, name: str, rtype: str) -> Record | None:
        """The record set; ``proxied`` says whether Cloudflare's proxy stands in front of it
        (then resolvers see Cloudflare's addresses and the TTL is automatic, 300 s)."""
        full, rtype = self.fqdn(name), rtype.upper()
        found = [r for r in self._records(full, rtype) if _norm(str(r.get("name"))) == full]
        if not found:
            return None
        values = sorted(self._value(rtype, str(r["content"])) for r in found)
        ttls = {AUTO_TTL if int(r.get("ttl", 1)) == 1 else int(r["ttl"]) for r in found}
        proxied = any(bool(r.get("proxied")) for r in found)
        return Record(
            full,
            rtype,
            max(ttls),
            values,
            proxied=proxied,
            alias=rtype == "CNAME" and full == self.zone,
        )

    @staticmethod
    def _value(rtype: str, content: str) -> str:
        """A CNAME target as an absolute name (zone-file text, like the other providers)."""
        return content.rstrip(".") + "." if rtype == "CNAME" else content

    # -- writing --------------------------------------------------------------------------
    def _proxied(self, record: Record, current: list[dict[str, Any]]) -> bool:
        """The record's own wish, else the playbook's, else what the name has now."""
        if record.rtype.upper() not in _PROXIABLE:
            return False
        if record.proxied is not None:
            return record.proxied
        if self.proxied is not None:
            return self.proxied
        return any(bool(r.get("proxied")) for r in current)

    def _current(self, full: str, rtype: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        same = self._records(full, rtype)
        clash = [r for other in _CLASH.get(rtype, ()) for r in self._records(full, other)]
        return same, clash

    def describe_set(self, record: Record) -> str:
        full, rtype = self.fqdn(record.name), record.rtype.upper()
        if record.proxied is not None or self.proxied is not None:
            wish = record.proxied if record.proxied is not None else self.proxied
            proxy = (
                "proxied (resolvers get Cloudflare's addresses, not this value; TTL automatic)"
                if wish
                else "DNS only (not proxied)"
            )
        else:
            proxy = "proxied as it is now"
        ttl = "automatic" if record.ttl == 1 else f"{record.ttl}s"
        text = (
            f"set {full} {rtype} {', '.join(record.values)} TTL {ttl}, {proxy}, "
            f"through the Cloudflare API (zone {self.zone})"
        )
        if rtype == "CNAME" and full == self.zone:
            text += "; Cloudflare flattens a CNAME at the zone apex"
        return text

    def set(self, record: Record) -> None:
        """Replace the record set, then read it back.

        Existing records of the type are overwritten (PUT), extra ones deleted, missing ones
        created; A/AAAA records are deleted before a CNAME is written there and a CNAME before
        A/AAAA (they cannot coexist). A proxied record's TTL is written as automatic: Cloudflare
        serves its own addresses for it whatever the TTL.
        """
        full, rtype = self.fqdn(record.name), record.rtype.upper()
        if not record.values:
            raise DnsError(f"no value given for {full} {rtype}")
        if record.ttl != 1 and not 60 <= record.ttl <= 86400:
            raise DnsError(
                f"TTL {record.ttl}s for {full}: Cloudflare accepts 60 to 86400 seconds, "
                "or 1 for automatic"
            )
        same, clash = self._current(full, rtype)
        proxied = self._proxied(record, same + clash)
        ttl = 1 if proxied else record.ttl
        zone_id = self.zone_info()["id"]
        base = f"/zones/{zone_id}/dns_records"
        kept, reused, surplus, added = self._pair(rtype, same, record.values)
        for old in clash + surplus:
            self._api("DELETE", f"{base}/{old['id']}")
        for old, value in kept + reused:
            self._api(
                "PUT", f"{base}/{old['id']}", body=self._body(rtype, full, value, ttl, proxied)
            )
        for value in added:
            self._api("POST", base, body=self._body(rtype, full, value, ttl, proxied))
        self._read_back(full, rtype, record, proxied, ttl)

    @staticmethod
    def _body(rtype: str, full: str, value: str, ttl: int, proxied: bool) -> dict[str, Any]:
        content = value.rstrip(".") if rtype == "CNAME" else value
        return {"type": rtype, "name": full, "content": content, "ttl": ttl, "proxied": proxied}

    @staticmethod
    def _pair(
        rtype: str, same: list[dict[str, Any]], values: list[str]
    ) -> tuple[
        list[tuple[dict[str, Any], str]],
        list[tuple[dict[str, Any], str]],
        list[dict[str, Any]],
        list[str],
    ]:
        """Existing records matched to the wanted values: those already holding a value keep
        it (Cloudflare refuses a record identical to another, 81058, so no record may be
        overwritten with a value another one still holds), the others are reused for the new
        values, then deleted (surplus) or supplemented (added)."""

        def key(content: str) -> str:
            return _norm(content) if rtype in _PROXIABLE else content

        free = list(same)
        kept: list[tuple[dict[str, Any], str]] = []
        missing: list[str] = []
        for value in values:
            match = next((r for r in free if key(str(r.get("content", ""))) == key(value)), None)
            if match is None:
                missing.append(value)
            else:
                free.remove(match)
                kept.append((match, value))
        reused = list(zip(free, missing, strict=False))
        return kept, reused, free[len(missing) :], missing[len(free) :]

    def _read_back(self, full: str, rtype: str, record: Record, proxied: bool, ttl: int) -> None:
        current = self.get(full, rtype)
        wanted = sorted(self._value(rtype, v) for v in record.values)
        served = AUTO_TTL if ttl == 1 else ttl
        if (
            current is None
            or [_norm(v) for v in current.values] != [_norm(v) for v in wanted]
            or current.ttl != served
            or bool(current.proxied) != proxied
        ):
            shown = "nothing" if current is None else f"{current.values} (TTL {current.ttl}s)"
            raise DnsError(
                f"Cloudflare accepted the change of {full} {rtype} but now has {shown} "
                f"instead of {wanted} (TTL {served}s, proxied {proxied})"
            )
