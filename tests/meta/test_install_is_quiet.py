"""Installing and bootstrapping print nothing a newcomer would take for a fault.

Two kinds of noise were seen on a fresh machine: setuptools' deprecation warnings about
our own `project.license` (a TOML table where a SPDX expression now belongs), and
"command not found" lines from a pyenv shim while the Makefile looked for a Python.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# What pip runs to learn a project's metadata (PEP 517), with every warning shown.
BUILD_METADATA = """
import sys, warnings
warnings.simplefilter("always")
from setuptools import build_meta
print(build_meta.prepare_metadata_for_build_wheel(sys.argv[1]))
"""


def test_building_our_metadata_warns_of_nothing_and_names_a_spdx_licence(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", BUILD_METADATA, str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    noise = [
        line
        for line in done.stderr.splitlines()
        if "warning" in line.lower() or "deprecat" in line.lower() or "licen" in line.lower()
    ]
    assert noise == []
    metadata = (tmp_path / done.stdout.strip().splitlines()[-1] / "METADATA").read_text()
    assert "License-Expression: AGPL-3.0-or-later" in metadata.splitlines()


def test_looking_for_a_python_is_silent_past_a_shim_that_is_not_installed(tmp_path: Path) -> None:
    # A pyenv shim for a version that is not active answers on stderr and exits 127.
    shims = tmp_path / "shims"
    shims.mkdir()
    shim = shims / "python3.12"
    shim.write_text('#!/bin/sh\necho "pyenv: python3.12: command not found" >&2\nexit 127\n')
    shim.chmod(0o755)
    path = f"{shims}{os.pathsep}{os.environ.get('PATH', '')}"
    make = shutil.which("make") or "make"
    # -n -B: print the bootstrap's recipe (which names the Python found), run nothing.
    done = subprocess.run(
        [make, "-n", "-B", "venv"],
        cwd=ROOT,
        env={**os.environ, "PATH": path},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert "-m venv .venv" in done.stdout
    assert "python3.12" not in done.stdout
