"""Storage: `open_store(settings)` picks the back end from the database URL."""

from __future__ import annotations

from gateway.config import Settings


def open_store(settings: Settings):
    url = settings.effective_database_url
    if url.startswith("sqlite:///"):
        from gateway.store.sqlite import SqliteStore

        return SqliteStore(url[len("sqlite:///") :], settings.tz, settings.sqlite_synchronous)
    if url.startswith(("postgresql://", "postgres://", "postgresql+asyncpg://")):
        from gateway.store.postgres import PostgresStore

        return PostgresStore(url, settings.tz, settings.database_pool_size)
    raise ValueError(f"unsupported database URL {url!r}: use sqlite:///path or postgresql://...")
