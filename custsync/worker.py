"""The worker: the retry poller beside Celery's consumer, logging, observability, and the
task registered. ``celery -A custsync.worker worker`` and ``custsync worker`` load this."""

from __future__ import annotations

import logging
from typing import Any

from celery import bootsteps, signals

import custsync.tasks  # noqa: F401  registers the task on the app
from custsync import observability
from custsync.celery_app import app, celery_config, producer_app, runtime_of
from custsync.logs import configure_logging
from custsync.observability import ScrubFilter
from custsync.poller import RetryPoller
from custsync.runtime import get_runtime
from custsync.shutdown import arm_watchdog, deadline_s

__all__ = ["app", "celery_config", "producer_app", "runtime_of"]


class RetryPollerStep(bootsteps.StartStopStep):
    """Runs the retry-set poller beside the consumer in every worker."""

    requires = {"celery.worker.components:Pool"}

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.poller: Any = None

    def start(self, worker: Any) -> None:

        self.poller = RetryPoller(get_runtime(), app)
        self.poller.start()

    def stop(self, worker: Any) -> None:
        if self.poller is not None:
            self.poller.stop()


app.steps["worker"].add(RetryPollerStep)


@signals.worker_init.connect
def _worker_init(sender: Any = None, **_: Any) -> None:

    rt = get_runtime()
    configure_logging(rt.settings.log_format, rt.settings.log_level)
    if rt.settings.metrics_port and "prefork" in str(getattr(sender, "pool_cls", "")).lower():
        logging.getLogger("custsync.worker").warning(
            "metrics: the prefork pool counts in child processes this endpoint cannot see;"
            " use the threads pool (the default)"
        )
    observability.setup(rt)


@signals.worker_shutting_down.connect
def _arm_shutdown_watchdog(exitcode: Any = None, **_: Any) -> None:
    """Whatever Celery is stuck on, the process ends within its grace period."""
    rt = get_runtime()
    soft = float(app.conf.worker_soft_shutdown_timeout or 0)
    arm_watchdog(deadline_s(soft, rt.settings.redis_timeout_s), int(exitcode or 0))


@signals.after_setup_logger.connect
def _scrub_celery_logs(logger: Any = None, **_: Any) -> None:

    for handler in getattr(logger, "handlers", []):  # Celery's own lines: task errors, warnings
        handler.addFilter(ScrubFilter())
