"""Settings: flags override `GATEWAY_*` environment variables, which override defaults.

Every setting is listed in `SETTINGS` so the README table and `gateway serve --help` can never
drift from what the code reads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from zoneinfo import ZoneInfo


@dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: str = "./gateway-data"
    # sqlite:///path/to/file.db or postgresql://user@host:port/db; empty = SQLite file in data_dir
    database_url: str = ""
    redis_url: str = ""
    # Public base URL for links in Bundles (e.g. https://gateway.example.org/fhir); empty = from request
    base_url: str = ""
    timezone: str = "Europe/London"
    max_body_bytes: int = 10 * 1024 * 1024
    # SQLite synchronous mode: FULL survives power loss, NORMAL survives process crashes only
    sqlite_synchronous: str = "FULL"
    database_pool_size: int = 10
    search_total_cap: int = 10_000
    mllp_port: int = 0
    mllp_host: str = ""
    # MLLP over TLS: server certificate chain and key (PEM); with a client CA, senders need certificates
    mllp_tls_cert: str = ""
    mllp_tls_key: str = ""
    mllp_tls_client_ca: str = ""
    workers: int = 1
    log_level: str = "info"
    mappings_dir: str = ""
    # Profile checks on write: off | warn | reject, or a JSON file (profile url -> policy)
    profile_policy: str = "warn"
    # Subscriptions and scale-out (gateway/events); times in milliseconds
    redis_prefix: str = "gateway"
    subscription_lanes: int = 4
    delivery_max_attempts: int = 8
    delivery_backoff_ms: int = 1000
    delivery_backoff_max_ms: int = 300_000
    delivery_timeout_ms: int = 10_000
    events_lease_ms: int = 10_000
    events_poll_ms: int = 250
    rate_limit: int = 0
    rate_limit_burst: int = 0
    rate_limit_client_header: str = ""
    cache_ttl: int = 300
    # Access control and audit (gateway/security)
    auth: str = ""
    clients_file: str = ""
    auth_audience: str = ""
    auth_signing_key: str = ""
    auth_token_ttl: int = 300
    restricted_labels: str = (
        "http://terminology.hl7.org/CodeSystem/v3-Confidentiality|R,"
        "http://terminology.hl7.org/CodeSystem/v3-Confidentiality|V"
    )
    audit: str = ""
    audit_queue_size: int = 10_000
    audit_batch_size: int = 200
    max_body_depth: int = 64
    extra: dict = field(default_factory=dict)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{Path(self.data_dir) / 'gateway.db'}"

    @property
    def effective_mappings_dir(self) -> Path:
        if self.mappings_dir:
            return Path(self.mappings_dir)
        return Path(__file__).resolve().parent.parent / "mappings"


# name -> help text, in README order
SETTINGS: dict[str, str] = {
    "host": "Address to bind the HTTP server to",
    "port": "HTTP port",
    "data_dir": "Folder for the embedded SQLite store",
    "database_url": "`sqlite:///file.db` or `postgresql://user@host:5432/db`; empty = SQLite in data_dir",
    "redis_url": "`redis://host:6379/0` to share events, idempotency keys and caches between processes",
    "base_url": "Public base URL of the FHIR endpoint used in Bundle links; empty = taken from the request",
    "timezone": "Zone for dates written without an offset (HL7 v2 times, FHIR dates in search)",
    "max_body_bytes": "Largest accepted request body (413 above it)",
    "sqlite_synchronous": "SQLite `synchronous` pragma: FULL (survives power loss) or NORMAL",
    "database_pool_size": "PostgreSQL connection pool size per process",
    "search_total_cap": "Searches count their matches exactly up to this many; above it Bundle.total is left out unless `_total=accurate`",
    "mllp_port": "Port of the HL7 v2 MLLP listener (0 = off; 2575 is the usual port)",
    "mllp_host": "Address of the MLLP listener (default: same as host)",
    "mllp_tls_cert": "PEM certificate chain: MLLP runs inside TLS (with `mllp_tls_key`)",
    "mllp_tls_key": "PEM private key of the MLLP TLS certificate",
    "mllp_tls_client_ca": "PEM CA bundle: MLLP senders must present a certificate it issued (mutual TLS)",
    "workers": "Number of gateway processes sharing the store",
    "log_level": "debug, info, warning or error",
    "mappings_dir": "Folder of ConceptMaps and source layouts (default: the bundled mappings/)",
    "profile_policy": "Profile checks on write: `off`, `warn` (store, log the issues), `reject` (422), or a JSON file mapping profile url to policy",
    "redis_prefix": "Prefix of every Redis key, so several deployments (or test runs) can share one Redis",
    "subscription_lanes": "Ordered delivery lanes per subscription (a resource always uses the same lane)",
    "delivery_max_attempts": "Attempts per notification before it is dead-lettered",
    "delivery_backoff_ms": "Delay before the first retry; doubles on each attempt, with jitter",
    "delivery_backoff_max_ms": "Longest delay between two attempts",
    "delivery_timeout_ms": "Timeout of every call to a subscriber's endpoint (handshake and notifications)",
    "events_lease_ms": "Lease on a delivery lane; a crashed process's lanes move to another after this",
    "events_poll_ms": "How often the outbox is checked for changes committed by other processes",
    "rate_limit": "Requests per second allowed per client (token bucket, shared through Redis); 0 = off",
    "rate_limit_burst": "Bucket size of the rate limit (0 = twice the rate)",
    "rate_limit_client_header": "Request header naming the client (e.g. X-Client-Id); empty = the client address",
    "cache_ttl": "Seconds a hot read (CapabilityStatement, ConceptMaps) stays in the shared cache; 0 = off",
    "auth": "`on` or `off`; empty = on when a clients file is set. Without auth the gateway serves on loopback only",
    "clients_file": "JSON registry of partner clients (scopes, organisation, channels, labels, keys) and trusted token issuers",
    "auth_audience": "The `aud` access tokens must carry; empty = the base URL (or http://host:port/fhir)",
    "auth_signing_key": "PEM RSA key the gateway signs its access tokens with; empty = made in the data dir on first start",
    "auth_token_ttl": "Lifetime in seconds of the access tokens issued at /auth/token",
    "restricted_labels": "Comma-separated `system|code` security labels only clients holding them may see",
    "audit": "`on` or `off`; empty = on with auth. AuditEvents for every read, search, write and refusal",
    "audit_queue_size": "AuditEvents waiting to be written before new ones are dropped (and counted)",
    "audit_batch_size": "AuditEvents written per store transaction by the background writer",
    "max_body_depth": "Deepest JSON/XML nesting accepted in a request body (400 above it)",
}


def load_settings(**overrides: object) -> Settings:
    """Defaults, then GATEWAY_* variables, then explicit (non-None) overrides."""
    s = Settings()
    for f in fields(Settings):
        if f.name == "extra":
            continue
        env = os.environ.get("GATEWAY_" + f.name.upper())
        if env is not None:
            setattr(s, f.name, int(env) if isinstance(getattr(s, f.name), int) else env)
    for k, v in overrides.items():
        if v is not None:
            setattr(s, k, v)
    return s
