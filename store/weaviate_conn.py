"""Connect to Weaviate: a cluster when ``KB_WEAVIATE_URL`` is set, else Weaviate Embedded under ``KB_DATA_DIR``."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import psutil
import weaviate
from weaviate.auth import Auth
from weaviate.client import WeaviateClient
from weaviate.config import AdditionalConfig, Timeout
from weaviate.embedded import _get_server_ports  # the client's own choice: data = gossip + 1, Raft internal = Raft + 1

from store.errors import IndexUnavailable

log = logging.getLogger(__name__)

# Environment for the embedded server. Raft advertises the host's first address unless told otherwise, and
# an IPv6 one breaks its listener; the shorter Raft timeouts make a one-node start take seconds, not ten.
EMBEDDED_ENV = {
    "ENABLE_TOKENIZER_KAGOME_KR": "true",
    "CLUSTER_ADVERTISE_ADDR": "127.0.0.1",
    "RAFT_TIMEOUTS_MULTIPLIER": "1",
    "DISABLE_TELEMETRY": "true",
    "LOG_LEVEL": "warning",
    "ENABLE_MODULES": "",
    "DEFAULT_VECTORIZER_MODULE": "none",
    # BM25 with BlockMax-WAND in 1.35 prunes postings still in a memtable from top-k results (fixed upstream
    # in weaviate/weaviate#11780, after the newest release the Go proxy serves here): flushing memtables soon
    # after a write keeps a bulk import's keyword side right within seconds, not at the next restart.
    "PERSISTENCE_MEMTABLES_FLUSH_DIRTY_AFTER_SECONDS": "2",
    # BM25 by WAND over map postings, not BlockMax-WAND: in 1.35.2 BlockMax scores go wrong once a delete reaches a
    # flushed segment, and stay wrong across restarts until the collection is rebuilt (deprecating 3 runbooks took
    # dev.jsonl recall@5 from 0.738 to 0.606; WAND: 0.729 before and after, docs/benchmarks.md). Every update and
    # deprecation deletes chunks. Applies to collections created by this server (index schema 6 rebuilds older ones).
    "USE_INVERTED_SEARCHABLE": "false",
}
NODE_NAME_FILE = "kb-node-name"  # in the server's data directory: the cluster node name its data belongs to
STARTER_FILE = "kb-starter.json"  # beside it: the server's process and the kb process that started it


PORT_SETTLE_SECONDS = 30.0  # a stopping embedded server releases its ports within seconds


@dataclass(frozen=True)
class WeaviateTarget:
    """Where the index lives: a cluster (``url`` set) or an embedded server under ``data_dir``."""

    data_dir: Path
    binary_dir: Path
    version: str
    port: int = 8079
    grpc_port: int = 50060
    url: str | None = None
    grpc_url: str | None = None
    api_key: str | None = None

    @property
    def persistence_dir(self) -> Path:
        """The embedded server's own data, with the files recording its node and its starter."""
        return self.data_dir / "weaviate"


def embedded_binary_path(binary_dir: Path, version: str) -> Path:
    """Where weaviate-client's embedded mode looks for the server of ``version`` before it downloads."""
    tag = version if version.startswith("v") else f"v{version}"
    return binary_dir / f"weaviate-{tag}-{hashlib.sha256(tag.encode()).hexdigest()}"


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.3)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def _child_output_to(log_path: Path) -> Iterator[None]:
    """Point fds 1 and 2 at a log file while the server is spawned, so its logs never mix with CLI output."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(log_path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def connect(target: WeaviateTarget, *, start_embedded: bool = True) -> WeaviateClient:
    """A client of the cluster, or of the embedded server, started here unless it runs already (or, with
    ``start_embedded`` false, an error: a helper process must not own the server its parent shares)."""
    config = AdditionalConfig(timeout=Timeout(init=30, query=60, insert=180))
    try:
        if target.url:
            return _connect_cluster(target, config)
        return _connect_embedded(target, config, start=start_embedded)
    except IndexUnavailable:
        raise
    except Exception as exc:  # the client raises many kinds; the user needs one clear message
        where = target.url or f"embedded Weaviate on port {target.port}"
        raise IndexUnavailable(f"Cannot reach the search index ({where}): {exc}") from exc


def embedded_server(target: WeaviateTarget) -> psutil.Process | None:
    """The process serving the embedded index on ``target``'s port (None for a cluster)."""
    return None if target.url else weaviate_process(target.port)


