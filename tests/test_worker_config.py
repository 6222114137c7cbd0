"""Worker settings that decide how fast work held by a dead worker comes back."""

from __future__ import annotations

import pytest
from kombu import Connection

from custsync.broker.redis_transport import TRANSPORT as REDIS_TRANSPORT
from custsync.embedded.server import EphemeralRedis
from custsync.runtime import Runtime
from custsync.settings import Settings
from custsync.worker import celery_config
from tests.conftest import WORKER_DB, db_url


@pytest.mark.parametrize("visibility_s", [4.0, 3600.0])
def test_a_worker_killed_mid_sweep_blocks_redelivery_briefly(visibility_s: float) -> None:
    settings = Settings(redis_url="redis://x", visibility_timeout_s=visibility_s)
    options = celery_config(Runtime(settings))["broker_transport_options"]
    # kombu's default sweep lock (300 s) would outlive a short visibility timeout many times.
    assert options["unacked_mutex_expire"] <= max(3 * visibility_s, 30)
    assert options["unacked_mutex_expire"] >= options["unacked_restore_interval"]
    assert options["unacked_restore_interval"] <= visibility_s


def test_plain_redis_brokers_use_the_client_reusing_transport() -> None:
    def transport(broker: str) -> object:
        config = celery_config(Runtime(Settings(redis_url="redis://x", broker_url=broker)))
        return config.get("broker_transport")

    assert transport("redis://127.0.0.1:6379/0") == REDIS_TRANSPORT
    assert transport("rediss://127.0.0.1:6380/0") is None  # TLS options: kombu's own
    assert transport("amqp://guest:guest@127.0.0.1:5672//") is None


def test_the_transport_reuses_one_client_until_the_pool_is_replaced(
    redis_server: EphemeralRedis,
) -> None:
    with Connection(db_url(redis_server, WORKER_DB), transport=REDIS_TRANSPORT) as conn:
        channel = conn.default_channel
        with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
            assert first is second
            assert first.ping()
        channel._disconnect_pools()  # what kombu does when the connection drops
        with channel.conn_or_acquire() as third:
            assert third is not first
            assert third.ping()
