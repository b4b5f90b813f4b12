"""A local production-like stack: PostgreSQL, an MLflow server and a Prefect server on loopback.

    uv run python deployments/local_stack.py up      # start (or reuse) the stack, run the flows
    uv run python deployments/local_stack.py status  # where each part is and whether it answers
    uv run python deployments/local_stack.py down    # stop everything

Everything lives under one folder (``.stack/`` at the repository root by default, git-ignored):

    postgres/          the PostgreSQL cluster (databases ``mlflow`` and ``prefect``)
    mlflow-artifacts/  what the MLflow server stores for its clients (--artifacts-destination)
    prefect/           PREFECT_HOME of the Prefect server and of the flows run against it
    data/              MOVIEREC_DATA_DIR of the flows
    logs/              postgres.log, mlflow.log, prefect.log, worker.log, flows.log
    run/               one JSON file per server process: its pid and port

PostgreSQL listens on 127.0.0.1 only, without a Unix socket, and trusts loopback connections
(a developer stack: no password to keep anywhere). It refuses to run as root, so as root the
cluster belongs to, and runs as, an unprivileged OS user (``postgres`` when it exists, else
``nobody``), which must be able to reach the stack folder.

`up` also registers the dev deployments of prefect.yaml on the Prefect server and starts a worker
of their process pool, so the flows run there as they do on a server: the hourly monitoring,
and training when the monitoring flow emits a retraining event (prefect.yaml's triggers).

Only the standard library and requests are used; the servers are the installed ``mlflow`` and
``prefect`` commands of this virtual environment.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ROOT = PROJECT_ROOT / ".stack"
DB_USER = "movierec"
DATABASES = ("mlflow", "prefect")
DEFAULT_PORTS = {"postgres": 5432, "mlflow": 5000, "prefect": 4200, "worker": 8080}
LOOPBACK = "127.0.0.1"
STOP_TIMEOUT = 30.0


class StackError(RuntimeError):
    """A part of the stack could not be started, reached or stopped; the message says why."""


@dataclass(frozen=True)
class Stack:
    """Where the stack lives and which ports were asked for (0: the usual port if free)."""

    root: Path
    pg_port: int = 0
    mlflow_port: int = 0
    prefect_port: int = 0

    @property
    def pgdata(self) -> Path:
        return self.root / "postgres"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def artifacts(self) -> Path:
        return self.root / "mlflow-artifacts"

    @property
    def prefect_home(self) -> Path:
        return self.root / "prefect"

    @property
    def data(self) -> Path:
        return self.root / "data"

    def requested_port(self, name: str) -> int:
        ports = {"postgres": self.pg_port, "mlflow": self.mlflow_port, "prefect": self.prefect_port}
        return ports[name]


# --- small helpers --------------------------------------------------------------------------
def log_tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file (or a note that it is missing)."""
    if not path.is_file():
        return f"(no log at {path})"
    text = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
    return "\n".join(f"    {line}" for line in text)


def port_is_free(port: int) -> bool:
    """True when nothing listens on ``127.0.0.1:port``."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def choose_port(name: str, requested: int) -> int:
    """The requested port (which must be free), else the usual one if free, else any free one."""
    if requested:
        if not port_is_free(requested):
            raise StackError(f"port {requested} asked for {name} is in use on {LOOPBACK}")
        return requested
    if port_is_free(DEFAULT_PORTS[name]):
        return DEFAULT_PORTS[name]
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def cli(name: str) -> str:
    """The path of an installed command, preferring this virtual environment's copy."""
    local = Path(sys.executable).with_name(name)
    found = str(local) if local.is_file() else shutil.which(name)
    if not found:
        raise StackError(f"`{name}` is not installed: run `uv sync` (or install it) first")
    return found


