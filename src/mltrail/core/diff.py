"""What changed between two runs, computed from their recorded bodies (pure).

:func:`diff_runs` takes two :class:`RunFacts` (the bodies a run recorded, and the
blobs a diff reads: the package lists and the data manifests) and returns a
:class:`RunDiff` with one section per area, in a fixed order: ``run`` (status, exit
code, duration, command), ``code``, ``environment``, ``hardware``, ``params``,
``data``, ``finetune``, ``outputs``, ``metrics``. Only differences are listed unless
``everything=True``.

Values are compared as JSON values, except that numbers compare by value (JSON
cannot tell ``8`` from ``8.0``) and two redacted secrets always compare equal (they
are salted commitments: two commitments to one secret differ). Volatile facts that
differ between any two runs are not compared (:data:`IGNORED`).

    >>> a = RunFacts("a", params={"temperature": (0.7, "cfg.yaml"), "r": (8, "argv")})
    >>> b = RunFacts("b", params={"temperature": (1.2, "cfg.yaml"), "r": (8.0, "argv")})
    >>> [(c.key, c.old, c.new) for c in diff_runs(a, b).section("params")]
    [('temperature', 0.7, 1.2)]
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mltrail.core.diff_data import (
    FilesDiff,
    compare_versions,
    diff_manifests,
    parse_packages,
)
from mltrail.core.rows import RowsDiff, diff_rows
from mltrail.core.series import merge_series

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "ABSENT",
    "IGNORED",
    "SECTIONS",
    "Change",
    "DatasetDiff",
    "RunDiff",
    "RunFacts",
    "diff_params",
    "diff_runs",
    "diff_values",
    "flatten_body",
    "merge_series",
    "same_value",
]

SECTIONS = (
    "run",
    "code",
    "environment",
    "hardware",
    "params",
    "data",
    "finetune",
    "outputs",
    "metrics",
)
IGNORED = (
    "start and end times",
    "process ids",
    "free memory (hardware memory.available_bytes)",
    "stdout and stderr digests",
    "redacted secrets (salted commitments)",
)
_VOLATILE_HARDWARE = frozenset({"memory.available_bytes"})
_REDACTED = re.compile(
    r"<redacted (?:hmac-)?sha256:[0-9a-f]{64} salt:[0-9a-f]*(?: key:[0-9a-f]{16})?>"
)


class _Absent:
    """The value of a key one side does not have."""

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()


@dataclass(frozen=True, slots=True)
class Change:
    """One key's value in run A (``old``) and run B (``new``).

    ``source`` is where a parameter came from (``argv``, a config file's path...):
    run B's, else run A's; ``old_source`` is run A's where it is another one (a
    value moved from the command line into a config file). ``note`` says more
    (``upgraded``, ``downgraded``).
    """

    key: str
    old: Any = ABSENT
    new: Any = ABSENT
    source: str | None = None
    note: str | None = None
    old_source: str | None = None

    @property
    def kind(self) -> str:
        """``added``, ``removed``, ``changed`` or ``same``."""
        if self.old is ABSENT:
            return "added"
        if self.new is ABSENT:
            return "removed"
        return "same" if same_value(self.old, self.new) else "changed"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (``old``/``new`` left out where absent)."""
        out: dict[str, Any] = {"key": self.key, "change": self.kind}
        if self.old is not ABSENT:
            out["old"] = self.old
        if self.new is not ABSENT:
            out["new"] = self.new
        if self.source is not None:
            out["source"] = self.source
        if self.old_source is not None:
            out["old_source"] = self.old_source
        if self.note is not None:
            out["note"] = self.note
        return out


