"""The suite's own rules: in CI nothing skips that could run."""

from __future__ import annotations

import pytest

SKIPPING_TESTS = """
import pytest

def test_runs():
    pass

def test_skips_for_no_reason():
    pytest.skip("the description is not here")

def test_cannot_run_on_this_database():
    pytest.skip("only on SQLite: reads its file")
"""


def test_in_ci_a_skip_that_could_run_fails_the_run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    pytester.makepyfile(SKIPPING_TESTS)
    result = pytester.runpytest("-p", "tests.skip_guard")
    result.assert_outcomes(passed=1, skipped=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        ["CI: 1 skipped tests must run here:", "*the description is not here"]
    )
    assert "reads its file" not in result.stdout.str().split("must run here:")[1]


def test_outside_ci_skips_are_reported_but_do_not_fail(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)
    pytester.makepyfile(SKIPPING_TESTS)
    result = pytester.runpytest("-p", "tests.skip_guard")
    result.assert_outcomes(passed=1, skipped=2)
    assert result.ret == pytest.ExitCode.OK


def test_in_ci_skips_impossible_on_the_machine_pass(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    pytester.makepyfile(
        SKIPPING_TESTS.split("def test_skips_for_no_reason")[0]
        + """
def test_cannot_run_on_this_database():
    pytest.skip("only on PostgreSQL: reads pg_stat")
"""
    )
    result = pytester.runpytest("-p", "tests.skip_guard")
    result.assert_outcomes(passed=1, skipped=1)
    assert result.ret == pytest.ExitCode.OK
