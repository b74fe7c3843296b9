"""init_ray: a local Ray on 127.0.0.1, with the dashboard when its packages are there and without it otherwise."""

from __future__ import annotations

import os

import ray

from cprec.core import raytools


def started_with(monkeypatch, dashboard_packages: bool, **kwargs) -> dict:
    calls: list[dict] = []
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **options: calls.append(options))
    monkeypatch.setattr(raytools, "dashboard_installed", lambda: dashboard_packages)
    raytools.init_ray(**kwargs)
    assert len(calls) == 1
    return calls[0]


def test_local_ray_binds_to_loopback_with_its_dashboard(monkeypatch):
    options = started_with(monkeypatch, True, num_cpus=2)
    assert options["include_dashboard"] is True and options["dashboard_host"] == "127.0.0.1"
    assert options["_node_ip_address"] == "127.0.0.1" and options["num_cpus"] == 2


def test_missing_dashboard_packages_start_ray_without_it(monkeypatch, caplog):
    options = started_with(monkeypatch, False, num_cpus=4, num_gpus=1)
    assert options["include_dashboard"] is False and options["num_gpus"] == 1
    assert "dashboard packages are not installed" in caplog.text


def test_the_dashboard_can_be_turned_off(monkeypatch):
    assert started_with(monkeypatch, True, dashboard=False)["include_dashboard"] is False


def test_a_local_ray_gets_the_single_machine_train_settings_unless_the_user_set_them(monkeypatch):
    monkeypatch.setenv("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "")  # recorded, so undone after the test
    monkeypatch.delenv("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER")
    monkeypatch.setenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "3")
    started_with(monkeypatch, True)
    assert os.environ["RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"] == "0"
    assert os.environ["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] == "3"


def test_joining_a_cluster_leaves_its_train_settings_alone(monkeypatch):
    for key in raytools.LOCAL_TRAIN_ENV:
        monkeypatch.setenv(key, "")
        monkeypatch.delenv(key)
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **options: None)
    monkeypatch.setattr(raytools, "quiet_ray_data", lambda: None)
    raytools.init_ray()
    assert not any(key in os.environ for key in raytools.LOCAL_TRAIN_ENV)
