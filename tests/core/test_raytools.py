"""init_ray: a local Ray on 127.0.0.1 with the token on and no metrics exporter, with the dashboard when
its packages are there and without it otherwise; what it exposes measured in a real Ray (docs/network.md)."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import stat
import subprocess
import sys

import pytest
import ray
import ray._raylet

from cprec.core import raytools

SET_BY_INIT_RAY = (*raytools.LOCAL_TRAIN_ENV, *raytools.LOCAL_NETWORK_ENV, raytools.CLUSTER_ENV)


@pytest.fixture
def env(monkeypatch, tmp_path):
    """Every variable init_ray sets is put back afterwards, and its token file goes to a home of its own."""
    for key in (*SET_BY_INIT_RAY, "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.setenv(key, "")  # recorded, so undone after the test
        monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(tmp_path))
    # this session's RayConfig stays as it is (the Ray of other tests may be running in this process)
    monkeypatch.setattr(ray._raylet, "Config", type("Config", (), {"initialize": staticmethod(lambda _: None)}))
    return monkeypatch


def started_with(monkeypatch, dashboard_packages: bool, **kwargs) -> dict:
    from ray._private import ray_constants

    calls: list[dict] = []
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(
        ray, "init", lambda **options: calls.append({**options, "cluster": ray_constants.ENABLE_RAY_CLUSTER})
    )
    monkeypatch.setattr(raytools, "dashboard_installed", lambda: dashboard_packages)
    raytools.init_ray(**kwargs)
    assert len(calls) == 1
    return calls[0]


def test_local_ray_binds_to_loopback_with_its_dashboard(env):
    options = started_with(env, True, num_cpus=2)
    assert options["include_dashboard"] is True and options["dashboard_host"] == "127.0.0.1"
    assert options["_node_ip_address"] == "127.0.0.1" and options["num_cpus"] == 2


def test_missing_dashboard_packages_start_ray_without_it(env, caplog):
    options = started_with(env, False, num_cpus=4, num_gpus=1)
    assert options["include_dashboard"] is False and options["num_gpus"] == 1
    assert "dashboard packages are not installed" in caplog.text


def test_the_dashboard_can_be_turned_off(env):
    assert started_with(env, True, dashboard=False)["include_dashboard"] is False


def test_a_local_ray_gets_the_single_machine_train_settings_unless_the_user_set_them(env):
    env.setenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "3")
    started_with(env, True)
    assert os.environ["RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"] == "0"
    assert os.environ["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] == "3"


def test_a_local_ray_keeps_ray_to_one_machine_only_while_it_starts(env):
    from ray._private import ray_constants

    before = ray_constants.ENABLE_RAY_CLUSTER
    assert started_with(env, True)["cluster"] is False  # else ray.init swaps 127.0.0.1 for the host's address
    assert ray_constants.ENABLE_RAY_CLUSTER is before


def test_a_user_can_let_other_machines_join_a_local_ray(env):
    env.setenv(raytools.CLUSTER_ENV, "1")
    options = started_with(env, True)
    assert options["_node_ip_address"] is None and options["cluster"] is True


def test_a_local_ray_turns_the_token_on_and_metrics_off_unless_the_user_set_them(env, tmp_path):
    started_with(env, True)
    assert os.environ["RAY_AUTH_MODE"] == "token" and os.environ["RAY_enable_metrics_collection"] == "0"
    token = tmp_path / ".ray" / "auth_token"
    assert len(token.read_text()) == 64 and stat.S_IMODE(token.stat().st_mode) == 0o600

    env.setenv("RAY_AUTH_MODE", "disabled")
    env.setenv("RAY_enable_metrics_collection", "1")
    token.unlink()
    started_with(env, True)
    assert os.environ["RAY_AUTH_MODE"] == "disabled" and os.environ["RAY_enable_metrics_collection"] == "1"
    assert not token.exists()


def test_a_token_the_user_has_is_left_alone(env, tmp_path):
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("mine")
    started_with(env, True)
    assert (tmp_path / ".ray" / "auth_token").read_text() == "mine"
    env.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "elsewhere"))
    (tmp_path / ".ray" / "auth_token").unlink()
    started_with(env, True)
    assert not (tmp_path / ".ray" / "auth_token").exists()


def test_joining_a_cluster_leaves_its_train_and_network_settings_alone(env):
    env.setenv("RAY_ADDRESS", "ray://head:10001")
    env.setattr(ray, "is_initialized", lambda: False)
    env.setattr(ray, "init", lambda **options: None)
    env.setattr(raytools, "quiet_ray_data", lambda: None)
    raytools.init_ray()
    assert not any(key in os.environ for key in SET_BY_INIT_RAY)


# Starts Ray through init_ray, runs one task (so a worker listens too), then lists the TCP listeners of
# this process and its descendants (every Ray process it started) once the set stops changing.
PROBE = """
import json, os, time, urllib.error, urllib.request
import grpc, psutil, ray
from cprec.core.raytools import init_ray

