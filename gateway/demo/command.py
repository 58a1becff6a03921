"""The `gateway demo` command: generate and load the synthetic city, then serve it like `gateway serve`."""

from __future__ import annotations

import os
from pathlib import Path

import click

from gateway.config import SETTINGS


@click.command()
@click.option("--people", type=click.IntRange(1, 5000), default=300, show_default=True,
              help="How many invented people to generate")
@click.option("--seed", type=int, default=2025, show_default=True, help="Random seed: same seed, same people and files")
@click.option("--data-dir", default=None, help=SETTINGS["data_dir"] + "; the generated files go in <data-dir>/demo-input")
@click.option("--database-url", default=None, help=SETTINGS["database_url"])
@click.option("--host", default=None, help=SETTINGS["host"])
@click.option("--port", type=int, default=None, help=SETTINGS["port"])
@click.option("--no-serve", is_flag=True, help="Load the data and exit (exit code 1 if any row or message failed)")
@click.pass_context
def demo(click_ctx, people: int, seed: int, data_dir: str | None, database_url: str | None, host: str | None,
         port: int | None, no_serve: bool) -> None:
    """Load a synthetic Active Recovery data set through the real adapters, then serve it.

    Writes ADT messages, a council CLD extract and a community CSDS extract for PEOPLE invented
    people, loads them (HL7 v2 pipeline, `ingest`), and prints the history page of a person whose
    journey crosses the hospital, the council and community therapy. Running it again on the
    same data dir changes nothing.
    """
    import asyncio

    from gateway.config import load_settings

    for name, value in (("data_dir", data_dir), ("database_url", database_url), ("host", host), ("port", port)):
        if value is not None:
            os.environ["GATEWAY_" + name.upper()] = str(value)
    settings = load_settings()
    folder = Path(settings.data_dir) / "demo-input"
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    report = asyncio.run(_load(folder, people, seed))
    site = f"http://{'127.0.0.1' if settings.host in ('0.0.0.0', '::', '') else settings.host}:{settings.port}"
    problems = report.rejected_rows + report.failed_messages
    if problems:
        click.echo(f"WARNING: {report.rejected_rows} rejected rows, {report.failed_messages} messages not accepted", err=True)
    if report.duplicate_ids:
        click.echo(f"{len(report.duplicate_ids)} records listed for identity review (possible duplicates): {site}/patients")
    if report.showcase_id:
        click.echo(f"A journey across {', '.join(report.showcase_sources)}:")
        click.echo(f"{site}/patients/{report.showcase_id}")
    else:
        click.echo("no person crosses all three sources in this data set; try more --people", err=True)
    if no_serve:
        raise SystemExit(1 if problems or not report.showcase_id else 0)
    from gateway.cli import serve

    click_ctx.invoke(serve)


async def _load(folder: Path, people: int, seed: int):
    from gateway.config import load_settings
    from gateway.demo.runner import run
    from gateway.fhir.context import GatewayContext
    from gateway.fhir.router import Router
    from gateway.startup import load_conformance_resources
    from gateway.store import open_store

    settings = load_settings()
    ctx = GatewayContext(settings=settings, store=open_store(settings))
    ctx.router = Router(ctx)
    await ctx.store.open()
    try:
        await load_conformance_resources(ctx)
        return await run(ctx, folder, people, seed, echo=click.echo)
    finally:
        await ctx.store.close()
