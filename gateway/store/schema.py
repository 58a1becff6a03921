"""The store's tables, written once for both dialects.

Every resource has one row in `resource` (its current version) and one row per version in
`resource_version`. `pk` is a surrogate integer given at first creation and never changed: index
rows hang off it and paging uses it as the final tie-break, so a row never moves while pages are
being read. `seq` is a global change number, taken from `change_seq`, that orders every write
(history, `_since`, and the outbox of change events read by subscriptions).

Search index tables carry `type` beside `param` so one index lookup answers "Encounter.subject =
Patient/123" without touching `resource`. Dates are stored as a closed interval of microseconds
since the epoch in UTC (`low`, `high`), so FHIR's date prefixes become integer comparisons and
time zones are resolved once, at write time.

The equality lookups of the index tables end in `pk` (token, reference, uri), so the rows of one
value come out of the b-tree in pk order: a first page sorted by pk reads `_count + 1` index
entries, whatever the number of matches, and keyset paging (`pk > last`) starts where the
previous page ended. Schema version 2 introduced that; `MIGRATIONS` rebuilds a version-1 store's
indexes on open.
"""

from __future__ import annotations

SCHEMA_VERSION = 2

# {pk} / {blob} / {bigint} are filled per dialect.
_TABLES = """
CREATE TABLE IF NOT EXISTS schema_info (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS resource (
    pk {pk},
    type TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    last_updated {bigint} NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0,
    seq {bigint} NOT NULL,
    content {blob},
    UNIQUE (type, id)
);
CREATE INDEX IF NOT EXISTS resource_type_updated ON resource (type, last_updated);
CREATE TABLE IF NOT EXISTS resource_version (
    seq {bigint} PRIMARY KEY,
    pk {bigint} NOT NULL,
    type TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    last_updated {bigint} NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0,
    method TEXT NOT NULL,
    content {blob},
    UNIQUE (type, id, version)
);
CREATE INDEX IF NOT EXISTS resource_version_type_seq ON resource_version (type, seq);
CREATE INDEX IF NOT EXISTS resource_version_updated ON resource_version (last_updated);
CREATE TABLE IF NOT EXISTS idx_string (
    pk {bigint} NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL,
    value_norm TEXT {collate} NOT NULL, value_exact TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_string_lookup ON idx_string (type, param, value_norm);
CREATE INDEX IF NOT EXISTS idx_string_pk ON idx_string (pk);
CREATE TABLE IF NOT EXISTS idx_token (
    pk {bigint} NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL,
    system TEXT, code TEXT, text_norm TEXT {collate}
);
CREATE INDEX IF NOT EXISTS idx_token_lookup ON idx_token (type, param, code, pk, system);
CREATE INDEX IF NOT EXISTS idx_token_pk ON idx_token (pk);
CREATE TABLE IF NOT EXISTS idx_reference (
    pk {bigint} NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL,
    target_type TEXT, target_id TEXT, target_url TEXT
);
CREATE INDEX IF NOT EXISTS idx_reference_lookup ON idx_reference (target_id, target_type, param, type, pk);
CREATE INDEX IF NOT EXISTS idx_reference_url ON idx_reference (type, param, target_url, pk);
CREATE INDEX IF NOT EXISTS idx_reference_pk ON idx_reference (pk);
CREATE TABLE IF NOT EXISTS idx_date (
    pk {bigint} NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL,
    low {bigint} NOT NULL, high {bigint} NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_date_low ON idx_date (type, param, low);
CREATE INDEX IF NOT EXISTS idx_date_high ON idx_date (type, param, high);
CREATE INDEX IF NOT EXISTS idx_date_pk ON idx_date (pk);
CREATE TABLE IF NOT EXISTS idx_number (
    pk {bigint} NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL,
    value DOUBLE PRECISION NOT NULL, system TEXT, code TEXT
);
CREATE INDEX IF NOT EXISTS idx_number_lookup ON idx_number (type, param, value);
CREATE INDEX IF NOT EXISTS idx_number_pk ON idx_number (pk);
CREATE TABLE IF NOT EXISTS idx_uri (
    pk {bigint} NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL,
    uri TEXT {collate} NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_uri_lookup ON idx_uri (type, param, uri, pk);
CREATE INDEX IF NOT EXISTS idx_uri_pk ON idx_uri (pk);
"""

# The outbox: one change event per committed write, inserted in the write's own transaction and
# deleted once published, so a late-committing transaction's event is never skipped by a cursor.
# The inbound message inbox: every message received, raw, with its journey through the pipeline.
# UNIQUE (sender, control_id) makes a re-sent message find its first record (and its ACK).
_INBOX = """
CREATE TABLE IF NOT EXISTS inbox (
    id {pk},
    received_at {bigint} NOT NULL,
    updated_at {bigint} NOT NULL,
    channel TEXT NOT NULL,
    sender TEXT NOT NULL,
    control_id TEXT,
    message_type TEXT NOT NULL,
    status TEXT NOT NULL,
    raw {blob} NOT NULL,
    ack {blob},
    detail TEXT,
    UNIQUE (sender, control_id)
);
CREATE INDEX IF NOT EXISTS inbox_status ON inbox (status, id);
CREATE TABLE IF NOT EXISTS outbox (
    seq {bigint} PRIMARY KEY,
    type TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    method TEXT NOT NULL,
    created_at {bigint} NOT NULL
)
"""

