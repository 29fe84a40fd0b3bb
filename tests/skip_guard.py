"""In CI, a skip fails the run unless it is impossible on that machine.

A suite that silently skips its contract or browser tests proves nothing there. A skip
whose reason starts with one of ``SKIP_WHERE_IMPOSSIBLE`` is impossible on the database
the suite runs against (reading SQLite's file while the suite runs on PostgreSQL, say);
with ``CI=true`` every other skip turns the run red and is listed at the end.
"""

from __future__ import annotations

import os

import pytest

SKIP_WHERE_IMPOSSIBLE = ("only on SQLite:", "only on PostgreSQL:")


def skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    message = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return message.removeprefix("Skipped: ")


class SkipGuard:
    """One per pytest run: collects the skips that CI does not allow."""

    def __init__(self) -> None:
        self.not_allowed: list[str] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.skipped and not hasattr(report, "wasxfail"):
            reason = skip_reason(report)
            if not reason.startswith(SKIP_WHERE_IMPOSSIBLE):
                self.not_allowed.append(f"{report.nodeid}: {reason}")

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if os.environ.get("CI") != "true" or not self.not_allowed:
            return
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            count = len(self.not_allowed)
            reporter.write_line(f"CI: {count} skipped tests must run here:", red=True)
            for line in self.not_allowed:
                reporter.write_line(f"  {line}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(SkipGuard(), "skip-guard")
