"""No two public classes of mltrail share a name.

Two ``RunOwners`` once did different things (verify's look back over stored
records, and the server's refusal at append time); a reader who met one took
it for the other. A subclass that keeps its base's name on purpose (the
public ``mltrail.testing.MemoryStore`` over the storage backend) is allowed.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "mltrail"


def _classes() -> dict[str, list[tuple[str, ast.ClassDef]]]:
    found: dict[str, list[tuple[str, ast.ClassDef]]] = defaultdict(list)
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                found[node.name].append((str(path.relative_to(SRC)), node))
    return found


def _extends_its_namesake(node: ast.ClassDef) -> bool:
    return any(
        isinstance(base, ast.Attribute) and base.attr == node.name
        for base in node.bases
    )


def test_public_class_names_are_unique() -> None:
    clashes = {
        name: [path for path, _ in places]
        for name, places in _classes().items()
        if len(places) > 1
        and sum(not _extends_its_namesake(node) for _, node in places) > 1
    }
    assert clashes == {}


def test_the_two_run_owner_classes_say_what_they_do() -> None:
    classes = _classes()
    assert [path for path, _ in classes["RunAuthorship"]] == ["core/run_owner.py"]
    assert [path for path, _ in classes["AppendOwnerCheck"]] == ["server/run_owners.py"]
