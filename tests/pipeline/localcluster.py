"""A real multi-node Ray cluster on this machine, for job-submission and multi-node tests.

Each node is `ray start --block` in its own process group, on 127.0.0.1, with its own ports, temp
dir and token; stopping the cluster ends exactly those process groups and never touches another
Ray on the machine (unlike `ray stop`).

A node listed in `isolated` runs in its own mount namespace with an empty tmpfs over each of `hidden`
(by default /tmp and ~/.cache): like a separate machine, it sees nothing the head, the job driver or
the test wrote there, and keeps its own Ray temp dir and caches there. It still sees the venv and
the repository, and gets the token by environment (the token file lies under the hidden /tmp).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))


def can_isolate() -> bool:
    """Whether this process may start a node in a private mount namespace (root, namespaces allowed)."""
    probe = ["unshare", "--mount", "--propagation", "private", "mount", "-t", "tmpfs", "cprec-probe", "/tmp"]
    try:
        return subprocess.run(probe, capture_output=True, timeout=30, check=False).returncode == 0
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalRayCluster:
    """`with LocalRayCluster(nodes=[{"CPU": 2}]) as cluster:` -> cluster.address, cluster.dashboard_url.

    `env`: variables of every node and of `cluster.env` (clients such as `ray job submit`), e.g. an
    object store's AWS_* variables; `node_env`: more per node index (e.g. a node-local cache dir);
    `isolated`: indices of nodes started in a private mount namespace with tmpfs over `hidden`.
    """

    def __init__(
        self,
        nodes: list[dict],
        dashboard: bool = True,
        start_timeout: float = 120.0,
        env: dict[str, str] | None = None,
        node_env: dict[int, dict[str, str]] | None = None,
        isolated: tuple[int, ...] = (),
        hidden: tuple[str, ...] = ("/tmp", str(Path.home() / ".cache")),
    ):
        self.nodes = nodes
        self.dashboard = dashboard
        self.start_timeout = start_timeout
        self.node_env = node_env or {}
        if 0 in isolated:
            raise ValueError("the head cannot be isolated: clients reach its token file and temp dir")
        self.isolated = set(isolated)
        self.hidden = hidden
        self.temp_root = Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))
        token_file = self.temp_root / "auth_token"
        self.token = os.urandom(16).hex()
        token_file.write_text(self.token)
        # Token authentication stays on; clients and nodes find the token where Ray documents it.
        # `python` in job entrypoints must be this interpreter: its bin directory goes first on PATH.
        self.env = {
            **os.environ,
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(token_file),
            "RAY_USAGE_STATS_ENABLED": "0",
            # A stopped node would otherwise wait up to 30 s to drain, for a GCS the same stop has ended.
            "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
            **(env or {}),
        }
        for name in ("RAY_ADDRESS", "RAY_AUTH_TOKEN"):  # either would override this cluster's settings
            self.env.pop(name, None)
        self.processes: list[subprocess.Popen] = []
        self.logs: list = []
        self.gcs_port = free_port()
        self.dashboard_port = free_port()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def _start_node(self, index: int, resources: dict) -> None:
        resources = dict(resources)
        cpus = resources.pop("CPU", 1)
        args = [
            RAY,
            "start",
            "--block",
            "--node-ip-address=127.0.0.1",
            f"--num-cpus={cpus}",
            f"--resources={json.dumps(resources)}",
            f"--node-manager-port={free_port()}",
            f"--object-manager-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--metrics-export-port={free_port()}",
            # Each node its own temp dir: not /tmp/ray, which another Ray on this machine may hold.
            f"--temp-dir={self.temp_root / ('ray' if index == 0 else f'ray{index}')}",
        ]
        if index == 0:
            args += [
                "--head",
                f"--port={self.gcs_port}",
                f"--ray-client-server-port={free_port()}",
                f"--include-dashboard={str(self.dashboard).lower()}",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={self.dashboard_port}",
            ]
        else:
            args += [f"--address={self.address}"]
        env = {**self.env, **self.node_env.get(index, {})}
        if index in self.isolated:
            # The token file is hidden there: the node (and so its workers) get the token itself.
            env.pop("RAY_AUTH_TOKEN_PATH")
            env["RAY_AUTH_TOKEN"] = self.token
            mounts = "".join(
                f"mount -t tmpfs -o mode=1777 cprec-hidden {shlex.quote(d)} && " for d in self.hidden if os.path.isdir(d)
            )
            # `unshare` execs sh, sh execs ray: the Popen pid stays the node's process group leader.
            args = ["unshare", "--mount", "--propagation", "private", "sh", "-c", f'{mounts}exec "$@"', "sh", *args]
        log = open(self.temp_root / f"node{index}.log", "w")
        self.logs.append(log)
        self.processes.append(
            subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        )

    def _wait_for_nodes(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        probe = (
            f"import ray; ray.init(address='{self.address}', logging_level='ERROR');"
            "print(sum(1 for n in ray.nodes() if n['Alive']))"
        )
        while time.monotonic() < deadline:
            for process in self.processes:
                if process.poll() is not None:
                    raise RuntimeError(f"a Ray node exited early; see {self.temp_root}/node*.log")
            result = subprocess.run(
                [sys.executable, "-c", probe],
                env=self.env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            alive = result.returncode == 0 and result.stdout.strip().splitlines()[-1:] == [
                str(len(self.nodes))
            ]
            if alive and (not self.dashboard or self._dashboard_up()):
                return
            time.sleep(2)
        raise TimeoutError(f"Ray cluster did not come up; see {self.temp_root}/node*.log")

    def _dashboard_up(self) -> bool:
        try:
            urllib.request.urlopen(f"{self.dashboard_url}/api/version", timeout=5)
            return True
        except urllib.error.HTTPError:
            return True  # answered (401 without a token): it is up
        except OSError:
            return False

    def __enter__(self) -> LocalRayCluster:
        self._start_node(0, self.nodes[0])
        time.sleep(3)
        for index, resources in enumerate(self.nodes[1:], start=1):
            self._start_node(index, resources)
        try:
            self._wait_for_nodes()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in reversed(self.processes):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.processes.clear()
        for log in self.logs:
            log.close()
        self.logs.clear()
