"""Client-Server API workloads that drive any homeserver over HTTP, for the side-by-side benchmark.

The runner (``tests/bench/vs_synapse.py``) starts the servers and calls these. To drive a server
that is already running (a Hearth or a Synapse with ``registration_shared_secret`` set and rate
limits off)::

    .venv/bin/python -m tests.bench.cs_workloads --url http://127.0.0.1:8008 \\
        --shared-secret SECRET [--pid PID] [--db-name NAME] [--scale 0.1]

``Population`` is set up once per server (users, the 10 chat rooms, the user in 500 rooms, the
2,000-member room); ``run_workloads`` is one measured run against it. CPU figures read the server's
``/proc/<pid>/stat`` and those of the PostgreSQL backends serving its database (found through
``pg_stat_activity``); memory reads ``/proc/<pid>/status``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import quote

import aiohttp

CLIENT = "/_matrix/client/v3"
CLOCK_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
PASSWORD = "bench-password"


@dataclass(frozen=True)
class Scale:
    """The workload sizes; ``Scale()`` is the issue's, smaller ones are for trying the runner."""

    chat_users: int = 20
    chat_rooms: int = 10
    messages: int = 2000
    senders: int = 8
    live_samples: int = 100
    heavy_rooms: int = 500
    heavy_messages_per_room: int = 20
    big_room_members: int = 2000
    big_room_watchers: int = 50
    big_room_sends: int = 5
    initial_sync_repeats: int = 3

    def scaled(self, factor: float) -> Scale:
        def s(n: int, low: int) -> int:
            return max(low, round(n * factor))

        return Scale(
            chat_users=s(self.chat_users, 4),
            chat_rooms=s(self.chat_rooms, 2),
            messages=s(self.messages, 40),
            senders=self.senders,
            live_samples=s(self.live_samples, 10),
            heavy_rooms=s(self.heavy_rooms, 5),
            heavy_messages_per_room=s(self.heavy_messages_per_room, 2),
            big_room_members=s(self.big_room_members, 20),
            big_room_watchers=s(self.big_room_watchers, 5),
            big_room_sends=self.big_room_sends,
            initial_sync_repeats=self.initial_sync_repeats,
        )


class BenchError(Exception):
    pass


@dataclass
class User:
    user_id: str
    access_token: str
    localpart: str


class Client:
    """A thin Client-Server API client on one aiohttp session."""

    def __init__(self, base_url: str, session: aiohttp.ClientSession) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = session

    async def request(
        self,
        method: str,
        path: str,
        *,
        user: User | None = None,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        timeout: float = 120.0,
    ) -> Any:
        headers = {"Authorization": f"Bearer {user.access_token}"} if user else {}
        data = json.dumps(body).encode() if body is not None else None
        if data is not None:
            headers["Content-Type"] = "application/json"
        async with self.session.request(
            method,
            self.base_url + path,
            data=data,
            headers=headers,
            params=params,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            payload = await response.read()
            if response.status != 200:
                raise BenchError(f"{method} {path}: {response.status} {payload[:300]!r}")
            return json.loads(payload)

    async def register(self, shared_secret: str, localpart: str) -> User:
        path = "/_synapse/admin/v1/register"
        nonce = (await self.request("GET", path))["nonce"]
        mac = hmac.new(shared_secret.encode(), digestmod=hashlib.sha1)
        mac.update(f"{nonce}\0{localpart}\0{PASSWORD}\0notadmin".encode())
        body = {
            "nonce": nonce,
            "username": localpart,
            "password": PASSWORD,
            "admin": False,
            "mac": mac.hexdigest(),
        }
        data = await self.request("POST", path, body=body)
        return User(data["user_id"], data["access_token"], localpart)

    async def login(self, user: User) -> User:
        """A new device for ``user``: a sync on it misses any per-device response cache."""
        body = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user.localpart},
            "password": PASSWORD,
        }
        data = await self.request("POST", f"{CLIENT}/login", body=body)
        return User(data["user_id"], data["access_token"], user.localpart)

    async def create_room(self, user: User, preset: str = "public_chat") -> str:
        data = await self.request(
            "POST", f"{CLIENT}/createRoom", user=user, body={"preset": preset}
        )
        room_id: str = data["room_id"]
        return room_id

    async def join(self, user: User, room_id: str) -> None:
        await self.request("POST", f"{CLIENT}/join/{quote(room_id, safe='')}", user=user, body={})

    async def send(self, user: User, room_id: str, body: str) -> str:
        path = f"{CLIENT}/rooms/{quote(room_id, safe='')}/send/m.room.message/{uuid.uuid4().hex}"
        data = await self.request("PUT", path, user=user, body={"msgtype": "m.text", "body": body})
        event_id: str = data["event_id"]
        return event_id

    async def sync(
        self,
        user: User,
        since: str | None = None,
        timeout_ms: int = 0,
        filter_json: dict[str, Any] | None = None,
    ) -> Any:
        params = {"timeout": str(timeout_ms)}
        if since is not None:
            params["since"] = since
        if filter_json is not None:
            params["filter"] = json.dumps(filter_json, separators=(",", ":"))
        return await self.request(
            "GET", f"{CLIENT}/sync", user=user, params=params, timeout=timeout_ms / 1000 + 120
        )