init_ray(num_cpus=1)
ray.get(ray.remote(lambda: 1).remote())

def listeners():
    found = set()
    for proc in [psutil.Process()] + psutil.Process().children(recursive=True):
        try:
            name = proc.name()
            found |= {(name, c.laddr.ip, c.laddr.port) for c in proc.net_connections("tcp") if c.status == "LISTEN"}
        except psutil.Error:
            pass
    return found

seen, since, deadline = listeners(), time.time(), time.time() + 30
while time.time() - since < 2 and time.time() < deadline:
    time.sleep(0.5)
    now = listeners()
    if now != seen:
        seen, since = now, time.time()

def dashboard(token=None):
    url = "http://" + ray._private.worker._global_node.address_info["webui_url"] + "/api/jobs/"
    headers = {"Authorization": "Bearer " + token} if token else {}
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10).status
    except urllib.error.HTTPError as error:
        return error.code

token = open(os.path.expanduser("~/.ray/auth_token")).read().strip()
with grpc.insecure_channel(ray._private.worker._global_node.gcs_address) as channel:
    try:  # a GCS call without the token
        channel.unary_unary("/ray.rpc.NodeInfoGcsService/GetAllNodeInfo")(b"", timeout=10)
        gcs = "OK"
    except grpc.RpcError as error:
        gcs = error.code().name
print(json.dumps({
    "listeners": sorted(seen),
    "metrics_export_port": ray.nodes()[0]["MetricsExportPort"],
    "gcs_without_token": gcs,
    "dashboard": [dashboard(), dashboard(token)],
    "token_mode": oct(os.stat(os.path.expanduser("~/.ray/auth_token")).st_mode & 0o777),
}))
ray.shutdown()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def where(ip: str) -> str:
    address = ipaddress.ip_address(ip)
    address = getattr(address, "ipv4_mapped", None) or address
    return "loopback" if address.is_loopback else "all interfaces" if address.is_unspecified else "host address"


def test_a_local_ray_listens_on_loopback_only_wants_the_token_and_exports_no_metrics(tmp_path):
    ours = (*SET_BY_INIT_RAY, "RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
    env = {key: value for key, value in os.environ.items() if key not in ours}
    # a home of its own for the token file; the dashboard's and autoscaler's fixed metrics ports moved off
    # 44227/44217, which another Ray on this machine may hold (this one's would then not listen at all)
    env |= {
        "HOME": str(tmp_path),
        "DASHBOARD_METRIC_PORT": str(free_port()),
        "AUTOSCALER_METRIC_PORT": str(free_port()),
    }
    result = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-4000:]
    probe = json.loads(result.stdout.strip().splitlines()[-1])

    listeners = [(name, ip, port, where(ip)) for name, ip, port in probe["listeners"]]
    names = {name for name, *_ in listeners}
    assert {"gcs_server", "raylet"} <= names and any("DashboardAgent" in name for name in names), listeners
    assert all(place == "loopback" for *_, place in listeners), [x for x in listeners if x[3] != "loopback"]
    assert probe["metrics_export_port"] == -1  # Ray's mark for "no exporter"
    assert probe["gcs_without_token"] == "UNAUTHENTICATED"
    assert probe["dashboard"] == [401, 200]
    assert probe["token_mode"] == "0o600"
