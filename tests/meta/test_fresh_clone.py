"""A fresh clone has everything its catalog and contract checks need.

The repository's files, and nothing else, go into a temporary folder and those checks
run there with CI=true, so that an ignored file (a build product, instance/) or one read
from outside the repository (../shared) fails here and not on CI. In CI the folder is a
real `git clone`; locally it is what a clone would hold once the work is committed
(tracked and not-ignored files), so uncommitted work is tested too.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECKS = (
    "tests/web/test_report_form.py::test_the_committed_mo_says_what_the_po_says",
    "tests/web/test_report_form.py::test_every_string_of_the_pages_has_a_spanish_translation",
    "tests/dispatch/test_twilio_contract.py",
)

pytestmark = pytest.mark.slow


def clone(into: Path) -> Path:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: nothing to clone")
    target = into / "clone"
    if os.environ.get("CI") == "true":
        git("clone", "--quiet", "--no-hardlinks", str(ROOT), str(target))
        return target
    listed = git("ls-files", "-z", "--cached", "--others", "--exclude-standard")
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the working tree is gone
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def git(*arguments: str) -> str:
    done = subprocess.run(["git", *arguments], cwd=ROOT, check=True, capture_output=True, text=True)
    return done.stdout


def run_in(folder: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CI": "true"}
    env.pop("PYTHONPATH", None)
    return subprocess.run(
        [sys.executable, *arguments], cwd=folder, env=env, capture_output=True, text=True
    )


def test_a_fresh_clone_runs_the_catalog_and_contract_checks_without_skipping(
    tmp_path: Path,
) -> None:
    folder = clone(tmp_path)
    where = run_in(folder, "-c", "import tests.twilio_spec.extract as m; print(m.__file__)")
    assert where.stdout.strip().startswith(str(folder)), "the checks must run the clone's code"
    result = run_in(folder, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", *CHECKS)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout


def test_the_twilio_description_keeps_the_licence_it_names_beside_it() -> None:
    folder = ROOT / "tests" / "twilio_spec"
    description = json.loads((folder / "twilio_messages_v2010.json").read_text())
    assert description["info"]["license"]["name"] == "Apache 2.0"
    apache = (folder / "LICENSE-APACHE-2.0").read_text()
    assert "Apache License" in apache and "Version 2.0, January 2004" in apache
    assert "MIT License" in (folder / "LICENSE").read_text()  # the repository it came from
    kept = git("ls-files", "tests/twilio_spec").split()
    assert {"tests/twilio_spec/LICENSE", "tests/twilio_spec/LICENSE-APACHE-2.0"} <= set(kept)
