"""``rapidresponse worker``: an RQ worker over our queues, in priority order, with the scheduler."""

from __future__ import annotations

import contextlib
import logging
import os
import signal

from rq import Worker
from rq.serializers import JSONSerializer

from dispatch.housekeeping import periodic_tasks
from dispatch.housekeeping import start as start_housekeeping
from dispatch.key_custody import KeyHolder
from dispatch.queues import all_queues
from dispatch.services import Services, install
from rapidresponse.keyring import Keyring

EXIT_SEALED = 75  # EX_TEMPFAIL: the supervisor starts it again, and it waits for the keys


def run_worker(
    services: Services,
    *,
    burst: bool = False,
    with_scheduler: bool = True,
    name: str | None = None,
    keyring: Keyring | None = None,
) -> bool:
    """Work the queues until stopped (or until empty with ``burst``).

    The scheduler runs jobs enqueued for later (``enqueue_in``: dispatch timeouts,
    verification deadlines, retries with backoff). Any number of workers may run it;
    RQ makes sure only one schedules at a time.

    Returns:
        Whether any job was processed.

    With a sealed deployment's ``keyring``, the worker also holds it for processes that
    ask, and a seal kills the job it runs and ends it (``exit_sealed``).
    """
    install(services)  # the forked work horses inherit these
    housekeeping = (
        None if burst else start_housekeeping(services.redis, periodic_tasks(services.settings))
    )
    worker = Worker(
        all_queues(services.redis), connection=services.redis, name=name, serializer=JSONSerializer
    )
    if keyring is not None:
        KeyHolder(services.redis, keyring, on_seal=lambda: exit_sealed(worker)).start()
    try:
        return bool(
            worker.work(
                burst=burst,
                with_scheduler=with_scheduler,
                logging_level=services.settings.log_level,
            )
        )
    finally:
        if housekeeping is not None:
            housekeeping.set()


def exit_sealed(worker: Worker) -> None:
    """Let go of the keys now: they live in this process and in the job's work horse (a
    fork of it), so both end. A message being sent is like one cut by kill -9: its lease
    runs out and the reaper decides, once unsealed, whether to send it again."""
    horse = worker.horse_pid
    if horse:
        with contextlib.suppress(ProcessLookupError):
            os.kill(horse, signal.SIGKILL)
    logging.shutdown()
    os._exit(EXIT_SEALED)
