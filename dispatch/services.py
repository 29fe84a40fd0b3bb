"""What a process needs to move messages, built once from the settings.

The web app and every worker build one ``Services``. RQ forks a work horse per job; the
horse inherits these objects and ``Database.after_fork`` drops the parent's pooled
connections (redis-py does the same for its pool on its own).
"""

from __future__ import annotations

import atexit
import threading
from dataclasses import dataclass, field
from datetime import timedelta

from redis import Redis

from dispatch.limits import RedisAbuseLimits
from dispatch.live import LivePublisher
from dispatch.pacer import Pacer, make_pacer, make_whatsapp_pacer
from dispatch.redis_conn import EmbeddedRedis, connect
from dispatch.reporter_keys import ReporterKeys
from dispatch.senders import OptOutGuard, make_sender
from dispatch.spool import Spool, StorageBreaker
from dispatch.volatile import RememberedLanguages, SeenMessages, VolatileStore, open_volatile
from rapidresponse.config import ConfigError, Settings
from rapidresponse.crypto import BlindIndex
from rapidresponse.db import Database
from rapidresponse.directory import AreaCatalog, AreaDirectory
from rapidresponse.private_dirs import tighten
from rapidresponse.shredding import ShreddingCipher, ShredKeys


@dataclass
class Services:
    settings: Settings
    database: Database
    redis_url: str
    redis: Redis
    cipher: ShreddingCipher  # DATA_KEYS, and the shred keys of what is erased on schedule
    index: BlindIndex
    sender: OptOutGuard
    limits: RedisAbuseLimits
    reporter_keys: ReporterKeys
    live: LivePublisher
    volatile: Redis  # keeps nothing on disk: reporter links, limits, replay guard
    seen_messages: SeenMessages
    languages: RememberedLanguages
    spool: Spool  # inbound texts the database could not take yet, sealed, on this host
    pacer: Pacer | None = None  # None: SEND_RATE=unlimited
    whatsapp_pacer: Pacer | None = None  # WHATSAPP_SEND_RATE, the WhatsApp sender's own
    areas: AreaCatalog = field(default_factory=AreaCatalog, repr=False)
    # Whether the webhook should wait for the database or spool at once (web/sms.py).
    storage: StorageBreaker = field(default_factory=StorageBreaker, repr=False)
    embedded_redis: EmbeddedRedis | None = field(default=None, repr=False)
    volatile_store: VolatileStore | None = field(default=None, repr=False)

    @classmethod
    def build(cls, settings: Settings) -> Services:
        """Connect to the database and Redis (starting the embedded one if needed).

        Raises:
            ConfigError: the settings hold no keys (a sealed deployment's process must
                get its keyring first: ``dispatch.key_custody``).
        """
        if not settings.holds_keys:
            raise ConfigError("sealed: this process has no keys yet (rapidresponse keys unseal)")
        for folder in (settings.instance_path, settings.shred_keys_path, settings.spool_path):
            tighten(folder)  # made earlier with a looser mode, or by hand
        embedded = None
        redis_url = settings.redis_url
        if redis_url is None:
            embedded = EmbeddedRedis(settings.instance_path / "redis")
            redis_url = embedded.start()
            if embedded.owned:
                atexit.register(embedded.stop)
        store = open_volatile(settings, settings.redis_url)
        if store.embedded is not None:
            atexit.register(store.embedded.stop)
        volatile = connect(store.url)
        window = timedelta(minutes=settings.reporter_window_minutes)
        reporter_keys = ReporterKeys(
            volatile, window, timedelta(minutes=settings.report_follow_up_minutes)
        )
        link_seconds = int(reporter_keys.lifetime.total_seconds())
        database = Database(settings.database_url)
        cipher = ShreddingCipher(
            settings.data_keys, ShredKeys(settings.shred_keys_path, settings.shred_wrap_key)
        )
        index = BlindIndex(settings.index_key)
        redis = connect(redis_url)
        pacer = make_pacer(redis, settings)
        return cls(
            settings=settings,
            database=database,
            redis_url=redis_url,
            redis=redis,
            cipher=cipher,
            index=index,
            sender=make_sender(settings, database, cipher, index, pacer, redis),
            limits=RedisAbuseLimits(volatile, settings.inbound_limit, settings.confirmation_limit),
            reporter_keys=reporter_keys,
            live=LivePublisher(redis_url),
            volatile=volatile,
            seen_messages=SeenMessages(volatile, link_seconds),
            languages=RememberedLanguages(volatile, link_seconds),
            spool=Spool(settings.spool_path, cipher),
            pacer=pacer,
            whatsapp_pacer=make_whatsapp_pacer(redis, settings),
            embedded_redis=embedded,
            volatile_store=store,
        )

    def area_directory(self) -> AreaDirectory:
        """The process's area directory, rebuilt first if the areas changed. Call it
        before opening a write transaction: a rebuild parses every outline."""
        with self.database.reading() as session:
            return self.areas.refresh(session)

    def close(self) -> None:
        self.live.close()
        self.redis.close()
        self.volatile.close()
        self.database.dispose()
        if self.embedded_redis is not None:
            self.embedded_redis.stop()
        if self.volatile_store is not None:
            self.volatile_store.stop()


_current: Services | None = None
_lock = threading.Lock()


def install(services: Services | None) -> None:
    """Make ``services`` the ones jobs in this process use (tests install their own)."""
    global _current
    with _lock:
        _current = services


def current() -> Services:
    """The process's services, built from the environment on first use."""
    global _current
    with _lock:
        if _current is None:
            _current = Services.build(Settings.from_env())
        return _current
