"""``make bench``: baseline figures for the foundation.

1. Field sealing and blind indexing per phone number (the cost every lookup and every
   recipient pays).
2. The per-delivery job path end to end: N deliveries enqueued, one real
   ``rapidresponse worker --burst`` process sending them through the simulator backend
   (SQLite + embedded Redis), with the worker's CPU time per message.

Run on a noisy 2-core machine: compare figures within one run, as ratios.
"""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dispatch.broadcast import enqueue_batches
from dispatch.services import Services
from rapidresponse.config import Settings, new_key
from rapidresponse.crypto import BlindIndex, FieldCipher, Purpose
from rapidresponse.db import upgrade
from rapidresponse.models import Alert, AlertStatus, Delivery, DeliveryStatus, Subscriber
from rapidresponse.sms import segment

DELIVERIES = int(os.environ.get("BENCH_DELIVERIES", "500"))


def bench_crypto(rounds: int = 20_000) -> None:
    cipher, index = FieldCipher([os.urandom(32)]), BlindIndex(os.urandom(32))
    started = time.perf_counter()
    for n in range(rounds):
        number = f"+1503555{n % 10_000:04d}"
        cipher.decrypt(cipher.encrypt(number, "p"), "p")
        index.digest(number, "phone")
    per = (time.perf_counter() - started) / rounds * 1e6
    print(f"seal + open + index one number: {per:.1f} µs")
    started = time.perf_counter()
    for _ in range(rounds):
        segment("ALERTA Cully: agentes confirmados cerca de NE 42nd. Responda DERECHOS.")
    print(
        f"segment count of one alert:     {(time.perf_counter() - started) / rounds * 1e6:.1f} µs"
    )


def prepare(services: Services, count: int) -> tuple[int, list[str]]:
    with services.database.session() as session:
        alert = Alert(status=AlertStatus.APPROVED, texts={"en": "Bench alert text."})
        session.add(alert)
        session.flush()
        people = [
            Subscriber(
                phone_sealed=services.cipher.encrypt(f"+1503555{n:04d}", Purpose.SUBSCRIBER_PHONE),
                phone_index=services.index.digest(f"+1503555{n:04d}", "phone"),
            )
            for n in range(count)
        ]
        session.add_all(people)
        session.flush()
        rows = [Delivery(alert_id=alert.id, subscriber_id=p.id) for p in people]
        session.add_all(rows)
        session.flush()
        return alert.id, [row.id for row in rows]


def bench_job_path(count: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        env = {
            "INSTANCE_PATH": str(Path(folder) / "instance"),
            "DATA_KEYS": new_key(),
            "INDEX_KEY": new_key(),
            "SECRET_KEY": "b" * 40,
            "SMS_BACKEND": "simulator",
            "PATH": os.environ["PATH"],
            "LOG_LEVEL": "warning",
        }
        settings = Settings.from_env(env)
        services = Services.build(settings)
        try:
            upgrade(settings.database_url)
            alert_id, _ = prepare(services, count)
            started = time.perf_counter()
            enqueue_batches(services.redis, alert_id, [0], timeout=600)
            enqueued = time.perf_counter() - started
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "web.cli", "worker", "--burst", "--no-scheduler"],
                env={**env, "REDIS_URL": services.redis_url},
                check=True,
            )
            wall = time.perf_counter() - started
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            with services.database.session() as session:
                sent = session.query(Delivery).filter_by(status=DeliveryStatus.SENT).count()
        finally:
            services.close()
    print(f"enqueue {count} jobs:             {enqueued / count * 1e6:.0f} µs per job")
    print(
        f"one worker, one job per message: {count / wall:.0f} messages/s, "
        f"{cpu / count * 1e3:.2f} ms worker CPU per message ({sent}/{count} sent)"
    )


def main() -> None:
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {platform.system()} {platform.release()}"
    )
    bench_crypto()
    bench_job_path(DELIVERIES)


if __name__ == "__main__":
    main()
