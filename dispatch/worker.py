"""``rapidresponse worker``: an RQ worker over our queues, in priority order, with the scheduler."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from typing import Any

from rq import Queue, Worker
from rq.job import Job
from rq.serializers import JSONSerializer

from dispatch.housekeeping import periodic_tasks
from dispatch.housekeeping import start as start_housekeeping
from dispatch.key_custody import KeyHolder, wait_for_intake
from dispatch.processes import kill_descendants
from dispatch.queues import all_queues
from dispatch.services import Services, install
from rapidresponse.keyring import Keyring

EXIT_SEALED = 75  # EX_TEMPFAIL: the supervisor starts it again, and it waits for the keys
LISTENER_WAKES_EVERY = 1.0  # seconds: how long stopping the command listener can take


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
    worker = SealableWorker(
        all_queues(services.redis), connection=services.redis, name=name, serializer=JSONSerializer
    )
    if keyring is not None:
        KeyHolder(services.redis, keyring, on_seal=lambda: exit_sealed(worker)).start()
        wait_for_intake(services.redis)  # STOPs texted while sealed first, then any send
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


class SealableWorker(Worker):
    """RQ's worker, whose forks a seal can stop: no work horse starts once sealing began."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fork_lock = threading.Lock()

    def fork_work_horse(self, job: Job, queue: Queue) -> None:
        with self.fork_lock:
            super().fork_work_horse(job, queue)

    def subscribe(self) -> None:
        """RQ's, with the listener waking once a second instead of once a minute.

        RQ stops its command listener by unsubscribing, counting on the reply to wake it.
        With redis-py 8, a listener that loops once more before it is told to stop finds
        itself unsubscribed and waits ``sleep_time`` for a subscription, and stopping it
        waits for that: a worker took up to 60 s to exit (seen in one burst run in two),
        past compose's 10 s before SIGKILL.
        """
        self.log.info("Worker %s: subscribing to channel %s", self.name, self.pubsub_channel_name)
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        # RQ declares the attribute as None (unannotated); its own code assigns this.
        self.pubsub_thread = self.pubsub.run_in_thread(  # type: ignore[assignment]
            sleep_time=LISTENER_WAKES_EVERY,
            daemon=True,
            exception_handler=self._pubsub_exception_handler,
        )


def exit_sealed(worker: SealableWorker) -> None:
    """Let go of the keys now. They live in this process and in its forks (the job's work
    horse, RQ's scheduler), so all of them end: no new fork from here on, every
    descendant killed, then this process. A message being sent is like one cut by
    kill -9: its lease runs out and the reaper decides, once unsealed, whether to send it
    again."""
    worker.fork_lock.acquire()  # held until the exit: the main loop forks nothing more
    horse = worker.horse_pid
    if horse:  # in a process group of its own, so not always found below
        with contextlib.suppress(ProcessLookupError):
            os.kill(horse, signal.SIGKILL)
    kill_descendants()
    logging.shutdown()
    os._exit(EXIT_SEALED)