def process_alive(pid: int, marker: str) -> bool:
    """True when ``pid`` runs and (where /proc tells) its command line contains ``marker``.

    The marker guards against a recycled pid. A zombie (dead, not yet reaped) is not alive; an
    empty command line is a process in the middle of exec, which is.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    proc = Path(f"/proc/{pid}")
    if not Path("/proc/self").exists():
        return True
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = (proc / "cmdline").read_bytes()
    except OSError:
        return False
    return state not in ("Z", "X") and (not cmdline or marker.encode() in cmdline)


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.5) -> bool:
    """Poll ``check`` until it is true or ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return check()


def http_ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


# --- PostgreSQL -----------------------------------------------------------------------------
def pg_os_user() -> pwd.struct_passwd | None:
    """The unprivileged OS user PostgreSQL runs as when we are root (None: run as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise StackError("running as root, and neither a `postgres` nor a `nobody` user exists")


def run_pg(
    args: list[str], *, stdin: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL server binary, as the unprivileged user when we are root."""
    binary = shutil.which(args[0])
    if binary is None:
        raise StackError(
            f"`{args[0]}` is not on PATH: install the PostgreSQL server binaries "
            "(Debian: apt-get install postgresql) and put their bin/ folder on PATH"
        )
    user = pg_os_user()
    as_user: dict[str, Any] = (
        {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []} if user else {}
    )
    return subprocess.run(
        [binary, *args[1:]],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd="/",
        **as_user,
    )


def give_to_pg_user(path: Path) -> None:
    """Hand ``path`` (recursively) to the PostgreSQL OS user when we are root."""
    user = pg_os_user()
    if user is None:
        return
    for item in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.chown(item, user.pw_uid, user.pw_gid)


def check_pg_user_reaches(path: Path) -> None:
    """Fail clearly when the PostgreSQL OS user cannot enter ``path``'s folder."""
    user = pg_os_user()
    if user is None:
        return
    probe = subprocess.run(
        ["/bin/sh", "-c", 'cd "$1"', "sh", str(path)],
        capture_output=True,
        user=user.pw_uid,
        group=user.pw_gid,
        extra_groups=[],
        check=False,
    )
    if probe.returncode != 0:
        raise StackError(
            f"PostgreSQL runs as the OS user {user.pw_name!r} (it refuses root), which cannot "
            f"enter {path}: let it through the folders above (chmod o+x), or pass --root with "
            "a folder it can reach"
        )


def init_postgres(stack: Stack) -> None:
    """Create the cluster and its databases once; a half-made cluster is never left behind.

    initdb and the databases (made in single-user mode, before any server runs) go into a
    staging folder renamed into place at the end, so an existing ``postgres/`` is complete.
    """
    if (stack.pgdata / "PG_VERSION").is_file():
        return
    staging = stack.root / "postgres.initdb"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(mode=0o700)
    give_to_pg_user(staging)
    check_pg_user_reaches(staging)
    result = run_pg(
        ["initdb", "-D", str(staging), "-U", DB_USER, "--auth=trust", "--encoding=UTF8"]
        + ["--locale=C", "--no-instructions"]
    )
    if result.returncode != 0:
        raise StackError(f"initdb failed:\n{result.stdout}{result.stderr}")
    statements = "".join(f"CREATE DATABASE {name};\n" for name in DATABASES)
    result = run_pg(["postgres", "--single", "-D", str(staging), "postgres"], stdin=statements)
    if result.returncode != 0 or "ERROR:" in result.stderr or "FATAL:" in result.stderr:
        raise StackError(f"creating the databases failed:\n{result.stderr}")
    with (staging / "postgresql.conf").open("a", encoding="utf-8") as conf:
        # loopback TCP only: no Unix socket, so no socket folder the OS user must be able to use
        conf.write("\n# movierec local stack\nlisten_addresses = '127.0.0.1'\n")
        conf.write("unix_socket_directories = ''\n")
    staging.rename(stack.pgdata)