def weaviate_process(port: int) -> psutil.Process | None:
    """The Weaviate server serving HTTP on ``port``: the embedded binary is started as
    ``weaviate-v<version>-<hash> --host ... --port <port> ...``; failing that, whoever listens on the port (None when
    that is another user's process)."""
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        name = proc.info.get("name") or ""
        program = Path(cmdline[0]).name if cmdline else ""
        if not (name.startswith("weaviate") or program.startswith("weaviate")):
            continue
        with suppress(ValueError, IndexError):
            if cmdline[cmdline.index("--port") + 1] == str(port):
                return proc
    with suppress(psutil.AccessDenied):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                return psutil.Process(conn.pid)
    return None


def server_exited(server: psutil.Process) -> bool:
    """Whether ``server`` has ended (a zombie too: its parent has not reaped it yet)."""
    try:
        return not server.is_running() or server.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def _connect_cluster(target: WeaviateTarget, config: AdditionalConfig) -> WeaviateClient:
    assert target.url is not None
    http = urlparse(target.url)
    grpc_address = target.grpc_url or http.hostname or "localhost"
    grpc = urlparse(grpc_address if "//" in grpc_address else f"//{grpc_address}")
    secure = http.scheme == "https"
    auth = Auth.api_key(target.api_key) if target.api_key else None
    return weaviate.connect_to_custom(
        http_host=http.hostname or "localhost",
        http_port=http.port or (443 if secure else 80),
        http_secure=secure,
        grpc_host=grpc.hostname or http.hostname or "localhost",
        grpc_port=grpc.port or 50051,
        grpc_secure=secure,
        auth_credentials=auth,
        additional_config=config,
    )


def _ports_settled(target: WeaviateTarget, timeout: float) -> bool:
    """Wait while only one of the server's two ports answers (a server still starting, or still stopping: a bot
    restarted at once used to fail after 30 s with "did not start listening"); true if both answer, false if none."""
    deadline = time.monotonic() + timeout
    while True:
        http, grpc = _listening(target.port), _listening(target.grpc_port)
        if http == grpc:
            return http
        if time.monotonic() >= deadline:
            busy = target.grpc_port if grpc else target.port
            raise IndexUnavailable(
                f"Port {busy} is taken by another process, so the embedded Weaviate (ports {target.port} and "
                f"{target.grpc_port}) cannot start. Stop that process, or choose free ports with KB_WEAVIATE_PORT "
                "and KB_WEAVIATE_GRPC_PORT.")
        time.sleep(0.2)


def _connect_embedded(target: WeaviateTarget, config: AdditionalConfig, *, start: bool) -> WeaviateClient:
    running = _ports_settled(target, PORT_SETTLE_SECONDS)
    orphan = _orphaned_server(target) if running and start else None
    if orphan is not None:
        # Its starter was killed (SIGKILL, the OOM killer): nobody would ever stop it, and it runs the settings of
        # whatever kb started it. Stopped (Weaviate flushes on SIGTERM) and started again here, as this process's.
        log.warning("Stopping the embedded Weaviate (pid %s) left running by a kb process that is gone", orphan.pid)
        with suppress(psutil.NoSuchProcess):
            orphan.terminate()
            try:
                orphan.wait(timeout=PORT_SETTLE_SECONDS)
            except psutil.TimeoutExpired:
                orphan.kill()
                orphan.wait(timeout=PORT_SETTLE_SECONDS)
        running = _ports_settled(target, PORT_SETTLE_SECONDS)
    if running:
        # Another kb process (the bot, say) already runs the embedded server on this data dir: share it.
        client = weaviate.connect_to_local(port=target.port, grpc_port=target.grpc_port, additional_config=config)
        try:
            _check_same_node(client, target)
        except IndexUnavailable:
            client.close()
            raise
        return client
    if not start:
        raise IndexUnavailable(f"The embedded Weaviate on port {target.port} is not running yet.")
    binary = embedded_binary_path(target.binary_dir, target.version)
    if not binary.exists():
        raise IndexUnavailable(
            f"The Weaviate server binary {binary} is missing. Run `make setup` (scripts/setup.sh) to build it."
        )
    node = embedded_node_name(target)
    with _child_output_to(target.data_dir / "weaviate.log"):
        client = weaviate.connect_to_embedded(
            version=target.version,
            persistence_data_path=str(target.persistence_dir),
            binary_path=str(target.binary_dir),
            port=target.port,
            grpc_port=target.grpc_port,
            environment_variables={**EMBEDDED_ENV, **_internal_ports(target), "CLUSTER_HOSTNAME": node,
                                   "RAFT_JOIN": node},
            additional_config=config,
        )
    _record_starter(target)
    return client