# Subscriptions (gateway/events): one row per notification owed to a subscriber, written in the
# same transaction that removes the change from the outbox, so each (subscription, change) is
# owed exactly once. The row is the delivery log: attempts, last answer, dead letters, resends.
# `subscription_state` numbers each subscription's events (the backport's event numbers).
_EVENTS = """
CREATE TABLE IF NOT EXISTS subscription_delivery (
    id {pk},
    subscription_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    event_number {bigint} NOT NULL,
    seq {bigint} NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    method TEXT NOT NULL,
    lane INTEGER NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at {bigint} NOT NULL,
    updated_at {bigint} NOT NULL,
    next_attempt_at {bigint} NOT NULL DEFAULT 0,
    delivered_at {bigint},
    last_status INTEGER,
    last_error TEXT,
    log TEXT,
    UNIQUE (subscription_id, seq, kind)
);
CREATE INDEX IF NOT EXISTS subscription_delivery_sub ON subscription_delivery (subscription_id, id);
CREATE INDEX IF NOT EXISTS subscription_delivery_status ON subscription_delivery (status, id);
CREATE TABLE IF NOT EXISTS subscription_state (
    subscription_id TEXT PRIMARY KEY,
    events {bigint} NOT NULL DEFAULT 0
)
"""

# Access control (gateway/security): client assertions already used at /auth/token (jti replay,
# one answer for every process), and a partial index so the "hide restricted labels" filter of
# gateway/security/visibility.py is one index probe per statement.
_SECURITY = """
CREATE TABLE IF NOT EXISTS auth_jti (
    jti TEXT PRIMARY KEY,
    expires_at {bigint} NOT NULL
);
CREATE INDEX IF NOT EXISTS auth_jti_expires ON auth_jti (expires_at);
CREATE INDEX IF NOT EXISTS idx_token_security ON idx_token (system, code) WHERE param = '_security'
"""

# Statements that bring a store of version N-1 to version N, keyed by N. Each changed index is
# dropped and made again from the current DDL (same name, so hints such as `INDEXED BY
# idx_reference_lookup` in gateway/events/matching.py keep working). Rebuilding takes time on a
# big store (about a minute per index at a million resources), once, at the first start.
_REBUILT_IN = {2: ("idx_token_lookup", "idx_reference_lookup", "idx_reference_url", "idx_uri_lookup")}


def migrations(dialect: str, from_version: int) -> list[str]:
    """Statements upgrading a store at `from_version` to SCHEMA_VERSION, in order."""
    creates = {s.split(" ON ", 1)[0].split()[-1]: s for s in ddl(dialect) if s.startswith("CREATE INDEX")}
    out: list[str] = []
    for version in range(from_version + 1, SCHEMA_VERSION + 1):
        for name in _REBUILT_IN.get(version, ()):
            out += [f"DROP INDEX IF EXISTS {name}", creates[name]]
        if version == 2 and dialect == "postgres":
            out.append("ANALYZE idx_token")  # fill the new idx_token_values statistics now
    return out


INDEX_TABLES = ("idx_string", "idx_token", "idx_reference", "idx_date", "idx_number", "idx_uri")


def ddl(dialect: str) -> list[str]:
    """The CREATE statements for one dialect ("sqlite" or "postgres")."""
    if dialect == "sqlite":
        types = dict(pk="INTEGER PRIMARY KEY", blob="BLOB", bigint="INTEGER")
        text = _TABLES.format(**types, collate="") + ";" + _INBOX.format(**types) + ";" + _EVENTS.format(**types)
        extra = ["CREATE TABLE IF NOT EXISTS change_seq (n INTEGER NOT NULL)"]
    else:
        types = dict(pk="BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY", blob="BYTEA", bigint="BIGINT")
        text = _TABLES.format(**types, collate='COLLATE "C"') + ";" + _INBOX.format(**types) + ";" + _EVENTS.format(**types)
        extra = [
            "CREATE SEQUENCE IF NOT EXISTS change_seq",
            # type, param and code are far from independent (param 'status' only has a handful of
            # codes): without joint statistics the planner guesses 1,280 rows for 35,000
            # `Encounter status=finished` index entries and counts them by bitmap + sort.
            "CREATE STATISTICS IF NOT EXISTS idx_token_values (mcv) ON type, param, code FROM idx_token",
        ]
    security = [s.strip() for s in _SECURITY.format(**types).split(";") if s.strip()]
    return [s.strip() for s in text.split(";") if s.strip()] + extra + security
