"""Wiring: settings → registry, keys, token service, guard, audit writer; the start-up rule.

Auth is on when `GATEWAY_AUTH=on`, or when a clients file is configured and `GATEWAY_AUTH` is not
`off`. Without auth the gateway serves only on a loopback address (and says so); asked to bind
anything else it refuses to start. Audit is on with auth unless `GATEWAY_AUDIT=off`
(`GATEWAY_AUDIT=on` also audits a loopback gateway without auth, as the anonymous caller).
"""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path
from urllib.parse import urlsplit

from gateway.config import Settings
from gateway.security.audit import AuditWriter, build_event
from gateway.security.principal import CONFIDENTIALITY, Label, Principal, owner_of, parse_labels

log = logging.getLogger("gateway.security")
DEFAULT_RESTRICTED = f"{CONFIDENTIALITY}|R,{CONFIDENTIALITY}|V"
_configured: frozenset[Label] = parse_labels(DEFAULT_RESTRICTED)


def configured_labels() -> frozenset[Label]:
    """The restricted security labels of this process (GATEWAY_RESTRICTED_LABELS)."""
    return _configured


class StartupRefused(RuntimeError):
    """The settings would expose an unauthenticated gateway (or are unusable)."""


def auth_enabled(settings: Settings) -> bool:
    mode = (settings.auth or "").strip().lower()
    if mode not in ("", "on", "off"):
        raise StartupRefused(f"GATEWAY_AUTH must be on or off, not {settings.auth!r}")
    if mode == "off":
        return False
    return mode == "on" or bool(settings.clients_file)


def audit_enabled(settings: Settings) -> bool:
    mode = (settings.audit or "").strip().lower()
    if mode not in ("", "on", "off"):
        raise StartupRefused(f"GATEWAY_AUDIT must be on or off, not {settings.audit!r}")
    return mode == "on" or (mode == "" and auth_enabled(settings))


def is_loopback(host: str) -> bool:
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_startup(settings: Settings) -> str:
    """Raise StartupRefused for an unsafe or unusable configuration; else the line to print."""
    on = auth_enabled(settings)
    if on and not settings.clients_file:
        raise StartupRefused("GATEWAY_AUTH=on needs GATEWAY_CLIENTS_FILE (the partners' registry)")
    if not on:
        exposed = [h for h in {settings.host, *([settings.mllp_host or settings.host] if settings.mllp_port else [])}
                   if not is_loopback(h)]
        if exposed:
            raise StartupRefused(
                f"refusing to serve without authentication on {', '.join(sorted(exposed))}: "
                "set GATEWAY_CLIENTS_FILE (see conf/clients.example.json) to turn auth on, "
                "or bind a loopback address such as 127.0.0.1")
        return f"auth: OFF (no clients configured) - serving unauthenticated on loopback {settings.host} only"
    return f"auth: ON (clients from {settings.clients_file}; audience {audience(settings)})"


def audience(settings: Settings) -> str:
    """The `aud` access tokens must carry: the public FHIR base URL."""
    if settings.auth_audience:
        return settings.auth_audience.rstrip("/")
    if settings.base_url:
        return settings.base_url.rstrip("/")
    host = settings.host if settings.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    return f"http://{host}:{settings.port}/fhir"


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class SecurityService:
    def __init__(self, settings: Settings, store) -> None:
        global _configured
        from gateway.security.guard import Guard

        self.settings = settings
        self.auth_enabled = auth_enabled(settings)
        self.audit_enabled = audit_enabled(settings)
        self.restricted_labels = parse_labels(settings.restricted_labels)
        _configured = self.restricted_labels
        self.audit = AuditWriter(store, settings.audit_queue_size, settings.audit_batch_size)
        self.guard = Guard(self)
        self.tokens = None
        self.registry = None
        self.audience = audience(settings)
        self.token_endpoint = origin(self.audience) + "/auth/token"
        self.issuer = origin(self.audience) + "/auth"

    def load(self) -> None:
        """Read the registry and the signing key (start-up; errors stop the gateway)."""
        if not self.auth_enabled:
            return
        from gateway.security.clients import Registry, RegistryError
        from gateway.security.keys import load_or_create
        from gateway.security.tokens import Tokens

        try:
            self.registry = Registry(self.settings.clients_file)
        except RegistryError as exc:
            raise StartupRefused(str(exc)) from None
        key_path = Path(self.settings.auth_signing_key or Path(self.settings.data_dir) / "auth-signing-key.pem")
        key = load_or_create(key_path)
        self.tokens = Tokens(self.registry, key, self.issuer, self.audience, self.token_endpoint,
                             self.settings.auth_token_ttl)
        log.info("auth on: %d clients, %d trusted issuers, audience %s", len(self.registry.clients),
                 len(self.registry.issuers), self.audience)

    async def start(self) -> None:
        self.load()
        if self.audit_enabled:
            self.audit.start()

    async def stop(self) -> None:
        await self.audit.stop()

    async def dispatch(self, ctx, route, bound, req):
        return await self.guard.dispatch(ctx, route, bound, req)

    def subscriber(self, subscription: dict) -> Principal | None:
        """The principal a Subscription's notifications are for (None: written by the gateway or
        before auth was on, so it may see everything)."""
        owner = owner_of(subscription)
        if owner is None or self.registry is None:
            return None
        client = self.registry.client(owner)
        if client is None:  # the owner was removed or disabled: it may see nothing any more
            return Principal(owner)
        return client.principal()

    def record_mllp(self, sender: dict, ack: bytes) -> None:
        """One AuditEvent per MLLP message (as the HTTP channels get): the sender by its TLS
        certificate when it presented one, else by address; the outcome from the ACK code."""
        if not self.audit_enabled:
            return
        code = ack[ack.find(b"MSA|") + 4 : ack.find(b"MSA|") + 6] if b"MSA|" in ack else b""
        status = {b"AA": 200, b"CA": 200, b"AE": 422, b"CE": 422}.get(code, 400)
        subject = sender.get("subject")
        who = Principal(f"certificate:{subject}", name=f"{subject} (issued by {sender.get('issuer', '?')})") \
            if subject else Principal(f"mllp:{sender.get('address', '')}", name="MLLP sender without a certificate")
        self.audit.record(build_event(who, sender.get("address", ""), "hl7v2", status,
                                      f"hl7v2 message over MLLP, ACK {code.decode('ascii', 'replace') or '?'}", [],
                                      action="C", kind="110100"))

    def status(self) -> dict:
        return {"auth": self.auth_enabled, "audit": self.audit_enabled, **self.audit.status()}