@dataclass(frozen=True, slots=True)
class DatasetDiff:
    """One data role in both runs: dataset ids, recorded facts, differing files.

    ``files`` is None when the dataset ids match or a manifest is not at hand;
    ``rows`` (the rows added, removed or changed, by file and line) when both
    versions were described and kept their row digests.
    """

    role: str
    old: str | None
    new: str | None
    fields: tuple[Change, ...] = ()
    files: FilesDiff | None = None
    rows: RowsDiff | None = None

    @property
    def kind(self) -> str:
        """``added``, ``removed``, ``changed`` or ``same`` (by dataset id and facts)."""
        if self.old is None:
            return "added"
        if self.new is None:
            return "removed"
        differs = self.old != self.new or any(c.kind != "same" for c in self.fields)
        return "changed" if differs else "same"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values."""
        return {
            "role": self.role,
            "change": self.kind,
            "old": self.old,
            "new": self.new,
            "fields": [c.to_dict() for c in self.fields],
            "files": None if self.files is None else self.files.to_dict(),
            "rows": None if self.rows is None else self.rows.to_dict(),
        }


@dataclass(frozen=True)
class RunDiff:
    """The differences between run ``old`` (A) and run ``new`` (B), by section."""

    old: str
    new: str
    changes: Mapping[str, tuple[Change, ...]]
    data: tuple[DatasetDiff, ...] = ()

    def section(self, name: str) -> tuple[Change, ...]:
        """The changes of one section other than ``data``."""
        return self.changes.get(name, ())

    @property
    def is_empty(self) -> bool:
        """Whether nothing compared differs."""
        return all(
            c.kind == "same" for cs in self.changes.values() for c in cs
        ) and all(d.kind == "same" for d in self.data)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values: the run ids, ``same``, and every section in order."""
        sections: dict[str, Any] = {}
        for name in SECTIONS:
            if name == "data":
                sections[name] = [d.to_dict() for d in self.data]
            else:
                sections[name] = [c.to_dict() for c in self.section(name)]
        return {
            "a": self.old,
            "b": self.new,
            "same": self.is_empty,
            "ignored": list(IGNORED),
            "sections": sections,
        }


@dataclass
class RunFacts:
    """What one run recorded, as plain bodies, with the blobs a diff reads.

    ``run`` holds the run's summary facts (name, status, exit_code, duration_s,
    command, cwd, user, host, signal); ``packages`` the bytes of the package list
    blob; ``manifests`` the manifest and row-digest bytes by blob digest
    (``sha256:<hex>``);
    ``metrics`` each series' summary by name.
    """

    id: str
    run: dict[str, Any] = field(default_factory=dict)
    code: dict[str, Any] | None = None
    environment: dict[str, Any] | None = None
    packages: bytes | None = None
    hardware: dict[str, Any] | None = None
    params: dict[str, tuple[Any, str]] = field(default_factory=dict)
    data: list[dict[str, Any]] = field(default_factory=list)
    manifests: dict[str, bytes] = field(default_factory=dict)
    finetune: dict[str, Any] | None = None
    outputs: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)


# -- values ------------------------------------------------------------------


def same_value(old: Any, new: Any) -> bool:
    """Equal as JSON values, numbers by value (``8 == 8.0``, but ``True != 1``),
    any two redacted secrets equal, also where text holds them
    (``postgres://u:<redacted ...>@h/db``: the same text around them)."""
    if isinstance(old, str) and isinstance(new, str):
        return old == new or _REDACTED.split(old) == _REDACTED.split(new)
    if _redacted(old) and _redacted(new):
        return True
    if isinstance(old, int | float) and isinstance(new, int | float):
        return isinstance(old, bool) == isinstance(new, bool) and old == new
    if isinstance(old, dict) and isinstance(new, dict):
        return old.keys() == new.keys() and all(same_value(old[k], new[k]) for k in old)
    if isinstance(old, list | tuple) and isinstance(new, list | tuple):
        return len(old) == len(new) and all(map(same_value, old, new))
    return type(old) is type(new) and bool(old == new)


def _redacted(value: Any) -> bool:
    if isinstance(value, str):
        return _REDACTED.fullmatch(value) is not None
    return isinstance(value, dict) and set(value) in (
        {"redacted", "salt"},
        {"redacted", "salt", "key"},
    )


