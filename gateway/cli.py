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
    from gateway.security.service import StartupRefused, check_startup

    try:
        auth_line = check_startup(settings)  # no auth is allowed on loopback only
    except StartupRefused as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Active Recovery Gateway: FHIR R4 at http://{settings.host}:{settings.port}/fhir "
               f"(store: {_redact(settings.effective_database_url)})")
    click.echo(auth_line)
    uvicorn.run(
        "gateway.app:app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers if settings.workers > 1 else None,
        log_level=settings.log_level,
        access_log=False,
    )


@main.group()
def inbox() -> None:
    """Inspect and replay inbound messages recorded in the inbox."""


def _run(coro_fn):
    import asyncio

    return asyncio.run(coro_fn())


def _context():
    from gateway.fhir.context import GatewayContext
    from gateway.fhir.router import Router
    from gateway.store import open_store

    settings = load_settings()
    ctx = GatewayContext(settings=settings, store=open_store(settings))
    ctx.router = Router(ctx)
    return ctx


@inbox.command("list")
@click.option("--status", default=None, help="received, stored, failed or rejected")
@click.option("--limit", type=int, default=50)
def inbox_list(status: str | None, limit: int) -> None:
    """List recent inbox entries (newest first)."""
    from gateway.store import inbox as rows

    async def go():
        ctx = _context()
        await ctx.store.open()
        try:
            async with ctx.store.session() as s:
                for e in await rows.listing(s, status, None, limit):
                    errs = "; ".join(x.get("message", "") for x in e.detail.get("errors", []))
                    click.echo(f"{e.id}\t{e.status}\t{e.channel}\t{e.sender}\t{e.control_id}\t{e.message_type}\t{errs}")
        finally:
            await ctx.store.close()

    _run(go)


@inbox.command("replay")
@click.argument("entry_id", required=False, type=int)
@click.option("--failed", is_flag=True, help="Replay every failed message, oldest first")
def inbox_replay(entry_id: int | None, failed: bool) -> None:
    """Re-run recorded messages through the current mappings (after a mapping fix)."""
    if (entry_id is None) == (not failed):
        raise click.UsageError("give one inbox ID or --failed")
    from gateway.pipeline.hl7v2 import Hl7v2Pipeline
    from gateway.startup import load_conformance_resources
    from gateway.store import inbox as rows

    async def go():
        ctx = _context()
        await ctx.store.open()
        try:
            await load_conformance_resources(ctx)
            pipeline = Hl7v2Pipeline(ctx)
            if failed:
                async with ctx.store.session() as s:
                    ids = await rows.ids_with_status(s, ("failed",))
            else:
                ids = [entry_id]
            counts: dict[str, int] = {}
            for i in ids:
                try:
                    status = await pipeline.replay(i)
                except KeyError:
                    raise click.ClickException(f"no inbox entry {i}") from None
                counts[status] = counts.get(status, 0) + 1
                click.echo(f"{i}\t{status}")
            click.echo(f"replayed {len(ids)}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        finally:
            await ctx.store.close()

    _run(go)


@main.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--profile", "profiles", multiple=True, help="Also validate against this profile url (repeatable)")
@click.option("--warnings/--no-warnings", default=True, help="Show warnings and information, not only errors")
def validate_files(files: tuple[str, ...], profiles: tuple[str, ...], warnings: bool) -> None:
    """Check partner samples offline (JSON or XML): structure, declared and given profiles.

    Exits 1 when any file has an error. A Bundle's entries are checked against their own profiles.
    """
    from gateway.conformance.offline import validate_file

    failed = 0
    for name in files:
        report, errors = validate_file(name, list(profiles), show_warnings=warnings)
        click.echo(report)
        failed += bool(errors)
    click.echo(f"{len(files) - failed} valid, {failed} with errors")
    if failed:
        raise SystemExit(1)


@main.group()
def conformance() -> None:
    """Run FHIR TestScript suites against a FHIR R4 server."""


@conformance.command("run")
@click.option("--base", required=True, help="FHIR base URL of the server under test, e.g. http://127.0.0.1:8080/fhir")
@click.option("--suite", "suites", multiple=True,
              help="Suite name (a folder of conformance/suites/) or a TestScript file or folder; default: all suites")
@click.option("--junit", type=click.Path(dir_okay=False), default=None, help="Write a JUnit XML report here")
@click.option("--html", type=click.Path(dir_okay=False), default=None, help="Write an HTML report here")
@click.option("--var", "variables", multiple=True, help="Override a TestScript variable: NAME=VALUE")
@click.option("-v", "--verbose", is_flag=True, help="List every action, not only failures")
def conformance_run(base: str, suites: tuple[str, ...], junit: str | None, html: str | None,
                    variables: tuple[str, ...], verbose: bool) -> None:
    """Run TestScripts; exit 1 when any assert fails."""
    from gateway.conformance.suite import run_suites

    overrides = dict(v.split("=", 1) for v in variables if "=" in v)
    ok = run_suites(base, list(suites), junit=junit, html=html, variables=overrides, verbose=verbose, echo=click.echo)
    if not ok:
        raise SystemExit(1)


@main.command()
@click.argument("kind", type=click.Choice(["council", "community"]))
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--spec", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Column spec for this source's layout (default: mappings/council-cld.json or community-csds.json)")
@click.option("--rejects", type=click.Path(dir_okay=False), default="rejected-rows.csv", show_default=True,
              help="CSV written with every rejected row and its reasons")
@click.option("--database-url", default=None, help=SETTINGS["database_url"])
def ingest(kind: str, files: tuple[str, ...], spec: str | None, rejects: str, database_url: str | None) -> None:
    """Load council (CLD) or community (CSDS) CSV files into the shared record."""
    from pathlib import Path

    from tqdm import tqdm

    from gateway.pipeline.ingest import ingest as run_ingest
    from gateway.pipeline.ingest import write_rejects
    from gateway.startup import load_conformance_resources

    if database_url:
        os.environ["GATEWAY_DATABASE_URL"] = database_url

    async def go() -> int:
        ctx = _context()
        await ctx.store.open()
        failed = 0
        try:
            await load_conformance_resources(ctx)
            reports = []
            for name in files:
                path = Path(name)
                with path.open("rb") as f:
                    total = max(sum(1 for _ in f) - 1, 0)
                with tqdm(total=total, unit="row", desc=path.name, disable=None) as bar:
                    report = await run_ingest(ctx, kind, path, path.name, Path(spec) if spec else None, bar.update)
                reports.append(report)
                for e in report.file_errors:
                    click.echo(f"{path.name}: {e}", err=True)
                for w in report.warnings[:20]:
                    click.echo(f"{path.name}: {w}", err=True)
                click.echo(report.summary())
                failed += len(report.file_errors) > 0
            rejected = [r for r in reports if r.rejected]
            if rejected:
                out = Path(rejects)
                write_rejects(out, rejected)
                click.echo(f"{sum(len(r.rejected) for r in reports)} rejected rows written to {out}")
        finally:
            await ctx.store.close()
        return failed

    raise SystemExit(1 if _run(go) else 0)


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':')[0]}:***@{host}" if ":" in creds else url
    return url


from gateway.demo.command import demo as _demo  # noqa: E402  `gateway demo`: synthetic data, then serve

main.add_command(_demo)


if __name__ == "__main__":
    main()
