"""Worker settings that decide how fast work held by a dead worker comes back."""

from __future__ import annotations

import pytest

from custsync.runtime import Runtime
from custsync.settings import Settings
from custsync.worker import celery_config


@pytest.mark.parametrize("visibility_s", [4.0, 3600.0])
def test_a_worker_killed_mid_sweep_blocks_redelivery_briefly(visibility_s: float) -> None:
    settings = Settings(redis_url="redis://x", visibility_timeout_s=visibility_s)
    options = celery_config(Runtime(settings))["broker_transport_options"]
    # kombu's default sweep lock (300 s) would outlive a short visibility timeout many times.
    assert options["unacked_mutex_expire"] <= max(3 * visibility_s, 30)
    assert options["unacked_mutex_expire"] >= options["unacked_restore_interval"]
    assert options["unacked_restore_interval"] <= visibility_s