def postgres_port(stack: Stack) -> int | None:
    """The port of the running cluster, or None when it is not running."""
    if not (stack.pgdata / "postmaster.pid").is_file():
        return None
    if run_pg(["pg_ctl", "status", "-D", str(stack.pgdata)]).returncode != 0:
        return None
    lines = (stack.pgdata / "postmaster.pid").read_text().splitlines()
    return int(lines[3])  # postmaster.pid: pid, data dir, start time, port, ...


def start_postgres(stack: Stack, timeout: float) -> tuple[int, bool]:
    """Start the cluster unless it runs; returns ``(port, started)``."""
    init_postgres(stack)
    running = postgres_port(stack)
    if running is not None:
        if stack.pg_port and stack.pg_port != running:
            raise StackError(
                f"PostgreSQL already runs on port {running}; run `down` first to move it to "
                f"{stack.pg_port}"
            )
        return running, False
    port = choose_port("postgres", stack.pg_port)
    log = stack.logs / "postgres.log"
    log.touch()
    give_to_pg_user(log)
    result = run_pg(
        ["pg_ctl", "start", "-D", str(stack.pgdata), "-l", str(log), "-w"]
        + ["-t", str(int(timeout)), "-o", f"-p {port}"],
        timeout=timeout + 30,
    )
    if result.returncode != 0:
        raise StackError(
            f"PostgreSQL did not start on port {port}: {result.stderr.strip()}\n"
            f"last lines of {log}:\n{log_tail(log)}"
        )
    return port, True


def stop_postgres(stack: Stack) -> bool:
    """Stop the cluster (fast shutdown); False when it was not running."""
    if postgres_port(stack) is None:
        return False
    result = run_pg(["pg_ctl", "stop", "-D", str(stack.pgdata), "-m", "fast", "-w"])
    if result.returncode != 0:
        raise StackError(f"pg_ctl stop failed: {result.stderr.strip()}")
    return True


# --- the MLflow and Prefect servers -----------------------------------------------------------
@dataclass(frozen=True)
class Server:
    """A server process we start detached, with a pid file and an HTTP health check."""

    name: str
    title: str
    health_path: str

    def pid_file(self, stack: Stack) -> Path:
        return stack.run / f"{self.name}.json"

    def log(self, stack: Stack) -> Path:
        return stack.logs / f"{self.name}.log"

    def running(self, stack: Stack) -> dict[str, int] | None:
        """``{"pid", "port"}`` of the running process, or None (a stale pid file is removed)."""
        path = self.pid_file(stack)
        if not path.is_file():
            return None
        info = json.loads(path.read_text())
        if process_alive(info["pid"], self.name):
            return info
        path.unlink()
        return None


MLFLOW = Server("mlflow", "MLflow", "/health")
PREFECT = Server("prefect", "Prefect", "/api/health")
SERVERS = (MLFLOW, PREFECT)
WORKER = Server("worker", "Prefect worker", "/health")
WORK_POOL = "dev-process"


def base_url(port: int) -> str:
    return f"http://{LOOPBACK}:{port}"


def db_url(pg_port: int, database: str, *, driver: str = "psycopg") -> str:
    """A SQLAlchemy URL of a stack database (MLflow: psycopg 3; Prefect: asyncpg)."""
    return f"postgresql+{driver}://{DB_USER}@{LOOPBACK}:{pg_port}/{database}"


def server_command(server: Server, stack: Stack, port: int, pg_port: int) -> list[str]:
    if server is MLFLOW:
        return [
            cli("mlflow"),
            "server",
            "--host",
            LOOPBACK,
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            db_url(pg_port, "mlflow"),
            "--artifacts-destination",
            str(stack.artifacts),
        ]
    return [cli("prefect"), "server", "start", "--host", LOOPBACK, "--port", str(port)]


