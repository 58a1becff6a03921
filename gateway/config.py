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
    mllp_port: int = 0
    mllp_host: str = ""
    workers: int = 1
    log_level: str = "info"
    mappings_dir: str = ""
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
    "mllp_port": "Port of the HL7 v2 MLLP listener (0 = off; 2575 is the usual port)",
    "mllp_host": "Address of the MLLP listener (default: same as host)",
    "workers": "Number of gateway processes sharing the store",
    "log_level": "debug, info, warning or error",
    "mappings_dir": "Folder of ConceptMaps and source layouts (default: the bundled mappings/)",
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
