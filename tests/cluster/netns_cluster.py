"""A real Ray cluster of three "hosts" on this machine, for the multi-host test (`make test-cluster`).

Each host is a network namespace (`ip netns`) with a veth into a bridge in the root namespace:

    root namespace: bridge eecbr<id>, 10.77.N.1/24, and TCP forwarders 10.77.N.1:{5432,6379} -> the
                    loopback-only PostgreSQL and Redis
    eec-<id>-head   10.77.N.2  Ray head (GCS, no CPUs, resource "gateway"): Serve's controller, its HTTP
                               proxy on :8000 and the Gateway deployment
    eec-<id>-w1     10.77.N.3  Ray worker, 2 CPUs: one EngineReplica
    eec-<id>-w2     10.77.N.4  Ray worker, 2 CPUs: the other EngineReplica

Nothing leaves the machine: the subnet is private to the bridge and the root namespace forwards no packets
(ip_forward is not touched). Every name carries a random id, so runs side by side do not collide; `down()`
kills every process of every namespace and deletes them, the bridge and the forwarders, and a run whose
owner died (a crashed test) is cleaned up by the next one (`clean_leftovers`).

Run as a script inside the head namespace it is the driver that deploys the app: `python netns_cluster.py
deploy '<json>'` (see `deploy_main`); the driver exits and Serve keeps running in the cluster.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

PREFIX = "eec"  # namespaces eec-<id>-<host>, bridge eecbr<id>, veths eec<id><host>, temp dir /tmp/eec-<id>
REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the venv's bin: ray and python
TESTS = REPO / "tests"
RAY_PORT = 6380  # the GCS port, inside the head's namespace (its own port space: no clash with a local Ray)
HTTP_PORT = 8000
APP_NAME = "ee"


def missing_requirements() -> str | None:
    """Why this machine cannot run the cluster, or None."""
    problems = []
    if os.geteuid() != 0:
        problems.append("root (network namespaces, veth and a bridge are created)")
    if shutil.which("ip") is None:
        problems.append("iproute2 (the `ip` command)")
    if problems:
        return "the cluster test needs " + " and ".join(problems) + ": run `make test-cluster` as root, with iproute2"
    return None


def sh(*args: str, check: bool = True, timeout: float = 60, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


# ---- the owner of a run: a run whose owner is gone is a leftover ------------------------------------


def _start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _owner_alive(temp_dir: Path) -> bool:
    try:
        pid, started = (temp_dir / "owner").read_text().split()
    except (OSError, ValueError):
        return False
    return _start_time(int(pid)) == started


def namespace_pids(ns: str) -> list[int]:
    out = sh("ip", "netns", "pids", ns, check=False).stdout
    return [int(p) for p in out.split()]


def kill_namespace(ns: str, wait_s: float = 15.0) -> None:
    """SIGKILL every process in the namespace (again, until none is left: Ray's daemons may fork)."""
    deadline = time.monotonic() + wait_s
    while pids := namespace_pids(ns):
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes {pids} in namespace {ns} did not die")
        time.sleep(0.1)


def _remove_run(run_id: str) -> None:
    """Kill every process of the run, delete its namespaces, veths, bridge and temp dir. Every process goes
    while every link is up, and the sockets they leave are destroyed (`ss -K`): an orphaned socket still
    sending its FIN would keep a deleted namespace alive for minutes."""
    namespaces = [n for n in sh("ip", "netns", "list").stdout.split() if n.startswith(f"{PREFIX}-{run_id}-")]
    links = [link for link in _links() if link.startswith((f"{PREFIX}{run_id}", f"{PREFIX}br{run_id}"))]
    for link in links:
        sh("ip", "link", "set", link, "up", check=False)
    errors = []
    for ns in namespaces:
        try:
            kill_namespace(ns)
        except RuntimeError as e:
            errors.append(str(e))
    for ns in namespaces:
        sh("ip", "netns", "exec", ns, "ss", "-K", "-a", "-t", check=False)
        sh("ip", "netns", "delete", ns, check=False)
    for link in links:  # the veths go with their namespaces, unless one lingers
        sh("ip", "link", "delete", link, check=False)
    shutil.rmtree(f"/tmp/{PREFIX}-{run_id}", ignore_errors=True)
    if errors:
        raise RuntimeError("; ".join(errors))


def _links() -> list[str]:
    return [line.split(": ")[1].split("@")[0] for line in sh("ip", "-o", "link").stdout.splitlines()]


def clean_leftovers() -> list[str]:
    """Remove what crashed runs left (processes, namespaces, links, temp dirs) whose owner process is gone;
    the runs of live owners stay. The ids removed."""
    names = sh("ip", "netns", "list").stdout.split() + _links() + [p.name for p in Path("/tmp").glob(f"{PREFIX}-*")]
    ids = {m.group(1) for n in names if (m := re.match(f"{PREFIX}(?:-|br)?([0-9a-f]{{6}})", n))}
    gone = sorted(i for i in ids if not _owner_alive(Path(f"/tmp/{PREFIX}-{i}")))
    for run_id in gone:
        _remove_run(run_id)
    return gone


# ---- TCP forwarders into the root namespace's loopback ---------------------------------------------


class Forwarder:
    """Listens on (host, port) for each port of `targets` and forwards to its target (host, port) on this
    namespace's loopback. The hosts' connections keep TCP keepalive (2 s idle, 3 probes a second apart), so
    one from a vanished host is closed in about five seconds, as a server's keepalive would close it (later):
    PostgreSQL then rolls back its open transaction and frees its locks."""

    def __init__(self, host: str, targets: dict[int, tuple[str, int]]):
        self.host, self.targets = host, targets
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="netns-forwarder", daemon=True)
        self.servers: list[asyncio.Server] = []
        self.writers: set[asyncio.StreamWriter] = set()

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self.loop).result(timeout=10)

    async def _listen(self) -> None:
        for port, target in self.targets.items():
            self.servers.append(
                await asyncio.start_server(lambda r, w, t=target: self._serve(r, w, t), self.host, port)
            )

    async def _serve(self, reader, writer, target) -> None:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 2)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, 5000)
        try:
            up_reader, up_writer = await asyncio.open_connection(*target)
        except OSError:
            writer.close()
            return
        self.writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        self.writers -= {writer, up_writer}

    @staticmethod
    async def _pipe(reader, writer) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            writer.close()  # either side gone: both go

    def stop(self) -> None:
        async def close():
            for server in self.servers:
                server.close()
            for writer in list(self.writers):
                writer.close()
            pipes = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in pipes:
                task.cancel()
            await asyncio.gather(*pipes, return_exceptions=True)

        if self.thread.is_alive():
            asyncio.run_coroutine_threadsafe(close(), self.loop).result(timeout=10)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)
            self.loop.close()


