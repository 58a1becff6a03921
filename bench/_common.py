"""Shared helpers for the HTTP benchmarks: start/stop a pinned uvicorn server, drive it with wrk.

Not a benchmark itself. Everything talks to 127.0.0.1 only and every load run is bounded by
wrk's own `-d` duration.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
# Server and wrk each pinned to a core by default; set both to "" to let them share the machine.
SERVER_CPU = os.environ.get("BENCH_SERVER_CPU", "0")
CLIENT_CPU = os.environ.get("BENCH_CLIENT_CPU", "1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def have(mod: str) -> bool:
    try:
        __import__(mod)
        return True
    except ImportError:
        return False


def uvicorn_impl() -> tuple[str, str]:
    """The loop/http implementation both servers use: uvloop/httptools only when both are there."""
    loop = "uvloop" if have("uvloop") else "asyncio"
    http = "httptools" if have("httptools") else "h11"
    return loop, http


def taskset(cpu: str | None) -> list[str]:
    if not cpu or not shutil.which("taskset"):
        return []
    return ["taskset", "-c", cpu]


class Server:
    """A server subprocess pinned to SERVER_CPU; `with Server(...) as s:` waits for `ready_path`."""

    def __init__(self, args: list[str], port: int, ready_path: str, env: dict | None = None,
                 cpu: str | None = SERVER_CPU, timeout: float = 60.0, name: str = "server"):
        self.cmd = taskset(cpu) + args
        self.port = port
        self.ready_path = ready_path
        self.env = {**os.environ, **(env or {})}
        self.timeout = timeout
        self.log = tempfile.NamedTemporaryFile(prefix=f"bench-{name}-", suffix=".log", delete=False)
        self.proc: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "Server":
        self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT,
                                     start_new_session=True)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early; log in {self.log.name}:\n" + Path(self.log.name).read_text()[-3000:])
            try:
                with urllib.request.urlopen(self.base + self.ready_path, timeout=2) as r:
                    if r.status < 500:
                        return self
            except Exception:
                time.sleep(0.2)
        self.__exit__()
        raise RuntimeError(f"server not ready after {self.timeout}s; log in {self.log.name}")

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            # only the process group we started ourselves
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def uvicorn_server(app: str, port: int, env: dict | None = None, factory: bool = False, app_dir: str | None = None,
                   name: str = "uvicorn", ready_path: str = "/") -> Server:
    loop, http = uvicorn_impl()
    args = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            "--no-access-log", "--log-level", "warning", "--loop", loop, "--http", http]
    if factory:
        args.append("--factory")
    if app_dir:
        args += ["--app-dir", app_dir]
    return Server(args, port, ready_path, env=env, name=name)


def gateway_serve(port: int, database_url: str, env: dict | None = None) -> Server:
    """`gateway serve` exactly as an operator runs it (uvicorn, one worker, no access log)."""
    gw = shutil.which("gateway") or str(Path(sys.executable).with_name("gateway"))
    args = [gw, "serve", "--port", str(port), "--database-url", database_url, "--log-level", "warning"]
    return Server(args, port, "/fhir/metadata", env=env, timeout=120, name="gateway")


def _lua_str(s: str) -> str:
    eq = "=" * 4
    assert f"]{eq}]" not in s
    return f"[{eq}[{s}]{eq}]"


def wrk_script(requests: list[tuple[str, str, str | None]], headers: dict[str, str] | None = None) -> str:
    """Lua that cycles through (method, path, body) and prints one JSON line of figures at the end."""
    items = ",\n".join(
        "{" + f"{_lua_str(m)}, {_lua_str(p)}, " + (_lua_str(b) if b is not None else "nil") + "}"
        for m, p, b in requests
    )
    hdrs = ", ".join(f"[ {_lua_str(k)} ] = {_lua_str(v)}" for k, v in (headers or {}).items())
    return f"""
local reqs = {{
{items}
}}
local hdrs = {{ {hdrs} }}
local n = #reqs
local i = 0
init = function(args)
  i = math.random(0, n - 1)
end
request = function()
  i = i + 1
  local r = reqs[(i % n) + 1]
  return wrk.format(r[1], r[2], hdrs, r[3])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {{"requests":%d,"duration_us":%d,"status_err":%d,"connect_err":%d,"read_err":%d,"write_err":%d,"timeout":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p95_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}}\\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(95), latency:percentile(99),
    latency.max, latency.mean))
