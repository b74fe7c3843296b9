"""Starting or joining Ray the same way in every stage, with quiet logs."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from pathlib import Path

log = logging.getLogger("cprec")

# Ray Train settings for a Ray this process starts on one machine (a user's own value wins): a short
# training run in a fresh Ray took ~4 s less of ~20 s with them (docs/benchmarks.md).
LOCAL_TRAIN_ENV = {
    # no spot nodes to watch on one machine; the watcher is one more actor process per run
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    # the controller sees a finished run within 0.5 s instead of 2 s
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5",
}

# What a Ray this process starts on one machine lets in (a user's own value wins; docs/network.md).
LOCAL_NETWORK_ENV = {
    # said outright, not left to the default of whichever Ray release is installed
    "RAY_AUTH_MODE": "token",
    # the dashboard agent's Prometheus exporter answers without the token; 1 turns it back on
    "RAY_enable_metrics_collection": "0",
}

# Ray's switch between a node other machines can join (its Linux default: the node takes the host's
# address) and a single machine (macOS and Windows: 127.0.0.1). Unset, a local Ray is the latter.
CLUSTER_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def init_ray(num_cpus: int | None = None, num_gpus: int | None = None, dashboard: bool = True) -> None:
    """Joins the cluster named by RAY_ADDRESS (as under `ray job submit`), else starts a local one.

    A local Ray listens on 127.0.0.1 only, wants the token on every Ray connection and exports no
    metrics: docs/network.md lists what listens where. The dashboard is on because Ray Train's
    placement-group cleaner and the state API need it; where its packages are missing (a minimal `ray`
    wheel on an offline machine) Ray starts without it, and only those look-ups are lost, with a warning.
    """
    import ray
    from ray._raylet import Config

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    common = dict(logging_level=logging.WARNING, log_to_driver=True, configure_logging=True)
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"], **common)
        quiet_ray_data()
        return
    for key, value in {**LOCAL_TRAIN_ENV, **LOCAL_NETWORK_ENV}.items():  # Ray's processes inherit them
        os.environ.setdefault(key, value)
    Config.initialize("")  # this process's RayConfig read the environment when ray was imported
    make_token()
    if dashboard and not dashboard_installed():
        log.warning("Ray's dashboard packages are not installed: starting Ray without the dashboard")
        dashboard = False
    with node_address() as address:
        ray.init(
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            include_dashboard=dashboard,
            dashboard_host="127.0.0.1",
            _node_ip_address=address,
            **common,
        )
    quiet_ray_data()


@contextlib.contextmanager
def node_address():
    """The node address for ray.init: 127.0.0.1, or None (Ray's choice) where CLUSTER_ENV is 1.

    Ray's gRPC servers, agents and metrics servers stay on loopback only when the node address is
    127.0.0.1, yet ray.init replaces 127.0.0.1 by the host's address unless Ray believes this machine
    cannot join clusters, a belief it reads from CLUSTER_ENV once, at import; so that belief is set
    here, for the length of ray.init only.
    """
    from ray._private import ray_constants

    saved = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = cluster = ray_constants.env_bool(CLUSTER_ENV, False)
    try:
        yield None if cluster else "127.0.0.1"
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved


def make_token() -> None:
    """Writes a new token to ~/.ray/auth_token, the last place Ray looks, when the token is on and set
    nowhere. Ray would write the same file, readable by every user of the machine (its mode follows
    the umask); with Ray on 127.0.0.1 the token is what keeps those users out, so only its owner reads it.
    """
    if os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
        return
    if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return
    path = Path.home() / ".ray" / "auth_token"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # the user's, or Ray's from an earlier run: theirs to keep
        return
    with os.fdopen(fd, "w") as file:
        file.write(secrets.token_hex(32))


def quiet_ray_data() -> None:
    """Ray Data's per-operator INFO lines drown a run's own progress; progress bars stay as configured."""
    logging.getLogger("ray.data").setLevel(logging.WARNING)


def dashboard_installed() -> bool:
    """Whether `ray[default]`'s dashboard packages (aiohttp_cors, opencensus, ...) can be imported."""
    try:
        import ray.dashboard.optional_deps  # noqa: F401
    except ImportError:
        return False
    return True


def limit_torch_threads(cpus: float) -> int:
    """Caps torch's CPU threads in a Ray worker or actor at the CPUs it reserved (at least one).

    Ray leaves OMP_NUM_THREADS unset for Ray Train's workers and for actors with a fraction of a CPU,
    so torch starts a thread per core of the machine in each of them: two workers on two cores then
    run four threads that wait on each other. One thread each made the default preset's steps ~25%
    faster on 2 cores (docs/benchmarks.md). Returns the thread count set.
    """
    import math

    import torch

    threads = max(1, math.floor(cpus + 1e-9))
    torch.set_num_threads(threads)
    return threads
