"""``rapidresponse worker``: an RQ worker over our queues, in priority order, with the scheduler."""

from __future__ import annotations

from rq import Worker
from rq.serializers import JSONSerializer

from dispatch.housekeeping import periodic_tasks
from dispatch.housekeeping import start as start_housekeeping
from dispatch.queues import all_queues
from dispatch.services import Services, install


def run_worker(
    services: Services, *, burst: bool = False, with_scheduler: bool = True, name: str | None = None
) -> bool:
    """Work the queues until stopped (or until empty with ``burst``).

    The scheduler runs jobs enqueued for later (``enqueue_in``: dispatch timeouts,
    verification deadlines, retries with backoff). Any number of workers may run it;
    RQ makes sure only one schedules at a time.

    Returns:
        Whether any job was processed.
    """
    install(services)  # the forked work horses inherit these
    housekeeping = (
        None if burst else start_housekeeping(services.redis, periodic_tasks(services.settings))
    )
    worker = Worker(
        all_queues(services.redis), connection=services.redis, name=name, serializer=JSONSerializer
    )
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