# ---- the cluster ------------------------------------------------------------------------------------


@dataclass
class Host:
    role: str  # head, w1, w2
    ns: str
    ip: str
    veth: str  # its end in the root namespace (a bridge port); the namespace's end is `eth0`


class NetnsCluster:
    """`up()` the network and the forwarders, `start_ray()`, `deploy(...)`, `kill_host("w1")`, `down()`."""

    def __init__(self, forward: dict[int, tuple[str, int]]):
        self.id = secrets.token_hex(3)
        self.subnet = self._free_subnet()
        self.bridge = f"{PREFIX}br{self.id}"
        self.bridge_ip = str(self.subnet[1])
        self.hosts = {
            role: Host(role, f"{PREFIX}-{self.id}-{role}", str(self.subnet[2 + i]), f"{PREFIX}{self.id}{role}")
            for i, role in enumerate(("head", "w1", "w2"))
        }
        self.temp_dir = Path(f"/tmp/{PREFIX}-{self.id}")
        self.forwarder = Forwarder(self.bridge_ip, forward)
        self.ns_inodes: dict[str, int] = {}
        # Ray 2.60 turns token authentication on by default; this cluster shares one random token through the
        # environment (RAY_AUTH_TOKEN), so it neither reads nor writes ~/.ray/auth_token (a local Ray's).
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        self.env |= {
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": secrets.token_hex(32),
            "RAY_USAGE_STATS_ENABLED": "0",
            "PYTHONPATH": f"{TESTS / 'ray'}:{TESTS}",  # the replicas import ray_apps (and its fakes)
            # the GCS declares a host dead after ~3 missed 1 s health checks (default: 5 x 3 s, 10 s timeout)
            "RAY_health_check_period_ms": "1000",
            "RAY_health_check_timeout_ms": "1000",
            "RAY_health_check_failure_threshold": "3",
        }

    @staticmethod
    def _free_subnet() -> ipaddress.IPv4Network:
        used = sh("ip", "-o", "-4", "addr").stdout
        for third in secrets.SystemRandom().sample(range(1, 255), 254):
            net = ipaddress.IPv4Network(f"10.77.{third}.0/24")
            if f" 10.77.{third}." not in used:
                return net
        raise RuntimeError("no free 10.77.x.0/24 subnet")

    @property
    def url(self) -> str:
        return f"http://{self.hosts['head'].ip}:{HTTP_PORT}"

    def exec(self, role: str, *args: str, **kw) -> subprocess.CompletedProcess:
        return sh("ip", "netns", "exec", self.hosts[role].ns, *args, env=self.env, **kw)

    # -- up ------------------------------------------------------------------------------------------

    def up(self) -> None:
        self.temp_dir.mkdir(mode=0o755)
        (self.temp_dir / "owner").write_text(f"{os.getpid()} {_start_time(os.getpid())}")
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        sh("ip", "addr", "add", f"{self.bridge_ip}/24", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")
        for h in self.hosts.values():
            sh("ip", "netns", "add", h.ns)
            self.ns_inodes[h.ns] = os.stat(f"/run/netns/{h.ns}").st_ino
            sh("ip", "link", "add", h.veth, "type", "veth", "peer", "name", "eth0", "netns", h.ns)
            sh("ip", "link", "set", h.veth, "master", self.bridge)
            sh("ip", "link", "set", h.veth, "up")
            inside = ("ip", "netns", "exec", h.ns, "ip")
            sh(*inside, "addr", "add", f"{h.ip}/24", "dev", "eth0")
            sh(*inside, "link", "set", "lo", "up")
            sh(*inside, "link", "set", "eth0", "up")
            sh(*inside, "route", "add", "default", "via", self.bridge_ip)
        self.forwarder.start()

    def start_ray(self) -> None:
        head = self.hosts["head"]
        common = [f"--temp-dir={self.temp_dir}", "--disable-usage-stats", "--object-store-memory=150000000"]
        self.exec(
            "head", str(BIN / "ray"), "start", "--head", f"--node-ip-address={head.ip}", f"--port={RAY_PORT}",
            "--num-cpus=0", '--resources={"gateway": 1}', "--include-dashboard=false", *common, timeout=120,
        )  # fmt: skip
        for role in ("w1", "w2"):
            self.exec(
                role, str(BIN / "ray"), "start", f"--address={head.ip}:{RAY_PORT}",
                f"--node-ip-address={self.hosts[role].ip}", "--num-cpus=2", *common, timeout=120,
            )  # fmt: skip

    def deploy(self, app: str, app_kwargs: dict, timeout: float = 240) -> dict[str, str]:
        """Deploy the Gateway (on the head) and two EngineReplicas (one a worker host) with a driver run in
        the head's namespace; {replica actor name: its host's role}."""
        args = json.dumps({"address": f"{self.hosts['head'].ip}:{RAY_PORT}", "app": app, "app_kwargs": app_kwargs})
        out = self.exec("head", str(BIN / "python"), __file__, "deploy", args, timeout=timeout).stdout
        where = json.loads(out.strip().splitlines()[-1])
        by_ip = {h.ip: h.role for h in self.hosts.values()}
        return {name: by_ip[ip] for name, ip in where.items()}

    # -- down ----------------------------------------------------------------------------------------

    def kill_host(self, role: str) -> None:
        """The host vanishes: its link goes down (no FIN or RST reaches anyone), then every process in it is
        SIGKILLed."""
        host = self.hosts[role]
        sh("ip", "link", "set", host.veth, "down")
        kill_namespace(host.ns)

    def down(self) -> None:
        """Remove everything of the run (`_remove_run`) and stop the forwarders."""
        try:
            _remove_run(self.id)
        finally:
            self.forwarder.stop()

    def leftovers(self) -> list[str]:
        """What of this run is still there (should be nothing after `down()`)."""
        found = [n for n in sh("ip", "netns", "list").stdout.split("\n") if n.startswith(f"{PREFIX}-{self.id}-")]
        for link in (self.bridge, *(h.veth for h in self.hosts.values())):
            if sh("ip", "link", "show", link, check=False).returncode == 0:
                found.append(f"link {link}")
        if self.temp_dir.exists():
            found.append(str(self.temp_dir))
        inodes = {f"net:[{i}]" for i in self.ns_inodes.values()}
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                if os.readlink(proc / "ns" / "net") in inodes:
                    found.append(f"process {proc.name} ({(proc / 'comm').read_text().strip()})")
            except OSError:
                pass
        return found


# ---- the driver (run inside the head's namespace) --------------------------------------------------


def deploy_main(args: dict) -> None:
    """Connect to the cluster, start Serve (HTTP proxy on the head, 0.0.0.0:8000), deploy the app: the
    Gateway pinned to the head (resource "gateway"), two EngineReplicas of one CPU, at most one per host.
    Prints {replica actor name: node IP} as its last line, then exits (Serve keeps running)."""
    import ray
    from ray import serve

    from emotional_engine.service.ray_serve import EngineReplica, Gateway

    ray.init(address=args["address"], logging_level="WARNING")
    serve.start(proxy_location="HeadOnly", http_options={"host": "0.0.0.0", "port": HTTP_PORT})
    engine = EngineReplica.options(num_replicas=2, max_replicas_per_node=1, ray_actor_options={"num_cpus": 1}).bind(
        args["app"], args["app_kwargs"]
    )
    gateway = Gateway.options(ray_actor_options={"num_cpus": 0, "resources": {"gateway": 0.01}}).bind(engine)
    serve.run(gateway, name=APP_NAME, route_prefix="/", blocking=False)
    where = {}
    for actor in ray.util.list_named_actors(all_namespaces=True):
        if actor["namespace"] == "serve" and actor["name"].startswith(f"SERVE_REPLICA::{APP_NAME}#EngineReplica#"):
            handle = ray.get_actor(actor["name"], namespace="serve")
            where[actor["name"]] = ray.get(handle.__ray_call__.remote(lambda _: ray.util.get_node_ip_address()))
    print(json.dumps(where), flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["deploy"]:
        deploy_main(json.loads(sys.argv[2]))
    else:
        sys.exit(f"usage: {sys.argv[0]} deploy '<json>'")