end
"""


def wrk(base: str, requests: list[tuple[str, str, str | None]], connections: int, duration: float,
        headers: dict[str, str] | None = None, threads: int = 1) -> dict:
    """Run wrk pinned to CLIENT_CPU; returns rps and latency percentiles in ms."""
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get update && apt-get install -y wrk")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(wrk_script(requests, headers))
        script = f.name
    try:
        cmd = taskset(CLIENT_CPU) + ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, int(duration))}s",
                                     "--timeout", "10s", "-s", script, base]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    finally:
        os.unlink(script)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed:\n{out.stdout}\n{out.stderr}")
    d = json.loads(line[len("WRKJSON "):])
    secs = d["duration_us"] / 1e6
    return {
        "rps": d["requests"] / secs if secs else 0.0,
        "requests": d["requests"],
        "errors": d["status_err"] + d["connect_err"] + d["read_err"] + d["write_err"] + d["timeout"],
        "status_err": d["status_err"],
        "p50": d["p50_us"] / 1000, "p90": d["p90_us"] / 1000, "p95": d["p95_us"] / 1000,
        "p99": d["p99_us"] / 1000, "max": d["max_us"] / 1000, "mean": d["mean_us"] / 1000,
    }


def percentiles(samples_s: list[float]) -> dict:
    """p50/p95 in ms of a list of durations in seconds."""
    xs = sorted(samples_s)
    def pct(p: float) -> float:
        return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] * 1000
    return {"p50": pct(50), "p95": pct(95), "p99": pct(99), "mean": statistics.fmean(xs) * 1000, "n": len(xs)}


def table(headers: list[str], rows: list[list]) -> str:
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(c) -> str:
    if isinstance(c, float):
        if abs(c) >= 100:
            return f"{c:,.0f}"
        return f"{c:.2f}"
    return str(c)


def machine_notes() -> str:
    loop, http = uvicorn_impl()
    cpu = ""
    try:
        for ln in Path("/proc/cpuinfo").read_text().splitlines():
            if ln.startswith("model name"):
                cpu = ln.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"python {sys.version.split()[0]}, {os.cpu_count()} cores ({cpu}), uvicorn loop={loop} http={http}, "
            + (f"server pinned to cpu {SERVER_CPU}, client to cpu {CLIENT_CPU}" if SERVER_CPU or CLIENT_CPU
               else "server and client not pinned (sharing both cores)"))


def other_cpu_users(interval: float = 1.0, threshold: float = 0.2, exclude: set[int] | None = None) -> list[str]:
    """Processes (not ours) that used more than `threshold` of a core over `interval` seconds.

    Other people's jobs on this 2-core box skew every figure; the benchmarks print this beside them.
    """
    def ticks() -> dict[int, tuple[int, str]]:
        out = {}
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                stat = (d / "stat").read_text()
                fields = stat[stat.rindex(")") + 2:].split()
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
                out[int(d.name)] = (int(fields[11]) + int(fields[12]), cmd[:90])
            except (OSError, ValueError, IndexError):
                continue
        return out

    mine = {os.getpid(), *(exclude or set())}
    hz = os.sysconf("SC_CLK_TCK")
    a = ticks()
    time.sleep(interval)
    b = ticks()
    busy = []
    for pid, (t1, cmd) in b.items():
        if pid in mine or pid not in a:
            continue
        share = (t1 - a[pid][0]) / hz / interval
        if share > threshold:
            busy.append(f"{share:.0%} pid {pid}: {cmd}")
    return busy


def note_contention(label: str, exclude: set[int] | None = None) -> list[str]:
    busy = other_cpu_users(exclude=exclude)
    if busy:
        print(f"  !! other CPU users during {label}: " + "; ".join(busy), flush=True)
    return busy


async def drop_pg_schemas(urls: list[str]) -> None:
    """Drop the `?schema=` of each PostgreSQL URL: a bench starts from an empty store (a re-run on
    a kept schema would measure duplicates answered from the inbox) and leaves none behind."""
    from gateway.store.postgres import drop_schema

    for url in urls:
        if url.startswith("postgres"):
            await drop_schema(url)
