"""The volatile Redis: what links a reporter's texts never reaches a disk."""

from __future__ import annotations

import os
import signal
from dataclasses import replace
from pathlib import Path

import pytest

from dispatch.redis_conn import EmbeddedRedis, RedisUnavailable, connect
from dispatch.volatile import keeps_data_on_disk, open_volatile, redis_for_children
from rapidresponse.config import Settings

MARKER = b"reporter-link-5035550142"


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("how", ["stopped", "killed"])
def test_the_embedded_volatile_redis_leaves_nothing_on_disk(tmp_path: Path, how: str) -> None:
    server = EmbeddedRedis(tmp_path / "volatile", persistent=False)
    with connect(server.start()) as client:
        assert keeps_data_on_disk(client) is False
        client.set(b"rr:reporter-key:1", MARKER)
        client.set(b"rr:seen:x", MARKER, ex=60)
        if how == "killed":
            process = server._process
            assert process is not None
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
    server.stop()
    left = files_under(tmp_path / "volatile")
    assert set(left) <= {"redis.log"}  # no appendonly file, no dump.rdb
    assert all(MARKER not in content for content in left.values())


def test_the_transport_redis_does_keep_an_append_only_file(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis")
    with connect(server.start()) as client:
        assert keeps_data_on_disk(client) is True
    server.stop()


def persisting(tmp_path: Path) -> tuple[EmbeddedRedis, str]:
    server = EmbeddedRedis(tmp_path / "durable")
    return server, server.start()


def test_production_refuses_a_redis_that_persists_for_reporter_links(
    settings: Settings, tmp_path: Path
) -> None:
    server, url = persisting(tmp_path)
    try:
        production = replace(settings, env="production", redis_url=url, volatile_redis_url=None)
        with pytest.raises(RedisUnavailable, match="VOLATILE_REDIS_URL must name a Redis"):
            open_volatile(production, url)
        named = replace(production, volatile_redis_url=url)
        with pytest.raises(RedisUnavailable, match="keeps nothing on disk"):
            open_volatile(named, url)
    finally:
        server.stop()


def test_development_starts_a_volatile_redis_beside_a_persisting_one(
    settings: Settings, tmp_path: Path
) -> None:
    server, url = persisting(tmp_path)
    development = replace(
        settings, redis_url=url, volatile_redis_url=None, instance_path=tmp_path / "instance"
    )
    store = open_volatile(development, url)
    try:
        assert store.url != url and store.embedded is not None
        with connect(store.url) as client:
            assert keeps_data_on_disk(client) is False
    finally:
        store.stop()
        server.stop()


def test_a_redis_that_keeps_nothing_on_disk_serves_as_both(
    settings: Settings, volatile_redis_url: str
) -> None:
    production = replace(
        settings, env="production", redis_url=volatile_redis_url, volatile_redis_url=None
    )
    assert open_volatile(production, volatile_redis_url).url == volatile_redis_url


def test_commands_start_both_servers_for_their_children(settings: Settings, tmp_path: Path) -> None:
    embedded = replace(
        settings, redis_url=None, volatile_redis_url=None, instance_path=tmp_path / "instance"
    )
    running = redis_for_children(embedded)
    try:
        assert set(running.environment) == {"REDIS_URL", "VOLATILE_REDIS_URL"}
        with connect(running.environment["REDIS_URL"]) as durable:
            assert keeps_data_on_disk(durable) is True
        with connect(running.environment["VOLATILE_REDIS_URL"]) as volatile:
            assert keeps_data_on_disk(volatile) is False
    finally:
        running.stop()
    assert not (tmp_path / "instance" / "redis-volatile" / "redis.sock").exists()