def flatten_body(body: Mapping[str, Any] | None, prefix: str = "") -> dict[str, Any]:
    """A body as ``{"dotted.key": leaf}``: lists, blob references (shown as their
    digest), redaction commitments and empty objects are leaves."""
    out: dict[str, Any] = {}
    for key, value in (body or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and "blob" in value and "size" in value:
            out[name] = value["blob"]
        elif isinstance(value, dict) and value and not _redacted(value):
            out.update(flatten_body(value, name + "."))
        else:
            out[name] = value
    return out


def diff_values(
    old: Mapping[str, Any], new: Mapping[str, Any], *, everything: bool = False
) -> tuple[Change, ...]:
    """A change for every key whose value differs (every key with ``everything``)."""
    changes = []
    for key in sorted(old.keys() | new.keys()):
        change = Change(key, old.get(key, ABSENT), new.get(key, ABSENT))
        if everything or change.kind != "same":
            changes.append(change)
    return tuple(changes)


def diff_params(
    old: Mapping[str, tuple[Any, str]],
    new: Mapping[str, tuple[Any, str]],
    *,
    everything: bool = False,
) -> tuple[Change, ...]:
    """Parameters added, removed or changed, each with its source (B's, else A's)."""
    changes = []
    for key in sorted(old.keys() | new.keys()):
        a, a_source = old.get(key, (ABSENT, None))
        b, b_source = new.get(key, (ABSENT, None))
        moved = a_source if a_source and b_source and a_source != b_source else None
        change = Change(key, a, b, source=b_source or a_source, old_source=moved)
        if everything or change.kind != "same":
            changes.append(change)
    return tuple(changes)


# -- runs --------------------------------------------------------------------


def diff_runs(a: RunFacts, b: RunFacts, *, everything: bool = False) -> RunDiff:
    """Every section of the differences between run ``a`` and run ``b``.

    Raises:
        SchemaError: a manifest of a dataset that changed is malformed.
    """
    flat = {
        "run": lambda f: dict(f.run),
        "code": _code,
        "environment": _environment,
        "hardware": _hardware,
        "finetune": lambda f: flatten_body(f.finetune),
        "outputs": _outputs,
        "metrics": _metrics,
    }
    changes: dict[str, tuple[Change, ...]] = {}
    for name in SECTIONS:
        if name == "params":
            changes[name] = diff_params(a.params, b.params, everything=everything)
        elif name in flat:
            changes[name] = diff_values(
                flat[name](a), flat[name](b), everything=everything
            )
    if a.packages is not None and b.packages is not None:
        changes["environment"] = _merge(
            changes["environment"], diff_packages(a.packages, b.packages, everything)
        )
    return RunDiff(a.id, b.id, changes, diff_datasets(a, b, everything=everything))


def _code(facts: Any) -> dict[str, Any]:
    """The code, with each recorded file (``run.code`` files) named by its path
    under the work tree (or the run's folder) and known by its digest, so the same
    file read from a fresh clone elsewhere is no change."""
    code = _without(facts.code, "diff")
    files = code.pop("files", None) if isinstance(code, dict) else None
    flat = flatten_body(code)
    base = str((facts.code or {}).get("root") or "")
    for file in files if isinstance(files, list) else []:
        if isinstance(file, dict):
            path = str(file.get("path", ""))
            if base and path.startswith(base.rstrip("/") + "/"):
                path = path[len(base.rstrip("/")) + 1 :]
            flat[f"files.{path}"] = file.get("sha256") or file.get("error")
    return flat


def _without(body: Mapping[str, Any] | None, *keys: str) -> dict[str, Any]:
    return {k: v for k, v in (body or {}).items() if k not in keys}


def _merge(first: tuple[Change, ...], more: tuple[Change, ...]) -> tuple[Change, ...]:
    return tuple(sorted((*first, *more), key=lambda c: c.key))


def _environment(facts: RunFacts) -> dict[str, Any]:
    body = facts.environment or {}
    flat = flatten_body(_without(body, "packages", "editable"))
    if facts.packages is None and body.get("packages"):
        flat["packages.sha256"] = body["packages"].get("sha256")
    for item in body.get("editable") or []:
        name = item.get("name", "?")
        flat[f"editable.{name}"] = item.get("commit") or item.get("version")
        # where it was installed from: another folder (or url) at the same
        # version is other code
        for fact in ("url", "editable"):
            if fact in item:
                flat[f"editable.{name}.{fact}"] = item[fact]
    return flat


def _hardware(facts: RunFacts) -> dict[str, Any]:
    flat = flatten_body(facts.hardware)
    return {k: v for k, v in flat.items() if k not in _VOLATILE_HARDWARE}


def _outputs(facts: RunFacts) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for body in facts.outputs:
        path = str(body.get("path") or body.get("name") or "?")
        found[path] = body.get("sha256") or body.get("dataset") or body.get("exists")
    return found


def _metrics(facts: RunFacts) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name, series in facts.metrics.items():
        for stat in ("last", "min", "max", "count"):
            if stat in series:
                found[f"{name}.{stat}"] = series[stat]
    return found


def diff_packages(
    old: bytes, new: bytes, everything: bool = False
) -> tuple[Change, ...]:
    """Packages added, removed, upgraded or downgraded between two ``name==version``
    lists, keyed ``packages.<name>``."""
    a, b = parse_packages(old), parse_packages(new)
    changes = []
    for key in sorted(a.keys() | b.keys()):
        name = (b.get(key) or a[key])[0]
        old_version = a[key][1] if key in a else ABSENT
        new_version = b[key][1] if key in b else ABSENT
        note = None
        if key in a and key in b and old_version != new_version:
            order = compare_versions(old_version, new_version)
            note = {-1: "upgraded", 1: "downgraded"}.get(order, "changed")
        change = Change(f"packages.{name}", old_version, new_version, note=note)
        if everything or change.kind != "same":
            changes.append(change)
    return tuple(changes)


def diff_datasets(
    a: RunFacts, b: RunFacts, *, everything: bool = False
) -> tuple[DatasetDiff, ...]:
    """Each data role of either run: dataset ids, recorded facts and, when the ids
    differ and both manifests are at hand, the files that differ.

    A role read several times (shards logged one by one) pairs its datasets by
    id first, then the rest in the order read: the same datasets in another
    order are no change, and the one dropped is the one named removed. The
    second pair of a role is ``role#2``, and so on.
    """
    found = []
    for role, x, y in _paired(a.data, b.data):
        fields = diff_values(_data_facts(x), _data_facts(y), everything=everything)
        files = rows = None
        if x and y and x.get("dataset") != y.get("dataset"):
            files = _files(x, y, a.manifests, b.manifests)
            rows = _rows(x, y, a.manifests, b.manifests)
        diff = DatasetDiff(
            role, _dataset_id(x), _dataset_id(y), fields if x and y else (), files, rows
        )
        if everything or diff.kind != "same":
            found.append(diff)
    return tuple(found)


_Body = dict[str, Any]


def _paired(
    old: list[_Body], new: list[_Body]
) -> list[tuple[str, _Body | None, _Body | None]]:
    """Run A's and run B's data bodies as (label, A's, B's), sorted by label."""
    roles_a, roles_b = _by_role(old), _by_role(new)
    found: list[tuple[str, _Body | None, _Body | None]] = []
    for role in sorted(roles_a.keys() | roles_b.keys()):
        xs, ys = list(roles_a.get(role, ())), list(roles_b.get(role, ()))
        pairs: list[tuple[_Body | None, _Body | None]] = []
        for x in list(xs):  # the same dataset in both: a pair, wherever it is
            same = next((y for y in ys if y.get("dataset") == x.get("dataset")), None)
            if same is not None:
                xs.remove(x)
                ys.remove(same)
                pairs.append((x, same))
        for n in range(max(len(xs), len(ys))):
            pairs.append(
                (xs[n] if n < len(xs) else None, ys[n] if n < len(ys) else None)
            )
        pairs.sort(key=lambda p: _order(old, new, p))
        for n, (x, y) in enumerate(pairs, 1):
            found.append((role if n == 1 else f"{role}#{n}", x, y))
    return sorted(found, key=lambda f: f[0])


def _order(
    old: list[_Body], new: list[_Body], pair: tuple[_Body | None, _Body | None]
) -> tuple[int, int]:
    """A pair's place: where run A read it, else after A's, where run B read it."""
    x, y = pair
    if x is not None:
        return 0, next(n for n, body in enumerate(old) if body is x)
    return 1, next(n for n, body in enumerate(new) if body is y)


def _by_role(bodies: list[_Body]) -> dict[str, list[_Body]]:
    found: dict[str, list[_Body]] = {}
    for body in bodies:
        found.setdefault(str(body.get("role", "?")), []).append(body)
    return found


def _dataset_id(body: Mapping[str, Any] | None) -> str | None:
    return None if body is None else str(body.get("dataset", ""))


def _data_facts(body: Mapping[str, Any] | None) -> dict[str, Any]:
    return flatten_body(_without(body, "role", "dataset", "manifest", "row_digests"))


def _files(
    x: Mapping[str, Any],
    y: Mapping[str, Any],
    old: Mapping[str, bytes],
    new: Mapping[str, bytes],
) -> FilesDiff | None:
    a = old.get(_blob_digest(x.get("manifest")))
    b = new.get(_blob_digest(y.get("manifest")))
    if a is None or b is None:
        return None
    return diff_manifests(a, b)


def _rows(
    x: Mapping[str, Any],
    y: Mapping[str, Any],
    old: Mapping[str, bytes],
    new: Mapping[str, bytes],
) -> RowsDiff | None:
    a = old.get(_blob_digest(x.get("row_digests")))
    b = new.get(_blob_digest(y.get("row_digests")))
    if a is None or b is None:
        return None
    return diff_rows(a, b)


def _blob_digest(ref: Any) -> str:
    return str(ref.get("blob")) if isinstance(ref, dict) else ""