# --- process figures -----------------------------------------------------------------------


def cpu_ms(pid: int) -> float:
    """User + system CPU time of a process (all its threads), in milliseconds."""
    with open(f"/proc/{pid}/stat") as f:
        # The command name may hold spaces; the fields after its closing parenthesis are fixed.
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / CLOCK_TICKS_PER_SECOND


def rss_mib(pid: int, key: str = "VmRSS") -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise BenchError(f"no {key} for pid {pid}")


class DatabaseCpu:
    """CPU of the PostgreSQL backends serving one database (needs a local server)."""

    def __init__(self, dsn: str | None, db_name: str | None) -> None:
        self.dsn = dsn
        self.db_name = db_name

    def snapshot(self) -> dict[int, float]:
        if not self.dsn or not self.db_name:
            return {}
        import psycopg2

        connection = psycopg2.connect(self.dsn)
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = %s", (self.db_name,)
                )
                pids = [row[0] for row in cursor.fetchall()]
        finally:
            connection.close()
        result = {}
        for pid in pids:
            try:
                result[pid] = cpu_ms(pid)
            except OSError:
                pass  # gone, or PostgreSQL is not on this machine
        return result

    @staticmethod
    def spent(before: dict[int, float], after: dict[int, float]) -> float:
        return sum(ms - before.get(pid, 0.0) for pid, ms in after.items())


# --- helpers -------------------------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


async def bounded(concurrency: int, jobs: Iterable[Callable[[], Awaitable[Any]]]) -> list[Any]:
    """Run the jobs with at most ``concurrency`` in flight; their results in order."""
    job_list = list(jobs)
    results: list[Any] = [None] * len(job_list)
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < len(job_list):
            index = next_index
            next_index += 1
            results[index] = await job_list[index]()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results


def timeline_bodies(sync_body: Any, room_id: str) -> set[str]:
    # Matched by body, not event ID: the sync may answer before the send's response arrives.
    room = sync_body.get("rooms", {}).get("join", {}).get(room_id)
    if not room:
        return set()
    return {
        str(event.get("content", {}).get("body"))
        for event in room.get("timeline", {}).get("events", [])
    }


# Sampled watchers only need a since token and the new timeline events, not 2,000 members.
LIGHT_FILTER: dict[str, Any] = {
    "room": {
        "state": {"lazy_load_members": True},
        "timeline": {"limit": 1, "lazy_load_members": True},
        "ephemeral": {"types": []},
        "account_data": {"types": []},
    },
    "presence": {"types": []},
    "account_data": {"types": []},
}


# --- the population (set up once per server) ----------------------------------------------


@dataclass
class Population:
    chat_users: list[User] = field(default_factory=list)
    chat_rooms: list[str] = field(default_factory=list)
    heavy_user: User | None = None
    big_room: str = ""
    big_room_users: list[User] = field(default_factory=list)
    setup_seconds: dict[str, float] = field(default_factory=dict)