def _internal_ports(target: WeaviateTarget) -> dict[str, str]:
    """Free ports for the server's gossip, Raft and profiling listeners, none of them ours. weaviate-client picks them
    among the ports free at start, and once picked our HTTP port, freed a moment before by a server it replaced: the
    new server's Raft took it and its HTTP listener could not bind (the client's requests were reset)."""
    ours = {target.port, target.grpc_port}
    ports = _get_server_ports()  # (gossip, data = gossip + 1, raft, raft internal = raft + 1, profiling)
    while ours & set(ports):
        ports = _get_server_ports()
    gossip, data, raft, raft_internal, profiling = ports
    return {"CLUSTER_GOSSIP_BIND_PORT": str(gossip), "CLUSTER_DATA_BIND_PORT": str(data), "RAFT_PORT": str(raft),
            "RAFT_INTERNAL_RPC_PORT": str(raft_internal), "PROFILING_PORT": str(profiling)}


def _record_starter(target: WeaviateTarget) -> None:
    """Which process started the server now running, to tell later whether it is still there."""
    server, me = weaviate_process(target.port), psutil.Process()
    record = {"server": server.pid if server else None, "starter": me.pid, "starter_started": me.create_time()}
    (target.persistence_dir / STARTER_FILE).write_text(json.dumps(record) + "\n", encoding="utf-8")


def _orphaned_server(target: WeaviateTarget) -> psutil.Process | None:
    """The server running on this data directory if the kb process that started it is gone."""
    recorded = target.persistence_dir / STARTER_FILE
    try:
        record = json.loads(recorded.read_text(encoding="utf-8"))
        server = weaviate_process(target.port)
        if server is None or server.pid != record["server"]:
            return None  # not the server this data directory's starter recorded
    except (OSError, ValueError, KeyError, TypeError, psutil.Error):
        return None  # no record (a server started by an older kb), or unreadable: shared as it is
    try:
        starter = psutil.Process(record["starter"])
        alive = abs(starter.create_time() - record["starter_started"]) < 0.5 and not server_exited(starter)
    except psutil.NoSuchProcess:
        alive = False
    except (TypeError, psutil.Error):
        alive = True  # cannot tell: leave it alone
    return None if alive else server


def embedded_node_name(target: WeaviateTarget) -> str:
    """The embedded server's cluster node name, kept with its data. weaviate-client names the node after the HTTP
    port (`Embedded_at_<port>`), and the data belongs to that node: started on another port, the server waited for
    its old node and never became ready. A new data directory gets a name of its own; one whose server ran before
    the name was recorded keeps the client's (the port it is started on must then be its old one)."""
    recorded = _recorded_node_name(target)
    if recorded is not None:
        return recorded
    persistence = target.persistence_dir
    name = f"Embedded_at_{target.port}" if (persistence / "raft").exists() else f"kb-{uuid.uuid4().hex[:12]}"
    persistence.mkdir(parents=True, exist_ok=True)
    (persistence / NODE_NAME_FILE).write_text(name + "\n", encoding="utf-8")
    return name


def _recorded_node_name(target: WeaviateTarget) -> str | None:
    recorded = target.persistence_dir / NODE_NAME_FILE
    return recorded.read_text(encoding="utf-8").strip() if recorded.exists() else None


def _check_same_node(client: WeaviateClient, target: WeaviateTarget) -> None:
    """Refuse a server already answering on the ports when it was started for another data directory: sharing it
    would read and write that directory's index. (A data directory whose server never ran here has no name yet and
    shares whatever answers.)"""
    ours = _recorded_node_name(target)
    running = [node.name for node in client.cluster.nodes()]
    if ours is not None and ours not in running:
        raise IndexUnavailable(
            f"The Weaviate answering on ports {target.port} and {target.grpc_port} belongs to another data directory "
            f"(its node is {', '.join(running) or 'unknown'}; {target.data_dir}'s is {ours}). Stop the kb that runs "
            "it, or give this data directory free ports with KB_WEAVIATE_PORT and KB_WEAVIATE_GRPC_PORT.")
