"""Cut Twilio's OpenAPI description down to the Messages API this project uses.

Run from the repository root when Twilio publishes a new description:

    python -m tests.twilio_spec.extract ../shared/twilio/twilio_api_v2010.json

It keeps the message-list and message-instance paths (create, fetch, delete), every
component schema they reach, the security schemes and the description's own metadata,
so the contract tests run from this repository alone (a fresh clone never skips them).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

KEPT_PATHS = (
    "/2010-04-01/Accounts/{AccountSid}/Messages.json",
    "/2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json",
)
SCHEMA_PREFIX = "#/components/schemas/"
HERE = Path(__file__).resolve().parent
SUBSET_PATH = HERE / "twilio_messages_v2010.json"


def referenced_schemas(node: Any) -> set[str]:
    """Names of the component schemas a node refers to directly."""
    if isinstance(node, dict):
        found = set()
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(SCHEMA_PREFIX):
            found.add(ref.removeprefix(SCHEMA_PREFIX))
        for value in node.values():
            found |= referenced_schemas(value)
        return found
    if isinstance(node, list):
        return set().union(*(referenced_schemas(item) for item in node)) if node else set()
    return set()


def reachable_schemas(paths: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    """Every schema reachable from the kept paths, following references transitively."""
    pending = referenced_schemas(paths)
    kept: dict[str, Any] = {}
    while pending:
        name = pending.pop()
        if name in kept:
            continue
        kept[name] = schemas[name]
        pending |= referenced_schemas(schemas[name]) - kept.keys()
    return dict(sorted(kept.items()))


def subset(spec: dict[str, Any]) -> dict[str, Any]:
    paths = {path: spec["paths"][path] for path in KEPT_PATHS}
    components = {
        "securitySchemes": spec["components"]["securitySchemes"],
        "schemas": reachable_schemas(paths, spec["components"]["schemas"]),
    }
    keys = ("openapi", "info", "servers", "security")
    return {
        **{key: spec[key] for key in keys if key in spec},
        "paths": paths,
        "components": components,
    }


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__)
        return 2
    spec = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
    SUBSET_PATH.write_text(
        json.dumps(subset(spec), indent=1, sort_keys=True) + "\n", encoding="utf-8"
    )
    print(f"wrote {SUBSET_PATH.relative_to(Path.cwd())}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