async def set_up_population(client: Client, shared_secret: str, scale: Scale) -> Population:
    population = Population()
    timer = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal timer
        now = time.perf_counter()
        population.setup_seconds[name] = now - timer
        timer = now

    conc = scale.senders
    population.chat_users = await bounded(
        conc,
        (partial(client.register, shared_secret, f"chat{i}") for i in range(scale.chat_users)),
    )
    population.heavy_user = await client.register(shared_secret, "heavy")
    population.big_room_users = await bounded(
        conc,
        (partial(client.register, shared_secret, f"big{i}") for i in range(scale.big_room_members)),
    )
    lap("register")

    owner = population.chat_users[0]
    population.chat_rooms = [await client.create_room(owner) for _ in range(scale.chat_rooms)]
    await bounded(
        conc,
        (
            partial(client.join, u, r)
            for u in population.chat_users[1:]
            for r in population.chat_rooms
        ),
    )
    lap("chat rooms")

    heavy = population.heavy_user
    heavy_rooms = await bounded(
        conc,
        (partial(client.create_room, heavy, "private_chat") for _ in range(scale.heavy_rooms)),
    )
    await bounded(
        conc,
        (
            partial(client.send, heavy, r, f"history {n}")
            for n in range(scale.heavy_messages_per_room)
            for r in heavy_rooms
        ),
    )
    lap("heavy user's rooms")

    big_owner = population.big_room_users[0]
    population.big_room = await client.create_room(big_owner)
    await bounded(
        conc,
        (partial(client.join, u, population.big_room) for u in population.big_room_users[1:]),
    )
    lap("big room")
    return population


# --- one measured run ----------------------------------------------------------------------


async def run_send(
    client: Client,
    population: Population,
    scale: Scale,
    pid: int | None,
    database: DatabaseCpu,
) -> dict[str, float]:
    users, rooms = population.chat_users, population.chat_rooms
    # A short warm-up so the figures are not about first-request costs.
    await bounded(
        scale.senders,
        (
            partial(client.send, users[i % len(users)], rooms[i % len(rooms)], "warm-up")
            for i in range(scale.senders * 5)
        ),
    )
    latencies: list[float] = []
    peak_rss = rss_mib(pid) if pid else float("nan")
    sampling = True

    async def sample_rss() -> None:
        nonlocal peak_rss
        while sampling and pid:
            peak_rss = max(peak_rss, rss_mib(pid))
            await asyncio.sleep(0.05)

    async def one(i: int) -> None:
        start = time.perf_counter()
        await client.send(users[i % len(users)], rooms[i % len(rooms)], f"message {i}")
        latencies.append((time.perf_counter() - start) * 1000)

    sampler = asyncio.ensure_future(sample_rss())
    db_before = database.snapshot()
    cpu_before = cpu_ms(pid) if pid else 0.0
    start = time.perf_counter()
    await bounded(scale.senders, (partial(one, i) for i in range(scale.messages)))
    elapsed = time.perf_counter() - start
    cpu_after = cpu_ms(pid) if pid else float("nan")
    db_after = database.snapshot()
    sampling = False
    await sampler
    result = {
        "send_msgs_per_s": scale.messages / elapsed,
        "send_p50_ms": percentile(latencies, 0.5),
        "send_p95_ms": percentile(latencies, 0.95),
        "server_cpu_ms_per_msg": (cpu_after - cpu_before) / scale.messages,
        "rss_peak_mib": peak_rss,
    }
    if db_before or db_after:
        result["db_cpu_ms_per_msg"] = DatabaseCpu.spent(db_before, db_after) / scale.messages
    return result


async def run_live(client: Client, population: Population, scale: Scale) -> dict[str, float]:
    sender, watcher = population.chat_users[0], population.chat_users[1]
    room = population.chat_rooms[0]
    since = (await client.sync(watcher, filter_json=LIGHT_FILTER))["next_batch"]
    latencies: list[float] = []
    for i in range(scale.live_samples):
        marker = f"live {i} {uuid.uuid4().hex}"
        watching = asyncio.ensure_future(wait_for_body(client, watcher, since, room, marker))
        # Let the long-poll reach the server and park before the send starts the clock.
        await asyncio.sleep(0.05)
        start = time.perf_counter()
        await client.send(sender, room, marker)
        since = await watching
        latencies.append((time.perf_counter() - start) * 1000)
    return {"live_p50_ms": percentile(latencies, 0.5), "live_p95_ms": percentile(latencies, 0.95)}