def server_env(server: Server, stack: Stack, port: int, pg_port: int) -> dict[str, str]:
    if server is MLFLOW:
        # The job runner serves GenAI features this project does not use, with seven worker
        # processes: too much for two cores.
        return {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    return {
        **os.environ,
        "PREFECT_HOME": str(stack.prefect_home),
        "PREFECT_API_URL": f"{base_url(port)}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_DATABASE_CONNECTION_URL": db_url(pg_port, "prefect", driver="asyncpg"),
        # Prefect's defaults (5 s to connect, 10 s a statement) are for a server of its own; on
        # a busy two-core laptop its start-up (migrations) timed out now and then.
        "PREFECT_SERVER_DATABASE_CONNECTION_TIMEOUT": "30",
        "PREFECT_SERVER_DATABASE_TIMEOUT": "60",
    }


def start_server(server: Server, stack: Stack, pg_port: int) -> dict[str, int]:
    """Start ``server`` detached (its own session, so `down` can stop its whole group)."""
    port = choose_port(server.name, stack.requested_port(server.name))
    return spawn(
        server,
        stack,
        port,
        server_command(server, stack, port, pg_port),
        server_env(server, stack, port, pg_port),
    )


def spawn(
    server: Server, stack: Stack, port: int, command: list[str], env: dict[str, str]
) -> dict[str, int]:
    """Run ``command`` detached, logging to the server's log, and write its pid file."""
    log = server.log(stack)
    with log.open("a", encoding="utf-8") as out:
        out.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting on port {port}\n")
        out.flush()
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=stack.root,
            env=env,
            start_new_session=True,
        )
    info = {"pid": process.pid, "port": port}
    server.pid_file(stack).write_text(json.dumps(info))
    return info


def wait_healthy(server: Server, stack: Stack, info: dict[str, int], timeout: float) -> None:
    """Wait (bounded) for the health check; on failure raise with the log's last lines."""
    url = base_url(info["port"]) + server.health_path

    def ready() -> bool:
        if not process_alive(info["pid"], server.name):
            raise StackError(
                f"{server.title} server exited while starting; last lines of "
                f"{server.log(stack)}:\n{log_tail(server.log(stack))}"
            )
        return http_ok(url)

    if not wait_until(ready, timeout):
        raise StackError(
            f"{server.title} server did not answer {url} within {timeout:.0f} s; last lines of "
            f"{server.log(stack)}:\n{log_tail(server.log(stack))}"
        )


def stop_server(server: Server, stack: Stack) -> bool:
    """SIGTERM the server's process group, SIGKILL it after a while; False if not running."""
    info = server.running(stack)
    if info is None:
        return False
    pid = info["pid"]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            break
        if wait_until(lambda: not process_alive(pid, server.name), STOP_TIMEOUT, 0.2):
            break
    if process_alive(pid, server.name):
        raise StackError(f"{server.title} server (pid {pid}) did not stop")
    server.pid_file(stack).unlink(missing_ok=True)
    return True


# --- the flows ----------------------------------------------------------------------------------
def flow_env(stack: Stack, ports: dict[str, int]) -> dict[str, str]:
    """The environment of the flows: the stack's servers and data folder."""
    return {
        **os.environ,
        "PREFECT_API_URL": f"{base_url(ports['prefect'])}/api",
        "PREFECT_HOME": str(stack.prefect_home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "MLFLOW_TRACKING_URI": base_url(ports["mlflow"]),
        "MOVIEREC_DATA_DIR": str(stack.data),
    }


def run_flows(stack: Stack, ports: dict[str, int], *, crawl: bool) -> None:
    """The data flow, the training flow and batch prediction, one ``movierec`` command each."""
    log = stack.logs / "flows.log"
    commands = [
        ("data flow", ["data"] if crawl else ["data", "--no-crawl"]),
        ("training flow", ["train"]),
        ("batch prediction", ["predict"]),
    ]
    for title, args in commands:
        started = time.monotonic()
        print(f"  {title:<17}", end="", flush=True)
        command = [sys.executable, "-m", "flows.cli", *args]
        try:
            run_logged(stack, ports, log, command, f"movierec {' '.join(args)}")
        except StackError:
            print("failed")
            raise
        print(f"done in {time.monotonic() - started:.1f} s")


# --- the dev deployments and their worker -------------------------------------------------------
def prefect_command(stack: Stack, ports: dict[str, int], *args: str) -> None:
    """Run a ``prefect`` CLI command against the stack's server (from the checkout)."""
    command = [cli("prefect"), *args]
    run_logged(stack, ports, stack.logs / "worker.log", command, f"prefect {' '.join(args)}")


def run_logged(
    stack: Stack, ports: dict[str, int], log: Path, command: list[str], label: str
) -> None:
    """Run ``command`` from the checkout with the flows' environment, appending its output to
    ``log``; a failure raises with the log's last lines."""
    with log.open("a", encoding="utf-8") as out:
        out.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} {label}\n")
        out.flush()
        result = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=PROJECT_ROOT,
            env=flow_env(stack, ports),
            check=False,
        )
    if result.returncode != 0:
        raise StackError(
            f"{label} exited with {result.returncode}; last lines of {log}:\n{log_tail(log)}"
        )


