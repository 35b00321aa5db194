"""The ``route53`` DNS provider: Amazon Route 53 through boto3.

Credentials come the standard AWS way (environment, shared profile, instance or task role:
botocore's credential chain), never from the playbook; botocore signs each request. Every
request and response shape below is the Route 53 API reference's (2013-04-01):

* ListHostedZonesByName (DNSName, MaxItems -> HostedZones[].{Id, Name, Config.PrivateZone},
  IsTruncated, NextDNSName, NextHostedZoneId): docs.aws.amazon.com/Route53/latest/APIReference/
  API_ListHostedZonesByName.html
* GetHostedZone (Id -> HostedZone, DelegationSet.NameServers): API_GetHostedZone.html
* ListResourceRecordSets (HostedZoneId, StartRecordName, StartRecordType, MaxItems ->
  ResourceRecordSets[].{Name, Type, TTL, ResourceRecords[].Value, AliasTarget, SetIdentifier}):
  API_ListResourceRecordSets.html
* ChangeResourceRecordSets (ChangeBatch.Changes[].{Action: UPSERT|DELETE, ResourceRecordSet}
  -> ChangeInfo.{Id, Status}): API_ChangeResourceRecordSets.html
* GetChange (Id -> ChangeInfo.Status PENDING|INSYNC; "INSYNC indicates that the changes have
  propagated to all Route 53 DNS servers managing the hosted zone"): API_GetChange.html
* An alias target is a load balancer's DNSName with its CanonicalHostedZoneId (elbv2
  DescribeLoadBalancers, elasticloadbalancing/latest/APIReference/API_DescribeLoadBalancers.html)
  or CanonicalHostedZoneNameID (classic ELB, 2012-06-01/APIReference/
  API_LoadBalancerDescription.html).
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable
from typing import Any

from cutover.adapters.dns import DnsError, Record

__all__ = ["ALIAS_TTL", "Route53Provider"]

# Route 53 FAQ (DNS failover): ELB alias records have a fixed TTL of 60 seconds; an alias
# record carries no TTL of its own (API_ResourceRecordSet.html, "TTL": not for alias records).
ALIAS_TTL = 60
_MIN_SECRET = 8  # shorter values are not scrubbed out of error texts (they would garble them)
_ADDRESS_TYPES = ("A", "AAAA")
# Regions as they appear in ELB DNS names: name-1.us-east-1.elb.amazonaws.com (classic/ALB)
# and name-1.elb.us-east-1.amazonaws.com (NLB).
_REGION_IN_NAME = re.compile(r"\.(?:elb\.)?([a-z]{2}(?:-gov)?-[a-z]+-\d)\.")
_HINTS = {
    "AccessDenied": "the AWS identity in use lacks this Route 53 permission",
    "InvalidClientTokenId": "the AWS access key is not valid",
    "SignatureDoesNotMatch": "the AWS secret key does not match the access key",
    "ExpiredToken": "the AWS session token has expired",
    "NoSuchHostedZone": "check dns.zone and dns.route53.zone_id",
}


def _norm(name: str) -> str:
    """Route 53 returns absolute names, octal-escaping ``*`` (\\052)."""
    return name.replace("\\052", "*").strip().rstrip(".").lower()


class Route53Provider:
    """Read and replace record sets in one Route 53 hosted zone."""

    synced_by_provider = True  # set() returns once GetChange says INSYNC

    def __init__(
        self,
        zone: str,
        *,
        zone_id: str | None = None,
        region: str | None = None,
        rack: str | None = None,
        timeout: float = 300.0,
        poll: float = 2.0,
        session: Any = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.zone = _norm(zone)
        self.zone_id = zone_id.rsplit("/", 1)[-1] if zone_id else None
        self.region = region
        self.rack = rack.rsplit("/", 1)[-1] if rack else None  # convox.rack, "org/name" too
        self.timeout = timeout
        self.poll = poll
        self.sleep = sleep
        self._session = session
        self._clients: dict[str, Any] = {}
        self._hosted_zone: dict[str, Any] | None = None

    # -- AWS plumbing ---------------------------------------------------------------------
    def client(self, service: str = "route53") -> Any:
        """A boto3 client (AWS_ENDPOINT_URL, honoured by botocore, points it elsewhere)."""
        if service not in self._clients:
            import boto3  # noqa: PLC0415 - start-up time: only when Route 53 is used

            if self._session is None:
                self._session = boto3.session.Session()
            region = None
            if service != "route53":
                region = self.region or self._session.region_name
            self._clients[service] = self._session.client(service, region_name=region)
        return self._clients[service]

    def _call(self, what: str, service: str, method: str, **kwargs: Any) -> Any:
        from botocore.exceptions import (  # noqa: PLC0415
            BotoCoreError,
            ClientError,
            NoCredentialsError,
            NoRegionError,
        )

        try:
            return getattr(self.client(service), method)(**kwargs)
        except NoCredentialsError:
            raise DnsError(
                f"Route 53 {what}: no AWS credentials found (set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run with an instance role)"
            ) from None
        except NoRegionError:
            raise DnsError(
                f"Route 53 {what}: no AWS region to look for the load balancer in; set "
                "dns.route53.region in the playbook (or AWS_REGION)"
            ) from None
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", "Error"))
            hint = _HINTS.get(code)
            raise DnsError(
                f"Route 53 {what} refused: {code}: {error.get('Message', '')}"
                + (f" ({hint})" if hint else "")
            ) from None
        except BotoCoreError as exc:
            raise DnsError(f"Route 53 {what} failed: {self._scrub(str(exc))}") from None

    def _scrub(self, text: str) -> str:
        """``text`` without the secret key or session token in any form: botocore's HTTP client
        refuses an illegal header value by quoting it (``Invalid header value b'...\\n'``), so
        a session token with a stray newline would be shown, escaped past the masker's copy."""
        from botocore.exceptions import BotoCoreError  # noqa: PLC0415

        values = {os.environ.get(v) for v in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")}
        with contextlib.suppress(BotoCoreError):  # an error path: scrub what is known
            creds = self._session.get_credentials() if self._session is not None else None
            if creds is not None:
                frozen = creds.get_frozen_credentials()
                values |= {frozen.secret_key, frozen.token}
        forms = {
            form
            for value in values
            if value and len(value.strip()) >= _MIN_SECRET
            for form in (value, value.strip(), repr(value.encode())[2:-1], repr(value)[1:-1])
        }
        for form in sorted(forms, key=len, reverse=True):
            text = text.replace(form, "***")
        return text

    # -- the hosted zone --------------------------------------------------------------------
    def hosted_zone(self) -> dict[str, Any]:
        """GetHostedZone of the zone (found by name unless dns.route53.zone_id is set)."""
        if self._hosted_zone is None:
            zone_id = self.zone_id or self._find_zone_id()
            found = self._call(f"GetHostedZone {zone_id}", "route53", "get_hosted_zone", Id=zone_id)
            name = _norm(found["HostedZone"]["Name"])
            if name != self.zone:
                raise DnsError(
                    f"Route 53 hosted zone {zone_id} is {name}, not dns.zone {self.zone}"
                )
            self.zone_id = zone_id
            self._hosted_zone = found
        return self._hosted_zone

    def _find_zone_id(self) -> str:
        matches: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"DNSName": self.zone + ".", "MaxItems": "100"}
        while True:
            page = self._call(
                f"ListHostedZonesByName {self.zone}",
                "route53",
                "list_hosted_zones_by_name",
                **kwargs,
            )
            zones = page.get("HostedZones", [])
            matches += [z for z in zones if _norm(z["Name"]) == self.zone]
            # Sorted by name: once past the zone's name, no later page can hold it.
            past = any(_norm(z["Name"]) != self.zone for z in zones)
            if not page.get("IsTruncated") or past:
                break
            kwargs = {
                "DNSName": page["NextDNSName"],
                "HostedZoneId": page["NextHostedZoneId"],
                "MaxItems": "100",
            }
        public = [z for z in matches if not z.get("Config", {}).get("PrivateZone")]
        ids = ", ".join(z["Id"].rsplit("/", 1)[-1] for z in matches)
        if len(public) == 1:
            return str(public[0]["Id"]).rsplit("/", 1)[-1]
        if not matches:
            raise DnsError(
                f"no Route 53 hosted zone named {self.zone} in this AWS account",
                resolution="Check dns.zone and the AWS account (AWS_PROFILE) in use.",
            )
        if not public:
            raise DnsError(
                f"Route 53 has only a private hosted zone named {self.zone} ({ids}): the "
                "internet's resolvers never see it",
                resolution="Use the account holding the public zone, or set "
                "dns.route53.zone_id if you really mean the private one.",
            )
        raise DnsError(
            f"Route 53 has {len(public)} public hosted zones named {self.zone} ({ids}): "
            "cutover will not guess which one the domain is delegated to",
            resolution="Set dns.route53.zone_id to the zone the registrar's NS records name.",
        )

    def nameservers(self) -> list[str]:
        """The hosted zone's DelegationSet (none for a private zone)."""
        names = self.hosted_zone().get("DelegationSet", {}).get("NameServers", [])
        return [_norm(n) for n in names]

    def apex(self) -> str | None:
        return "alias"

    def fqdn(self, name: str) -> str:
        """``@`` or "", one label, or a full name -> the full name, inside the zone."""
        if name in ("@", ""):
            return self.zone
        name = _norm(name)
        full = name if "." in name else f"{name}.{self.zone}"
        if full != self.zone and not full.endswith("." + self.zone):
            raise DnsError(f"{name} is not inside Route 53 hosted zone {self.zone}")
        return full

    # -- reading ------------------------------------------------------------------------------
    def _raw(self, name: str, rtype: str) -> dict[str, Any] | None:
        zone_id = self.hosted_zone()["HostedZone"]["Id"].rsplit("/", 1)[-1]
        page = self._call(
            f"ListResourceRecordSets {name} {rtype}",
            "route53",
            "list_resource_record_sets",
            HostedZoneId=zone_id,
            StartRecordName=name + ".",
            StartRecordType=rtype,
            MaxItems="1",
        )
        for rrset in page.get("ResourceRecordSets", []):
            if _norm(rrset["Name"]) == name and rrset["Type"] == rtype:
                if "SetIdentifier" in rrset:
                    raise DnsError(
                        f"{name} {rtype} uses a Route 53 routing policy (set "
                        f"{rrset['SetIdentifier']!r}): cutover only changes simple records",
                        resolution="Change the record in the Route 53 console.",
                    )
                return dict(rrset)
        return None

    def get(self, name: str, rtype: str) -> Record | None:
        """The record set (an alias shows its target and the ELB's fixed TTL)."""
        full, rtype = self.fqdn(name), rtype.upper()
        rrset = self._raw(full, rtype)
        if rrset is None:
            return None
        alias = rrset.get("AliasTarget")
        if alias:
            target = _norm(alias["DNSName"]).removeprefix("dualstack.")
            return Record(full, rtype, ALIAS_TTL, [target + "."], alias=True)
        values = sorted(str(rr["Value"]) for rr in rrset.get("ResourceRecords", []))
        return Record(full, rtype, int(rrset.get("TTL", 0)), values)

    # -- writing ------------------------------------------------------------------------------
    def _is_alias(self, record: Record) -> bool:
        full = self.fqdn(record.name)
        return record.alias or (record.rtype.upper() == "CNAME" and full == self.zone)

    def describe_set(self, record: Record) -> str:
        full = self.fqdn(record.name)
        where = f"Route 53 hosted zone {self.zone}" + (f" ({self.zone_id})" if self.zone_id else "")
        if self._is_alias(record):
            what = (
                f"UPSERT {full} A alias to load balancer {', '.join(record.values)} "
                f"(fixed TTL {ALIAS_TTL}s) standing in for a CNAME, deleting AAAA records there"
            )
        else:
            rtype = record.rtype.upper()
            what = f"UPSERT {full} {rtype} {', '.join(record.values)} TTL {record.ttl}s"
            if rtype == "CNAME":
                what += ", deleting A/AAAA records there"
            elif rtype in _ADDRESS_TYPES:
                what += ", deleting a CNAME there"
        wait = f"then wait until Route 53 reports INSYNC (up to {self.timeout:g}s)"
        return f"{what} in {where}, {wait}"

    def set(self, record: Record) -> None:
        """Replace the record set in one change batch, wait for INSYNC, then read it back.

        A CNAME at the zone apex (or ``record.alias``) becomes an alias A record to the load
        balancer named by the value. Conflicting types at the name (A/AAAA vs CNAME) are
        deleted in the same batch, so the change is atomic.
        """
        full, rtype = self.fqdn(record.name), record.rtype.upper()
        if not record.values:
            raise DnsError(f"no value given for {full} {rtype}")
        if self._is_alias(record):
            rtype = "A"
            rrset: dict[str, Any] = {
                "Name": full + ".",
                "Type": "A",
                "AliasTarget": self._alias_target(record.values[0]),
            }
        else:
            if record.ttl < 0:
                raise DnsError(f"negative TTL {record.ttl} for {full}")
            rrset = {
                "Name": full + ".",
                "Type": rtype,
                "TTL": record.ttl,
                "ResourceRecords": [{"Value": v} for v in record.values],
            }
        conflicts = {"CNAME": _ADDRESS_TYPES, "A": ("CNAME",), "AAAA": ("CNAME",)}.get(rtype, ())
        if "AliasTarget" in rrset:
            # It stands in for a CNAME, which replaces every address record at the name: an
            # AAAA left there would keep sending IPv6 clients to the old host.
            conflicts = ("CNAME", "AAAA")
        changes: list[dict[str, Any]] = []
        for other in conflicts:
            existing = self._raw(full, other)
            if existing is not None:
                changes.append({"Action": "DELETE", "ResourceRecordSet": existing})
        changes.append({"Action": "UPSERT", "ResourceRecordSet": rrset})
        zone_id = self.hosted_zone()["HostedZone"]["Id"].rsplit("/", 1)[-1]
        answer = self._call(
            f"ChangeResourceRecordSets {full} {rtype}",
            "route53",
            "change_resource_record_sets",
            HostedZoneId=zone_id,
            ChangeBatch={"Comment": f"cutover: {full} {rtype}", "Changes": changes},
        )
        info = answer["ChangeInfo"]
        self._wait_insync(str(info["Id"]), str(info["Status"]), full)
        if "AliasTarget" in rrset:  # read back what the alias points at, the LB's own name
            record = Record(full, "A", ALIAS_TTL, [rrset["AliasTarget"]["DNSName"]], alias=True)
        self._read_back(full, rtype, record, "AliasTarget" in rrset)

    def _wait_insync(self, change_id: str, status: str, name: str) -> None:
        deadline = time.monotonic() + self.timeout
        while status != "INSYNC":
            if time.monotonic() > deadline:
                raise DnsError(
                    f"Route 53 change {change_id} for {name} is still {status} after "
                    f"{self.timeout:g}s (not yet on all Route 53 name servers)",
                    resolution="Check it with `aws route53 get-change --id "
                    f"{change_id.rsplit('/', 1)[-1]}`, then `cutover run` again.",
                )
            self.sleep(self.poll)
            status = str(
                self._call(f"GetChange {change_id}", "route53", "get_change", Id=change_id)[
                    "ChangeInfo"
                ]["Status"]
            )

    def _read_back(self, full: str, rtype: str, record: Record, alias: bool) -> None:
        current = self.get(full, rtype)
        wanted = sorted(_norm(v).removeprefix("dualstack.") for v in record.values)
        seen = sorted(_norm(v) for v in current.values) if current else []
        ok = current is not None and seen == wanted and (alias or current.ttl == record.ttl)
        if not ok:
            shown = "nothing" if current is None else f"{seen} (TTL {current.ttl}s)"
            raise DnsError(
                f"Route 53 accepted the change of {full} {rtype} but now serves {shown} "
                f"instead of {wanted}"
            )

    def _pages(self, service: str, key: str) -> list[dict[str, Any]]:
        """Every load balancer DescribeLoadBalancers lists (Marker / NextMarker pages)."""
        found: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {}
        while True:
            page = self._call(
                f"DescribeLoadBalancers ({service})", service, "describe_load_balancers", **kwargs
            )
            found += page.get(key, [])
            if not page.get("NextMarker"):
                return found
            kwargs = {"Marker": page["NextMarker"]}

    def _alias_target(self, target: str) -> dict[str, Any]:
        """The load balancer whose DNS name is ``target`` (the router), as an AliasTarget."""
        name = _norm(target).removeprefix("dualstack.")
        self.client()  # the session, whose region (AWS_REGION, the profile's) comes first
        if self.region is None and not self._session.region_name:
            found = _REGION_IN_NAME.search(name + ".")
            self.region = found.group(1) if found else None
        v2 = self._pages("elbv2", "LoadBalancers")
        for lb in v2:
            if _norm(lb.get("DNSName", "")) == name:
                return {
                    "HostedZoneId": lb["CanonicalHostedZoneId"],
                    "DNSName": lb["DNSName"],
                    "EvaluateTargetHealth": False,
                }
        # `convox rack` shows Router router.<DOMAIN> (provider/k8s/system.go SystemGet), DOMAIN
        # being an alias.convox.com name for the router's NLB (terraform/router/aws/outputs.tf
        # "endpoint"), not the NLB's own DNS name; the NLB is named router-<rack>
        # (terraform/router/aws/main.tf, aws-load-balancer-name) - convox at 9e02452.
        named = [lb for lb in v2 if self.rack and lb.get("LoadBalancerName") == self._router_lb]
        if len(named) == 1:
            return {
                "HostedZoneId": named[0]["CanonicalHostedZoneId"],
                "DNSName": named[0]["DNSName"],
                "EvaluateTargetHealth": False,
            }
        for lb in self._pages("elb", "LoadBalancerDescriptions"):
            if _norm(lb.get("DNSName", "")) == name:
                if not lb.get("CanonicalHostedZoneNameID"):
                    raise DnsError(
                        f"classic load balancer {name} came without its "
                        "CanonicalHostedZoneNameID: cannot write the alias record"
                    )
                return {
                    "HostedZoneId": lb["CanonicalHostedZoneNameID"],
                    "DNSName": lb["DNSName"],
                    "EvaluateTargetHealth": False,
                }
        region = self.region or (self._session.region_name if self._session else None)
        rack = (
            f", nor is there one load balancer named {self._router_lb} (the rack's router)"
            if self.rack
            else ""
        )
        raise DnsError(
            f"the zone apex {self.zone} can only point at the router through a Route 53 alias "
            f"record, and {name} is not the DNS name of a load balancer in this AWS account "
            f"(region {region or 'unknown'}){rack}",
            resolution="Set dns.route53.region to the rack's region and convox.rack to the "
            "rack's name (its router's load balancer is router-<rack>), or migrate a www-style "
            "name (dns.record) with a CNAME and redirect the apex to it.",
        )

    def alias_name(self, target: str) -> str:
        """The name an alias record to ``target`` (the router) holds: its load balancer's
        DNS name, as :meth:`get` shows the alias (so a step can tell it is done)."""
        return _norm(self._alias_target(target)["DNSName"]).removeprefix("dualstack.") + "."

    @property
    def _router_lb(self) -> str:
        return f"router-{self.rack}"
