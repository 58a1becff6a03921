"""`gateway` command line: serve, and the operator's tools around the store."""

from __future__ import annotations

import logging
import os

import click

from gateway.config import SETTINGS, load_settings


@click.group()
def main() -> None:
    """Active Recovery Gateway: FHIR R4 shared record for hospital, council and community partners."""


@main.command()
@click.option("--host", default=None, help=SETTINGS["host"])
@click.option("--port", type=int, default=None, help=SETTINGS["port"])
@click.option("--data-dir", default=None, help=SETTINGS["data_dir"])
@click.option("--database-url", default=None, help=SETTINGS["database_url"])
@click.option("--redis-url", default=None, help=SETTINGS["redis_url"])
@click.option("--base-url", default=None, help=SETTINGS["base_url"])
@click.option("--mllp-port", type=int, default=None, help=SETTINGS["mllp_port"])
@click.option("--workers", type=int, default=None, help=SETTINGS["workers"])
@click.option("--log-level", default=None, help=SETTINGS["log_level"])
def serve(**flags) -> None:
    """Serve FHIR R4 at /fhir (embedded SQLite store unless --database-url says otherwise)."""
    import uvicorn

    for name, value in flags.items():
        if value is not None:
            os.environ["GATEWAY_" + name.upper()] = str(value)
    settings = load_settings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    click.echo(f"Active Recovery Gateway: FHIR R4 at http://{settings.host}:{settings.port}/fhir "
               f"(store: {_redact(settings.effective_database_url)})")
    uvicorn.run(
        "gateway.app:app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers if settings.workers > 1 else None,
        log_level=settings.log_level,
        access_log=False,
    )


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':')[0]}:***@{host}" if ":" in creds else url
    return url


if __name__ == "__main__":
    main()
