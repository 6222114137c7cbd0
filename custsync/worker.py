"""The worker: the retry poller beside Celery's consumer, logging, observability, and the
task registered. ``celery -A custsync.worker worker`` and ``custsync worker`` load this."""

from __future__ import annotations

import logging
from typing import Any

from celery import __version__ as celery_version
from celery import bootsteps, signals
from celery.apps import worker as celery_worker_program
from celery.utils.log import mlevel

import custsync.tasks  # noqa: F401  registers the task on the app
from custsync import batch, observability
from custsync.celery_app import app, celery_config, producer_app, runtime_of
from custsync.logs import configure_worker_logging, say_as_json, uses_json
from custsync.observability.probes import Liveness, Readiness
from custsync.poller import RetryPoller
from custsync.runtime import get_runtime
from custsync.shutdown import arm_watchdog, deadline_s

__all__ = ["app", "celery_config", "producer_app", "runtime_of"]

log = logging.getLogger("custsync.worker")

# /healthz: told about the pool and the poller once they run (RetryPollerStep).
_liveness = Liveness()


class RetryPollerStep(bootsteps.StartStopStep):
    """Runs the retry-set poller beside the consumer in every worker."""

    requires = {"celery.worker.components:Pool"}

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.poller: Any = None

    def start(self, worker: Any) -> None:

        self.poller = RetryPoller(get_runtime(), app)
        self.poller.start()
        _liveness.watch(worker.pool, self.poller)

    def stop(self, worker: Any) -> None:
        if self.poller is not None:
            self.poller.stop()


app.steps["worker"].add(RetryPollerStep)


def _configure_logging(celery_level: Any) -> None:
    s = get_runtime().settings
    configure_worker_logging(s.log_format, s.log_level, mlevel(celery_level or logging.WARNING))


@signals.celeryd_init.connect
def _log_before_celery_speaks(instance: Any = None, options: Any = None, **_: Any) -> None:
    """Celery warns (e.g. about running as root) before it sets up logging: ours comes
    first. In JSON mode its banner, plain text on stdout, is one record instead."""
    _configure_logging((options or {}).get("loglevel"))
    if uses_json(get_runtime().settings.log_format) and instance is not None:
        instance.quiet = True  # no banner; _announce logs what it would have said
        celery_worker_program.safe_say = say_as_json  # shutdown notices: JSON on stderr


@signals.setup_logging.connect
def _setup_logging(loglevel: Any = None, **_: Any) -> None:
    """Connected, this makes Celery leave logging to us: one handler for every record."""
    _configure_logging(loglevel)


@signals.celeryd_after_setup.connect
def _announce(sender: Any = None, instance: Any = None, **_: Any) -> None:
    if instance is None or not uses_json(get_runtime().settings.log_format):
        return  # Celery prints its banner
    pool = instance.pool_cls if isinstance(instance.pool_cls, str) else instance.pool_cls.__module__
    log.info(
        "%s starting: Celery %s, %s pool of %s, queues %s, broker %s",
        sender,
        celery_version,
        pool.rsplit(".", 1)[-1],
        instance.concurrency,
        ",".join(sorted(instance.app.amqp.queues)),
        instance.app.connection_for_write().as_uri(),  # the password masked
    )


@signals.worker_init.connect
def _worker_init(sender: Any = None, **_: Any) -> None:

    rt = get_runtime()
    if rt.settings.metrics_port and "prefork" in str(getattr(sender, "pool_cls", "")).lower():
        log.warning(
            "metrics: the prefork pool counts in child processes this endpoint cannot see;"
            " use the threads pool (the default)"
        )
    worker_app = getattr(sender, "app", None) or app
    batch.use_threads(getattr(sender, "concurrency", None) or rt.settings.concurrency)
    observability.setup(rt, liveness=_liveness, readiness=Readiness(rt, worker_app))


@signals.worker_shutting_down.connect
def _arm_shutdown_watchdog(exitcode: Any = None, **_: Any) -> None:
    """Whatever Celery is stuck on, the process ends within its grace period."""
    batch.stopping.set()  # batches finish the calls in flight and give the rest back
    rt = get_runtime()
    soft = float(app.conf.worker_soft_shutdown_timeout or 0)
    arm_watchdog(deadline_s(soft, rt.settings.redis_timeout_s), int(exitcode or 0))