def start_worker(stack: Stack, ports: dict[str, int], timeout: float) -> dict[str, int]:
    """Register the dev deployments (prefect.yaml) and start a worker of their pool.

    The worker runs each flow run in a subprocess with its own environment, which points the
    flows at the stack's servers and data folder.
    """
    info = WORKER.running(stack)
    if info is not None:
        print(f"Prefect worker already running (pid {info['pid']})")
        return info
    prefect_command(
        stack, ports, "work-pool", "create", WORK_POOL, "--type", "process", "--overwrite"
    )
    prefect_command(stack, ports, "--no-prompt", "deploy", "--name", "*-dev")
    port = choose_port(WORKER.name, 0)
    env = {
        **flow_env(stack, ports),
        "PREFECT_WORKER_WEBSERVER_HOST": LOOPBACK,
        "PREFECT_WORKER_WEBSERVER_PORT": str(port),
    }
    command = [cli("prefect"), "worker", "start", "--pool", WORK_POOL, "--with-healthcheck"]
    info = spawn(WORKER, stack, port, command, env)
    wait_healthy(WORKER, stack, info, timeout)
    print(f"Prefect worker of {WORK_POOL} started (pid {info['pid']}); dev deployments registered")
    return info


# --- the commands -----------------------------------------------------------------------------
def up(
    stack: Stack,
    *,
    flows: bool = True,
    crawl: bool = True,
    worker: bool = True,
    timeout: float = 120.0,
) -> None:
    """Start (or reuse) PostgreSQL, MLflow, Prefect and a worker, then run the flows."""
    for folder in (stack.root, stack.logs, stack.run, stack.artifacts, stack.prefect_home):
        folder.mkdir(parents=True, exist_ok=True)
    started_at = time.monotonic()
    pg_port, pg_started = start_postgres(stack, timeout)
    print(f"PostgreSQL {'started' if pg_started else 'already running'} on port {pg_port}")
    if pg_started:  # servers left from before talk to a cluster that is gone: restart them
        for server in (WORKER, *SERVERS):
            stop_server(server, stack)

    ports = {"postgres": pg_port}
    starting: list[tuple[Server, dict[str, int]]] = []
    for server in SERVERS:  # start both, then wait for both: they migrate their schemas at once
        info = server.running(stack)
        requested = stack.requested_port(server.name)
        if info is not None and requested and requested != info["port"]:
            raise StackError(
                f"{server.title} server already runs on port {info['port']}; run `down` first "
                f"to move it to {requested}"
            )
        if info is None:
            info = start_server(server, stack, pg_port)
            starting.append((server, info))
        else:
            print(f"{server.title} server already running (pid {info['pid']})")
        ports[server.name] = info["port"]
    for server, info in starting:
        wait_healthy(server, stack, info, timeout)
        print(f"{server.title} server started on port {info['port']} (pid {info['pid']})")
    if worker:
        start_worker(stack, ports, timeout)
    print(f"Stack ready in {time.monotonic() - started_at:.1f} s")

    if flows:
        print("Running the flows against it (output in logs/flows.log):")
        run_flows(stack, ports, crawl=crawl)
    print_summary(stack, ports)


