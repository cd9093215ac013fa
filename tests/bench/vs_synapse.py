"""Hearth against Synapse on this machine: the same Client-Server workloads, side by side.

    scripts/bench [--runs 3] [--scale 1.0] [--only-setup] [--keep-databases]

Installs ``matrix-synapse`` from PyPI into ``.bench/synapse-venv``, creates one fresh PostgreSQL
database per server on 127.0.0.1:5432 (user ``postgres``; C collation, as Synapse requires),
writes equivalent configs (rate limits off, ``bcrypt_rounds: 4``, presence off, no federation
listener, same connection pool), sets up the same population on each through the API
(``cs_workloads.set_up_population``), then alternates measured runs A B A B A B: each run starts
the server afresh on its database, reads its idle RSS, runs ``cs_workloads.run_workloads`` and
stops it. Prints one table of each figure's median over the runs for both servers and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2
import yaml

from tests.bench.cs_workloads import (
    Client,
    DatabaseCpu,
    Population,
    Scale,
    User,
    new_session,
    run_workloads,
    set_up_population,
)

ROOT = Path(__file__).resolve().parents[2]
BENCH_DIR = ROOT / ".bench"
SYNAPSE_VENV = BENCH_DIR / "synapse-venv"
PG_DSN = "host=127.0.0.1 port=5432 user=postgres"
SHARED_SECRET = "bench-shared-secret"
SERVER_NAME = "bench.test"

# Every rate limit both servers know, far above anything the workloads do.
NO_LIMIT = {"per_second": 1_000_000, "burst_count": 1_000_000}
RATE_LIMITS: dict[str, Any] = {
    "rc_message": NO_LIMIT,
    "rc_registration": NO_LIMIT,
    "rc_registration_token_validity": NO_LIMIT,
    "rc_login": {"address": NO_LIMIT, "account": NO_LIMIT, "failed_attempts": NO_LIMIT},
    "rc_admin_redaction": NO_LIMIT,
    "rc_joins": {"local": NO_LIMIT, "remote": NO_LIMIT},
    "rc_joins_per_room": NO_LIMIT,
    "rc_3pid_validation": NO_LIMIT,
    "rc_invites": {"per_room": NO_LIMIT, "per_user": NO_LIMIT, "per_issuer": NO_LIMIT},
    "rc_third_party_invite": NO_LIMIT,
    "rc_media_create": NO_LIMIT,
    "rc_key_requests": NO_LIMIT,
    "rc_presence": {"per_user": NO_LIMIT},
    "rc_room_creation": NO_LIMIT,
    "rc_reports": NO_LIMIT,
    "rc_delayed_event_mgmt": NO_LIMIT,
}

LOG_CONFIG: dict[str, Any] = {
    "version": 1,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {
        "file": {"class": "logging.FileHandler", "formatter": "plain", "filename": "PLACEHOLDER"}
    },
    "root": {"level": "WARNING", "handlers": ["file"]},
    "disable_existing_loggers": False,
}

# Figures in table order: (key, label, better when higher, target ratio Hearth/Synapse).
FIGURES: list[tuple[str, str, bool, float | None]] = [
    ("send_msgs_per_s", "send: messages/s", True, 5.0),
    ("send_p50_ms", "send: latency p50 (ms)", False, None),
    ("send_p95_ms", "send: latency p95 (ms)", False, None),
    ("server_cpu_ms_per_msg", "send: server CPU ms/message", False, 1 / 5),
    ("db_cpu_ms_per_msg", "send: PostgreSQL CPU ms/message", False, None),
    ("live_p50_ms", "live: send→long-poll p50 (ms)", False, 1 / 3),
    ("live_p95_ms", "live: send→long-poll p95 (ms)", False, None),
    ("initial_sync_10_rooms_ms", "initial sync, 10 rooms (ms)", False, None),
    ("initial_sync_500_rooms_ms", "initial sync, 500 rooms (ms)", False, 1 / 3),
    ("big_room_send_ms", "big room: send (ms)", False, None),
    ("big_room_delivery_p50_ms", "big room: delivery p50 (ms)", False, None),
    ("big_room_delivery_max_ms", "big room: delivery max (ms)", False, None),
    ("rss_idle_mib", "RSS idle (MiB)", False, 1 / 2),
    ("rss_peak_mib", "RSS peak under send (MiB)", False, 1 / 2),
]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def ensure_synapse_venv() -> Path:
    python = SYNAPSE_VENV / "bin" / "python"
    if not python.exists():
        log(f"creating {SYNAPSE_VENV}")
        subprocess.run([sys.executable, "-m", "venv", str(SYNAPSE_VENV)], check=True)
    probe = subprocess.run(
        [str(python), "-c", "import synapse, psycopg2; print(synapse.__version__)"],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        log("installing matrix-synapse[postgres] from PyPI")
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "matrix-synapse[postgres]"],
            check=True,
        )
    return python


def synapse_version(python: Path) -> str:
    version = subprocess.run(
        [str(python), "-c", "import synapse; print(synapse.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # .bench/ sits inside this checkout, so Synapse appends *our* branch and commit.
    return version.split(" (b=")[0]


def recreate_database(name: str) -> None:
    connection = psycopg2.connect(PG_DSN + " dbname=postgres")
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
            cursor.execute(
                f"CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8' "
                "LC_COLLATE 'C' LC_CTYPE 'C'"
            )
    finally:
        connection.close()


def drop_database(name: str) -> None:
    connection = psycopg2.connect(PG_DSN + " dbname=postgres")
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
    finally:
        connection.close()


def postgres_version() -> str:
    connection = psycopg2.connect(PG_DSN + " dbname=postgres")
    try:
        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            return str(cursor.fetchone()[0])
    finally:
        connection.close()


@dataclass
class Server:
    name: str
    command: list[str]
    port: int
    db_name: str
    log_path: Path
    env: dict[str, str] | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> int:
        output = open(self.log_path.with_suffix(".out"), "ab")
        self.process = subprocess.Popen(
            self.command,
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=self.log_path.parent,
            env=self.env,
        )
        output.close()
        deadline = time.monotonic() + 180
        import http.client

        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}")
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                connection.request("GET", "/_matrix/client/versions")
                if connection.getresponse().status == 200:
                    connection.close()
                    return self.process.pid
                connection.close()
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not answer within 180s")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


def database_section(db_name: str) -> dict[str, Any]:
    return {
        "name": "psycopg2",
        "args": {
            "user": "postgres",
            "host": "127.0.0.1",
            "port": 5432,
            "database": db_name,
            "cp_min": 5,
            "cp_max": 10,
        },
    }


def common_config(directory: Path, port: int, db_name: str) -> dict[str, Any]:
    log_config = directory / "log.yaml"
    logging = dict(LOG_CONFIG)
    logging["handlers"] = {"file": {**LOG_CONFIG["handlers"]["file"]}}
    logging["handlers"]["file"]["filename"] = str(directory / "server.log")
    log_config.write_text(yaml.safe_dump(logging))
    return {
        "server_name": SERVER_NAME,
        "public_baseurl": f"http://127.0.0.1:{port}/",
        "listeners": [
            {
                "port": port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": False,
                "x_forwarded": False,
                "resources": [{"names": ["client"], "compress": False}],
            }
        ],
        "database": database_section(db_name),
        "log_config": str(log_config),
        "signing_key_path": str(directory / "signing.key"),
        "registration_shared_secret": SHARED_SECRET,
        "bcrypt_rounds": 4,
        "presence": {"enabled": False},
        # Synapse's default; Hearth's is 12. Version 12 room IDs are the create event's hash,
        # so one user's concurrent createRoom calls within a millisecond would collide.
        "default_room_version": "10",
        "trusted_key_servers": [],
        "report_stats": False,
        "enable_metrics": False,
        **RATE_LIMITS,
    }


def make_hearth(directory: Path, source: Path | None) -> Server:
    from homeserver.config.generate import write_signing_key

    directory.mkdir(parents=True, exist_ok=True)
    port, db_name = free_port(), "bench_hearth"
    config = common_config(directory, port, db_name)
    key_path = Path(config["signing_key_path"])
    if not key_path.exists():
        write_signing_key(key_path)
    config_path = directory / "homeserver.yaml"
    config_path.write_text(yaml.safe_dump(config))
    command = [str(ROOT / ".venv" / "bin" / "python"), "-m", "homeserver", "run"]
    command += ["-c", str(config_path)]
    env = None
    if source is not None:
        # Another checkout's code (e.g. a commit, in a git worktree) ahead of the editable
        # install of this one; its dependencies come from this .venv.
        env = {**os.environ, "PYTHONPATH": str(source.resolve())}
    return Server("Hearth", command, port, db_name, directory / "server.log", env)


def make_synapse(directory: Path, python: Path) -> Server:
    directory.mkdir(parents=True, exist_ok=True)
    port, db_name = free_port(), "bench_synapse"
    config = common_config(directory, port, db_name)
    config.update(
        {
            "pid_file": str(directory / "homeserver.pid"),
            "media_store_path": str(directory / "media"),
            "macaroon_secret_key": secrets.token_hex(32),
            "form_secret": secrets.token_hex(32),
            "suppress_key_server_warning": True,
        }
    )
    config_path = directory / "homeserver.yaml"
    config_path.write_text(yaml.safe_dump(config))
    base = [str(python), "-m", "synapse.app.homeserver", "-c", str(config_path)]
    subprocess.run([*base, "--generate-keys"], check=True, capture_output=True)
    return Server("Synapse", base, port, db_name, directory / "server.log")


def population_path(server: Server) -> Path:
    return server.log_path.parent / "population.json"


def database_exists(name: str) -> bool:
    connection = psycopg2.connect(PG_DSN + " dbname=postgres")
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            return cursor.fetchone() is not None
    finally:
        connection.close()


def load_population(server: Server, scale: Scale) -> Population | None:
    """The population a previous ``--keep-databases`` run left, if it was set up at this scale."""
    path = population_path(server)
    if not path.exists() or not database_exists(server.db_name):
        return None
    saved = json.loads(path.read_text())
    if saved.get("scale") != dataclasses.asdict(scale):
        return None
    data = saved["population"]
    data["chat_users"] = [User(**u) for u in data["chat_users"]]
    data["big_room_users"] = [User(**u) for u in data["big_room_users"]]
    data["heavy_user"] = User(**data["heavy_user"])
    return Population(**data)


async def set_up(server: Server, scale: Scale, reuse: bool) -> Population:
    if reuse:
        reused = load_population(server, scale)
        if reused is not None:
            log(f"{server.name}: reusing the population in {server.db_name}")
            return reused
    population_path(server).unlink(missing_ok=True)
    recreate_database(server.db_name)
    server.start()
    try:
        async with new_session() as session:
            log(f"{server.name}: setting up users and rooms")
            population = await set_up_population(Client(server.url, session), SHARED_SECRET, scale)
    finally:
        server.stop()
    saved = {"scale": dataclasses.asdict(scale), "population": dataclasses.asdict(population)}
    population_path(server).write_text(json.dumps(saved))
    took = ", ".join(f"{name} {sec:.1f}s" for name, sec in population.setup_seconds.items())
    log(f"{server.name}: setup took {took}")
    return population


async def measure(
    server: Server, population: Population, scale: Scale, profile: Path | None
) -> dict[str, float]:
    pid = server.start()
    profiler = None
    if profile is not None:
        profile.mkdir(parents=True, exist_ok=True)
        output = profile / f"{server.name.lower()}-{time.strftime('%H%M%S')}.txt"
        profiler = subprocess.Popen(
            [
                str(ROOT / ".venv" / "bin" / "py-spy"),
                "record",
                "--pid",
                str(pid),
                "--rate",
                "200",
                "--format",
                "raw",
                "--output",
                str(output),
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    try:
        # Let start-up work (cache warming, background updates) settle before idle RSS.
        await asyncio.sleep(3)
        async with new_session() as session:
            return await run_workloads(
                Client(server.url, session),
                population,
                scale,
                pid,
                DatabaseCpu(PG_DSN + " dbname=postgres", server.db_name),
            )
    finally:
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            profiler.wait(60)
        server.stop()


def format_number(value: float) -> str:
    if value != value:  # NaN
        return "n/a"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def table(results: dict[str, list[dict[str, float]]]) -> str:
    lines = [
        "| figure | Hearth | Synapse | Hearth/Synapse | target | met |",
        "| --- | ---: | ---: | ---: | ---: | :---: |",
    ]
    for key, label, higher_better, target in FIGURES:
        hearth = [r[key] for r in results.get("Hearth", []) if key in r]
        synapse = [r[key] for r in results.get("Synapse", []) if key in r]
        if not hearth and not synapse:
            continue
        h = statistics.median(hearth) if hearth else float("nan")
        s = statistics.median(synapse) if synapse else float("nan")
        ratio = h / s if s else float("nan")
        target_text, met = "", ""
        if target is not None:
            if higher_better:
                target_text, met = f"≥ {target:g}", "yes" if ratio >= target else "NO"
            else:
                target_text = f"≤ 1/{round(1 / target)}"
                met = "yes" if ratio <= target else "NO"
        lines.append(
            f"| {label} | {format_number(h)} | {format_number(s)} | {ratio:.2f} "
            f"| {target_text} | {met} |"
        )
    return "\n".join(lines)


def machine() -> str:
    with open("/proc/meminfo") as f:
        total_kib = int(f.readline().split()[1])
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (
        f"{os.cpu_count()} CPUs ({cpu}), {total_kib / 1024 / 1024:.1f} GiB RAM, "
        f"PostgreSQL {postgres_version()}, Python {platform.python_version()}"
    )


async def main_async(args: argparse.Namespace) -> int:
    scale = Scale().scaled(args.scale)
    python = ensure_synapse_venv()
    work = BENCH_DIR / "run"
    servers = []
    if args.only in (None, "hearth"):
        servers.append(make_hearth(work / "hearth", args.hearth_source))
    if args.only in (None, "synapse"):
        servers.append(make_synapse(work / "synapse", python))
    populations = {}
    for server in servers:
        populations[server.name] = await set_up(server, scale, args.reuse_setup)
    if args.only_setup:
        return 0
    results: dict[str, list[dict[str, float]]] = {s.name: [] for s in servers}
    for run in range(args.runs):
        for server in servers:
            log(f"run {run + 1}/{args.runs}: {server.name}")
            profile = args.py_spy if server.name == "Hearth" else None
            figures = await measure(server, populations[server.name], scale, profile)
            log(f"{server.name}: " + ", ".join(f"{k}={v:.2f}" for k, v in figures.items()))
            results[server.name].append(figures)
    print()
    print(
        f"Hearth {hearth_version()} ({hearth_revision(args.hearth_source or ROOT)}) "
        f"vs Synapse {synapse_version(python)}, "
        f"median of {args.runs} runs each (alternating), scale {args.scale:g}"
    )
    print(f"Machine: {machine()}")
    print()
    print(table(results))
    if not args.keep_databases:
        for server in servers:
            drop_database(server.db_name)
            population_path(server).unlink(missing_ok=True)
    return 0


def hearth_revision(source: Path) -> str:
    """The commit Hearth ran from, marked "+changes" when the checkout has uncommitted ones."""
    git = ["git", "-C", str(source)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        return "unknown revision"
    dirty = subprocess.run([*git, "diff", "--quiet", "HEAD", "--", "."], capture_output=True)
    return head.stdout.strip() + (" +changes" if dirty.returncode else "")


def hearth_version() -> str:
    from homeserver import __version__

    return str(__version__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="measured runs per server")
    parser.add_argument("--scale", type=float, default=1.0, help="workload size factor")
    parser.add_argument("--only-setup", action="store_true", help="set up, do not measure")
    parser.add_argument(
        "--keep-databases", action="store_true", help="keep them (and the population) afterwards"
    )
    parser.add_argument(
        "--reuse-setup", action="store_true", help="reuse a population kept by --keep-databases"
    )
    parser.add_argument("--only", choices=["hearth", "synapse"], help="measure one server only")
    parser.add_argument(
        "--hearth-source",
        type=Path,
        metavar="DIR",
        help="run Hearth from this checkout (e.g. a git worktree of a commit) instead of this one",
    )
    parser.add_argument(
        "--py-spy", type=Path, metavar="DIR", help="profile Hearth's runs with py-spy into DIR"
    )
    sys.exit(asyncio.run(main_async(parser.parse_args())))


if __name__ == "__main__":
    main()
