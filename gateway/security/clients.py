"""The partner registry (`GATEWAY_CLIENTS_FILE`): who may call, with which keys, for what.

    {"issuers": [{"issuer": "https://login.trust.example", "jwks_file": "trust-idp.jwks.json"}],
     "clients": [{"client_id": "council-reablement", "name": "City Council reablement",
                  "organization": "LDS01",
                  "scopes": ["system/Patient.rs", "system/ServiceRequest.cruds"],
                  "channels": ["ingest-council"], "labels": ["R"],
                  "jwks_file": "council.jwks.json"}]}

A client's public keys (for its private_key_jwt assertions at `POST /auth/token`) come from
`jwks` (inline), `jwks_file` (relative to the registry file) or `jwks_uri` (fetched with a
timeout, cached). `issuers` are other authorisation servers whose signed access tokens are
accepted directly; their tokens must name a registered client (`client_id`, `azp` or `sub`).
The file is re-read when it changes, so removing a client or a scope takes effect at once.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import jwt

from gateway.security.principal import Label, Principal, parse_labels
from gateway.security.scopes import Scope, parse_scope

log = logging.getLogger("gateway.security")
CHANNELS = frozenset({"hl7v2", "adw", "ingest-council", "ingest-community"})
JWKS_TIMEOUT_S = 5.0
JWKS_TTL_S = 300.0


class RegistryError(ValueError):
    """The clients file cannot be used (the gateway refuses to start with it)."""


@dataclass
class KeySource:
    """Public keys from inline JWKS, a file, or a URL fetched with a timeout and cached."""

    inline: dict | None = None
    file: Path | None = None
    uri: str = ""
    _keys: list = field(default_factory=list)
    _loaded_at: float = 0.0
    _mtime: float = 0.0

    def configured(self) -> bool:
        return bool(self.inline or self.file or self.uri)

    async def keys(self, refresh: bool = False) -> list[jwt.PyJWK]:
        if self.inline is not None:
            if not self._keys:
                self._keys = _parse_jwks(self.inline, "inline jwks")
            return self._keys
        if self.file is not None:
            mtime = self.file.stat().st_mtime
            if not self._keys or mtime != self._mtime:
                self._keys = _parse_jwks(json.loads(self.file.read_text()), str(self.file))
                self._mtime = mtime
            return self._keys
        if self.uri:
            now = time.monotonic()
            stale = now - self._loaded_at > JWKS_TTL_S
            # An unknown kid may mean the partner rotated keys: re-fetch, but at most every 10 s.
            if stale or (refresh and now - self._loaded_at > 10):
                async with httpx.AsyncClient(timeout=JWKS_TIMEOUT_S, follow_redirects=False, trust_env=False) as c:
                    resp = await c.get(self.uri)
                    resp.raise_for_status()
                    self._keys = _parse_jwks(resp.json(), self.uri)
                self._loaded_at = now
            return self._keys
        return []


def _parse_jwks(value: dict, where: str) -> list[jwt.PyJWK]:
    if not isinstance(value, dict) or not isinstance(value.get("keys"), list):
        raise RegistryError(f"{where}: a JWKS is an object with a 'keys' array")
    out = []
    for k in value["keys"]:
        if not isinstance(k, dict) or "d" in k:
            raise RegistryError(f"{where}: only public keys belong in a JWKS")
        try:
            out.append(jwt.PyJWK.from_dict(k))
        except jwt.PyJWTError as exc:
            raise RegistryError(f"{where}: unusable key {k.get('kid')!r}: {exc}") from None
    return out


def _key_source(entry: dict, base: Path, where: str) -> KeySource:
    src = KeySource()
    if entry.get("jwks") is not None:
        src.inline = entry["jwks"]
        _parse_jwks(src.inline, where)
    elif entry.get("jwks_file"):
        path = Path(entry["jwks_file"])
        src.file = path if path.is_absolute() else base / path
        if not src.file.is_file():
            raise RegistryError(f"{where}: jwks_file {src.file} does not exist")
        _parse_jwks(json.loads(src.file.read_text()), str(src.file))
    elif entry.get("jwks_uri"):
        if not str(entry["jwks_uri"]).startswith(("https://", "http://127.", "http://localhost")):
            raise RegistryError(f"{where}: jwks_uri must be https (or a loopback http address)")
        src.uri = str(entry["jwks_uri"])
    return src


@dataclass
class Client:
    client_id: str
    name: str
    organization: str
    scopes: list[Scope]
    channels: frozenset[str]
    labels: frozenset[Label]
    keys: KeySource
    operator: bool = False
    enabled: bool = True

    def principal(self, scopes: list[Scope] | None = None, labels: frozenset[Label] | None = None,
                  token_id: str = "", expires_at: float = 0.0) -> Principal:
        return Principal(
            self.client_id, self.organization, self.name, tuple(self.scopes if scopes is None else scopes),
            self.labels if labels is None else labels, self.channels, self.operator,
            token_id=token_id, expires_at=expires_at,
        )


@dataclass
class Issuer:
    issuer: str
    keys: KeySource
    audience: str = ""  # expected `aud` (default: the gateway's audience)


class Registry:
    """Clients and trusted issuers, re-read from the file when it changes (checked every 2 s)."""

    def __init__(self, path: str) -> None:
        self.path = Path(path) if path else None
        self.clients: dict[str, Client] = {}
        self.issuers: dict[str, Issuer] = {}
        self.generation = 0
        self._mtime = 0.0
        self._checked = 0.0
        if self.path is not None:
            self._load()

    def _load(self) -> None:
        assert self.path is not None
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RegistryError(f"GATEWAY_CLIENTS_FILE {self.path} does not exist") from None
        except json.JSONDecodeError as exc:
            raise RegistryError(f"GATEWAY_CLIENTS_FILE {self.path} is not JSON: {exc}") from None
        if not isinstance(raw, dict) or not isinstance(raw.get("clients", []), list):
            raise RegistryError(f"GATEWAY_CLIENTS_FILE {self.path}: expected an object with a 'clients' array")
        base = self.path.resolve().parent
        clients: dict[str, Client] = {}
        for i, entry in enumerate(raw.get("clients", [])):
            where = f"{self.path}: clients[{i}]"
            cid = entry.get("client_id") if isinstance(entry, dict) else None
            if not cid or not isinstance(cid, str):
                raise RegistryError(f"{where} has no client_id")
            if cid in clients:
                raise RegistryError(f"{where}: client_id {cid!r} is listed twice")
            scopes = []
            for text in entry.get("scopes", []):
                s = parse_scope(text)
                if s is None:
                    raise RegistryError(f"{where}: scope {text!r} is not a SMART resource scope the gateway grants")
                scopes.append(s)
            channels = frozenset(entry.get("channels", []))
            if channels - CHANNELS:
                raise RegistryError(f"{where}: unknown channels {sorted(channels - CHANNELS)}; known: {sorted(CHANNELS)}")
            clients[cid] = Client(
                cid, str(entry.get("name", cid)), str(entry.get("organization", "")), scopes, channels,
                parse_labels(entry.get("labels")), _key_source(entry, base, where),
                bool(entry.get("operator", False)), bool(entry.get("enabled", True)),
            )
        issuers: dict[str, Issuer] = {}
        for i, entry in enumerate(raw.get("issuers", [])):
            where = f"{self.path}: issuers[{i}]"
            if not isinstance(entry, dict) or not entry.get("issuer"):
                raise RegistryError(f"{where} has no issuer")
            src = _key_source(entry, base, where)
            if not src.configured():
                raise RegistryError(f"{where} needs jwks, jwks_file or jwks_uri")
            issuers[entry["issuer"]] = Issuer(entry["issuer"], src, str(entry.get("audience", "")))
        self.clients, self.issuers = clients, issuers
        self._mtime = self.path.stat().st_mtime
        self.generation += 1

    def refresh(self) -> None:
        """Re-read the file if it changed; a broken edit keeps the last good registry."""
        if self.path is None:
            return
        now = time.monotonic()
        if now - self._checked < 2.0:
            return
        self._checked = now
        try:
            mtime = os.stat(self.path).st_mtime
        except OSError:
            return
        if mtime != self._mtime:
            try:
                self._load()
                log.info("clients file %s re-read: %d clients", self.path, len(self.clients))
            except RegistryError as exc:
                self._mtime = mtime
                log.error("clients file changed but cannot be used (keeping the previous one): %s", exc)

    def client(self, client_id: str) -> Client | None:
        self.refresh()
        c = self.clients.get(client_id)
        return c if c is not None and c.enabled else None