def print_summary(stack: Stack, ports: dict[str, int]) -> None:
    print(
        f"\nmovierec local stack in {stack.root}\n"
        f"  MLflow UI    {base_url(ports['mlflow'])}\n"
        f"  Prefect UI   {base_url(ports['prefect'])}\n"
        f"  PostgreSQL   postgresql://{DB_USER}@{LOOPBACK}:{ports['postgres']}/{{mlflow,prefect}}\n"
        f"  data         {stack.data}\n"
        f"  logs         {stack.logs}\n"
        "Point the movierec command at it:\n"
        f"  export PREFECT_API_URL={base_url(ports['prefect'])}/api "
        f"MLFLOW_TRACKING_URI={base_url(ports['mlflow'])} MOVIEREC_DATA_DIR={stack.data}\n"
        "Stop it with `make stack-down`."
    )


def status(stack: Stack) -> bool:
    """Print what runs where; True when every part runs and answers."""
    all_up = True
    pg_port = postgres_port(stack) if (stack.pgdata / "PG_VERSION").is_file() else None
    print(f"PostgreSQL   {'port ' + str(pg_port) if pg_port else 'not running'}")
    all_up &= pg_port is not None
    for server in (*SERVERS, WORKER):
        info = server.running(stack)
        if info is None:
            print(f"{server.title:<12} not running")
            all_up = False
            continue
        healthy = http_ok(base_url(info["port"]) + server.health_path)
        print(
            f"{server.title:<12} {base_url(info['port'])} (pid {info['pid']}, "
            f"{'healthy' if healthy else 'NOT answering its health check'})"
        )
        all_up &= healthy
    return all_up


def down(stack: Stack) -> None:
    """Stop the worker and the servers (by their pid files), then PostgreSQL."""
    for server in (WORKER, *SERVERS):
        stopped = stop_server(server, stack)
        print(f"{server.title} server {'stopped' if stopped else 'was not running'}")
    if (stack.pgdata / "PG_VERSION").is_file() and stop_postgres(stack):
        print("PostgreSQL stopped")
    else:
        print("PostgreSQL was not running")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "command", choices=("up", "down", "status"), help="start / stop / show the stack"
    )
    parser.add_argument(
        "--root", type=Path, default=DEFAULT_ROOT, help=f"stack folder (default: {DEFAULT_ROOT})"
    )
    ports = (("postgres", "--pg-port"), ("mlflow", "--mlflow-port"), ("prefect", "--prefect-port"))
    for name, flag in ports:
        parser.add_argument(
            flag,
            type=int,
            default=0,
            help=f"{name} port (default: {DEFAULT_PORTS[name]} when free, else any free port)",
        )
    parser.add_argument("--no-flows", action="store_true", help="up: only start the servers")
    parser.add_argument(
        "--no-worker",
        action="store_true",
        help="up: neither register the dev deployments nor start their worker",
    )
    parser.add_argument(
        "--no-crawl", action="store_true", help="up: skip the TMDB crawl in the data flow"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="up: seconds to wait for each server to become healthy (default: 120)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    stack = Stack(args.root.resolve(), args.pg_port, args.mlflow_port, args.prefect_port)
    try:
        if args.command == "up":
            up(
                stack,
                flows=not args.no_flows,
                crawl=not args.no_crawl,
                worker=not args.no_worker,
                timeout=args.timeout,
            )
        elif args.command == "down":
            down(stack)
        else:
            return 0 if status(stack) else 1
    except (StackError, OSError, subprocess.SubprocessError) as exc:
        print(f"local_stack {args.command}: error: {exc}", file=sys.stderr)
        if args.command == "up":
            print("(`local_stack.py down` stops whatever did start)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
