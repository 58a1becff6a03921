"""Per-feed settings from `mappings/hl7v2-feeds.json`.

Trusts fill the same HL7 fields differently (PV1-36 above all), so anything that varies by
sender is data keyed on MSH-3/MSH-4, not a branch in the mappers. A message from a sender with
no entry gets the defaults, with its MSH-4 as the ODS code.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson

FEEDS_FILE = "hl7v2-feeds.json"
PV1_36_MODES = ("method", "destination", "auto")


@dataclass(frozen=True)
class Feed:
    id: str = "default"
    # ODS code of the sending organisation; empty = taken from MSH-4 at mapping time
    ods_code: str = ""
    name: str = ""
    timezone: str = "Europe/London"
    # How PV1-36 is read: NHS England ADT convention ("method", NHS DD Discharge Method 1-9),
    # HL7 UK A.3 ("destination", NHS DD Discharge Destination) or "auto" (1 digit = method,
    # 2 digits = destination).
    pv1_36: str = "auto"
    # Identifier systems; "{ods}" and "{authority}" (CX-4, else the ODS code) are filled in.
    mrn_system: str = "https://fhir.activerecovery.example/Id/hl7v2/{authority}/mrn"
    visit_system: str = "https://fhir.activerecovery.example/Id/hl7v2/{authority}/hospital-provider-spell"
    location_system: str = "https://fhir.activerecovery.example/Id/hl7v2/{ods}/location"
    staff_system: str = "https://fhir.activerecovery.example/Id/hl7v2/{ods}/staff"
    other_identifier_system: str = "https://fhir.activerecovery.example/Id/hl7v2/{authority}/{type}"
    # CX-5 identifier type codes that are this trust's hospital (MRN-like) numbers
    mrn_types: tuple[str, ...] = ("MR", "PI", "PAS", "HOSP")
    # "AUTHORITY^TYPE" (or "^TYPE") -> system, for identifiers the defaults above do not fit
    identifier_systems: dict = field(default_factory=dict)
    # NHS numbers starting 8 or 9 are never issued (test ranges). Production feeds set false.
    allow_test_nhs_numbers: bool = True
    # Subject common names of the TLS client certificates that may send this feed over MLLP.
    # Empty: any sender the listener lets in. Non-empty: only those, and never over plain TCP.
    certificates: tuple[str, ...] = ()

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def system(self, template: str, ods: str, authority: str = "", type_code: str = "") -> str:
        return template.format(ods=ods, authority=authority or ods, type=type_code or "ID")


@dataclass(frozen=True)
class _Route:
    applications: tuple[str, ...]
    facilities: tuple[str, ...]
    feed: Feed


class FeedConfig:
    """All configured feeds; `resolve(application, facility)` picks the one for a message."""

    def __init__(self, routes: list[_Route] | None = None, default: Feed | None = None,
                 referral_triggers: object = None) -> None:
        self.routes = routes or []
        self.default = default or Feed()
        # certificate subject -> the feeds it is registered for (it may send only those)
        self.certificate_feeds: dict[str, list[str]] = {}
        for feed in [r.feed for r in self.routes] + [self.default]:
            for subject in feed.certificates:
                self.certificate_feeds.setdefault(subject, []).append(feed.id)
        # referral.ReferralTriggers read from the same folder (hl7v2-referral-triggers.json)
        self.referral_triggers = referral_triggers

    @classmethod
    def from_dict(cls, data: dict) -> "FeedConfig":
        defaults = data.get("defaults", {})
        default = _feed(defaults, {"id": "default"})
        routes = []
        for entry in data.get("feeds", []):
            match = entry.get("match", {})
            routes.append(_Route(
                applications=tuple(a.upper() for a in match.get("sending_application", ["*"])),
                facilities=tuple(f.upper() for f in match.get("sending_facility", ["*"])),
                feed=_feed(defaults, entry),
            ))
        return cls(routes, default)

    @classmethod
    def load(cls, path: str | Path) -> "FeedConfig":
        """Read the feeds file and, beside it, the referral trigger table.

        `path` may be the file or the `mappings/` folder holding both.
        """
        from .referral import TRIGGERS_FILE, ReferralTriggers

        p = Path(path)
        if p.is_dir():
            p = p / FEEDS_FILE
        config = cls.from_dict(orjson.loads(p.read_bytes()))
        triggers = p.parent / TRIGGERS_FILE
        if triggers.exists():
            config.referral_triggers = ReferralTriggers.load(triggers)
        return config

    def resolve(self, sending_application: str, sending_facility: str) -> Feed:
        app, fac = (sending_application or "").upper(), (sending_facility or "").upper()
        for route in self.routes:
            if ("*" in route.facilities or fac in route.facilities) and (
                "*" in route.applications or app in route.applications
            ):
                return route.feed
        return self.default

    def refusal(self, sending_application: str, sending_facility: str, certificate: str | None) -> str | None:
        """Why a message sent over MLLP with this client certificate subject (None: no TLS
        certificate) may not speak for the feed its MSH-3/MSH-4 name; None when it may.

        A feed that lists certificates takes messages only from them; a certificate registered
        for some feeds sends only for those. Any other certificate (or none) may send for feeds
        that list none, as the listener's own TLS settings allow.
        """
        feed = self.resolve(sending_application, sending_facility)
        sender = f"MSH-3/MSH-4 {sending_application or '(empty)'}^{sending_facility or '(empty)'}"
        if feed.certificates and certificate not in feed.certificates:
            shown = f"certificate {certificate!r}" if certificate else "no client certificate"
            return f"{sender} is feed {feed.id}, which accepts only its registered certificates; this connection presented {shown}"
        registered = self.certificate_feeds.get(certificate or "")
        if registered and feed.id not in registered:
            return f"certificate {certificate!r} is registered for feed(s) {', '.join(registered)}, not for {sender} (feed {feed.id})"
        return None


def _feed(defaults: dict, entry: dict) -> Feed:
    known = {f.name for f in fields(Feed)}
    values = {k: v for k, v in {**defaults, **entry}.items() if k in known}
    for listed in ("mrn_types", "certificates"):
        if listed in values:
            values[listed] = tuple(values[listed])
    if values.get("pv1_36", "auto") not in PV1_36_MODES:
        raise ValueError(f"feed {entry.get('id')}: pv1_36 must be one of {PV1_36_MODES}")
    ZoneInfo(values.get("timezone", "Europe/London"))  # fail at load, not per message
    return Feed(**values)