async def wait_for_body(client: Client, watcher: User, since: str, room: str, marker: str) -> str:
    """Long-poll until a timeline event with body ``marker`` arrives; the next since token."""
    while True:
        body = await client.sync(watcher, since, 30000, LIGHT_FILTER)
        since = body["next_batch"]
        if marker in timeline_bodies(body, room):
            return since


async def time_initial_sync(client: Client, user: User, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        device = await client.login(user)
        start = time.perf_counter()
        await client.sync(device)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


async def run_big_room(client: Client, population: Population, scale: Scale) -> dict[str, float]:
    room = population.big_room
    sender = population.big_room_users[0]
    watchers = population.big_room_users[1 : 1 + scale.big_room_watchers]
    tokens: dict[str, str] = {}
    for watcher in watchers:
        tokens[watcher.user_id] = (await client.sync(watcher, filter_json=LIGHT_FILTER))[
            "next_batch"
        ]
    send_ms: list[float] = []
    delivered_p50: list[float] = []
    delivered_max: list[float] = []

    async def watch(watcher: User, marker: str, arrived: list[float]) -> None:
        since = tokens[watcher.user_id]
        tokens[watcher.user_id] = await wait_for_body(client, watcher, since, room, marker)
        arrived.append(time.perf_counter())

    for i in range(scale.big_room_sends):
        marker = f"to everyone {i} {uuid.uuid4().hex}"
        arrived: list[float] = []
        watching = [asyncio.ensure_future(watch(w, marker, arrived)) for w in watchers]
        await asyncio.sleep(0.3)
        start = time.perf_counter()
        await client.send(sender, room, marker)
        send_ms.append((time.perf_counter() - start) * 1000)
        await asyncio.gather(*watching)
        delays = [(t - start) * 1000 for t in arrived]
        delivered_p50.append(percentile(delays, 0.5))
        delivered_max.append(max(delays))
    return {
        "big_room_send_ms": statistics.median(send_ms),
        "big_room_delivery_p50_ms": statistics.median(delivered_p50),
        "big_room_delivery_max_ms": statistics.median(delivered_max),
    }


async def run_workloads(
    client: Client,
    population: Population,
    scale: Scale,
    pid: int | None,
    database: DatabaseCpu,
) -> dict[str, float]:
    """One measured run; ``pid`` should be a freshly started server (idle RSS is read first)."""
    result: dict[str, float] = {}
    if pid:
        result["rss_idle_mib"] = rss_mib(pid)
    result.update(await run_send(client, population, scale, pid, database))
    result.update(await run_live(client, population, scale))
    result["initial_sync_10_rooms_ms"] = await time_initial_sync(
        client, population.chat_users[-1], scale.initial_sync_repeats
    )
    assert population.heavy_user is not None
    result["initial_sync_500_rooms_ms"] = await time_initial_sync(
        client, population.heavy_user, scale.initial_sync_repeats
    )
    result.update(await run_big_room(client, population, scale))
    return result


def new_session() -> aiohttp.ClientSession:
    # Enough connections for every long-poll of the big room workload at once.
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))


async def main_async(args: argparse.Namespace) -> None:
    scale = Scale().scaled(args.scale)
    async with new_session() as session:
        client = Client(args.url, session)
        population = await set_up_population(client, args.shared_secret, scale)
        print("setup seconds:", population.setup_seconds)
        database = DatabaseCpu(args.pg_dsn, args.db_name)
        print(json.dumps(await run_workloads(client, population, scale, args.pid, database)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--shared-secret", required=True)
    parser.add_argument("--pid", type=int, help="the server's process, for CPU and memory")
    parser.add_argument("--db-name", help="its PostgreSQL database, for the backends' CPU")
    parser.add_argument("--pg-dsn", default="host=127.0.0.1 port=5432 user=postgres")
    parser.add_argument("--scale", type=float, default=1.0, help="workload size factor")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
