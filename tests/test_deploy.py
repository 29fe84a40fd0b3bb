"""docker-compose.yml is what the README says production runs, and .ci/run tests both ways."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    parsed: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return parsed


def readme_commands() -> set[str]:
    """Every line of the README's shell blocks, normalised."""
    lines, in_shell = set(), False
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith("```"):
            in_shell = line.strip() in ("```sh", "```bash", "```console")
            continue
        if in_shell and line.strip() and not line.lstrip().startswith("#"):
            lines.add(" ".join(shlex.split(line.strip().removeprefix("$ "))))
    return lines


def test_compose_runs_postgres_redis_web_and_worker(compose: dict[str, Any]) -> None:
    assert {"postgres", "redis", "web", "worker"} <= set(compose["services"])


def test_redis_keeps_an_append_only_file_synced_every_second(compose: dict[str, Any]) -> None:
    command = " ".join(compose["services"]["redis"]["command"])
    assert "--appendonly yes" in command and "--appendfsync everysec" in command


def test_reporter_links_live_in_a_redis_that_keeps_nothing_on_disk(
    compose: dict[str, Any],
) -> None:
    volatile = compose["services"]["redis-volatile"]
    command = " ".join(volatile["command"])
    assert "--appendonly no" in command and "--save " in command
    assert "volumes" not in volatile and volatile["tmpfs"] == ["/data"]
    for service in ("web", "worker"):
        env = compose["services"][service]["environment"]
        assert env["VOLATILE_REDIS_URL"] == "redis://redis-volatile:6379/0"


@pytest.mark.parametrize("service", ["web", "worker", "migrate"])
def test_compose_runs_the_commands_the_readme_documents(
    compose: dict[str, Any], service: str
) -> None:
    command = " ".join(compose["services"][service]["command"])
    assert command in readme_commands()


def test_the_app_services_run_in_production_mode_with_a_sealed_keyring(
    compose: dict[str, Any],
) -> None:
    for service in ("web", "worker", "migrate"):
        settings = compose["services"][service]
        env = settings["environment"]
        assert env["RR_ENV"] == "production"
        assert env["KEYRING_FILE"].startswith("/var/lib/rapidresponse/keys/")
        assert "keyring:/var/lib/rapidresponse/keys" in settings["volumes"]
        for key in ("SECRET_KEY", "DATA_KEYS", "INDEX_KEY"):  # only in the keyring
            assert key not in env and f"{key}_FILE" not in env
        assert env["TWILIO_AUTH_TOKEN_FILE"].startswith("/run/secrets/")
        assert "TWILIO_AUTH_TOKEN" not in env  # never inline
    for service in ("web", "worker"):  # a seal ends them; restarted, they wait sealed
        assert compose["services"][service]["restart"] == "unless-stopped"
    assert set(compose["secrets"]) == {"twilio_auth_token"}
    keys = compose["services"]["keys"]  # prints the shares: never into a container log
    assert keys["logging"] == {"driver": "none"} and keys["profiles"] == ["keys"]


def test_readme_quick_start_is_exactly_make_demo_and_make_test() -> None:
    readme = (ROOT / "README.md").read_text()
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    shell = [line for line in quick_start.splitlines() if line.startswith("make ")]
    assert shell == ["make demo", "make test"]


def test_ci_runs_make_test_on_both_setups() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    assert script.count("make test") >= 2
    assert "TEST_DATABASE_URL=" in script and "TEST_REDIS_URL=" in script


def test_the_web_spool_survives_a_restart(compose: dict[str, Any]) -> None:
    web = compose["services"]["web"]
    assert web["environment"]["SPOOL_DIR"] == "/var/lib/rapidresponse/spool"
    assert "spool:/var/lib/rapidresponse/spool" in web["volumes"]
    assert "spool" in compose["volumes"]


def test_the_proxy_sends_the_boards_sockets_to_their_own_process(compose: dict[str, Any]) -> None:
    """Open boards must never hold the threads the hotline needs (issue: 64 open boards
    took the hotline down), nor take their CPU with re-reads: /socket.io/ and
    /board/live go to the socket process, the rest to web."""
    web = compose["services"]["web"]
    command = web["command"]
    assert command[command.index("--port") + 1] == "5000"
    assert command[command.index("--socket-port") + 1] == "5001"
    assert "ports" not in web  # reached only through the proxy
    proxy = compose["services"]["proxy"]
    assert "./deploy/Caddyfile:/etc/caddy/Caddyfile:ro" in proxy["volumes"]
    caddyfile = (ROOT / "deploy" / "Caddyfile").read_text()
    assert "@sockets path /socket.io/* /board/live\n" in caddyfile
    assert "reverse_proxy @sockets web:5001" in caddyfile
    assert "reverse_proxy web:5000" in caddyfile
    assert "SOCKET_URL" not in web["environment"]  # the page's own origin: the proxy
