"""Questions over the index: find runs, resolve references, load a run whole.

    >>> index = open_index(home)                                  # doctest: +SKIP
    >>> search_runs(home, index, RunFilter(params=[("lr", "0.5")]))  # doctest: +SKIP
    >>> view = load_run(home, index, resolve_run(index, "baseline"))  # doctest: +SKIP

Every answer comes from the derived index (fast) and every run's content from the
ledger's own records (the source of truth).
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from mltrail.errors import InputError, MltrailError
from mltrail.index.tables import param_value
from mltrail.record.run_status import RunSummary, run_liveness
from mltrail.values import Frozen, Value

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from mltrail.core.entry import Record
    from mltrail.index import Index
    from mltrail.ledger.home import Home

__all__ = [
    "RunFilter",
    "RunView",
    "TimeWindow",
    "close_runs",
    "load_run",
    "parse_at",
    "parse_when",
    "resolve_run",
    "search_runs",
    "time_window",
]

_MIN_PREFIX = 4
# ASCII digits only: ``\d`` and ``int()`` also take Arabic-Indic or fullwidth ones
_RELATIVE = re.compile(r"([0-9]{1,12}) ?([smhdw])")
_WEEK = re.compile(r"([0-9]{4})-?W([0-9]{1,2})")
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}(?::[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,9})?)?)?"
    r"(?:[Zz]|[+-][0-9]{2}:[0-9]{2})?"
)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_FORMS = (
    "use a date (2026-03-14), a time (2026-03-14T09:30Z, UTC unless it has an "
    "offset such as +01:00), an ISO week (2026-W42) or an age (7d, 12h, 30m)"
)


class TimeWindow(Frozen):
    """A half-open window ``[start, end)`` in epoch seconds (either may be open)."""

    __match_args__ = ("start", "end")
    start: float | None
    end: float | None

    def __init__(self, start: float | None = None, end: float | None = None) -> None:
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "end", end)


def parse_when(text: str, *, now: datetime | None = None, end: bool = False) -> float:
    """Epoch seconds for a date, a time, an ISO week or a relative age.

    ``2026-03-14`` (the day's start, or its end with ``end=True``),
    ``2026-03-14T09:30`` or with an offset (UTC when none), ``2026-W42`` (the
    week's Monday, or the next Monday with ``end=True``), ``7d``/``12h`` ago.
    Only these forms, in ASCII digits, are read: anything else (``20260314``,
    ``2026-W42-1``, an age in Arabic-Indic digits) is an error rather than a guess.

    Raises:
        InputError: not one of those forms.
    """
    return _parse_when(text, now, end)[0]


def parse_at(text: str, *, now: datetime | None = None) -> float:
    """The last moment ``--at WHEN`` includes, in epoch seconds (compare ``<=``).

    A date or an ISO week means its very end: everything dated within it counts,
    nothing dated at the next day's or week's first instant does. A time or an
    age means that moment.

    Raises:
        InputError: not one of ``parse_when``'s forms.
    """
    moment, period = _parse_when(text, now, True)
    return math.nextafter(moment, -math.inf) if period else moment


def _parse_when(text: str, now: datetime | None, end: bool) -> tuple[float, bool]:
    """``parse_when``'s answer, and whether the text named a whole day or week."""
    text = text.strip()
    if m := _RELATIVE.fullmatch(text):
        now = now or datetime.now(UTC)
        try:
            return (now - timedelta(**{_UNITS[m[2]]: int(m[1])})).timestamp(), False
        except OverflowError as e:
            raise InputError(f"{text!r} reaches too far back") from e
    try:
        return _parse_moment(text, end)
    except OverflowError as e:  # e.g. the day after 9999-12-31
        raise InputError(
            f"{text!r} is out of the range of dates mltrail handles",
            hint="use a date from 0001-01-01 to 9999-12-30",
        ) from e


def _parse_moment(text: str, end: bool) -> tuple[float, bool]:
    """Epoch seconds of a date, a time or an ISO week (see ``parse_when``)."""
    if m := _WEEK.fullmatch(text):
        try:
            monday = date.fromisocalendar(int(m[1]), int(m[2]), 1)
        except ValueError as e:
            raise InputError(f"no such ISO week: {text!r} ({e})", hint=_FORMS) from e
        return _day(monday + timedelta(weeks=1 if end else 0)), True
    try:
        if _DAY.fullmatch(text):
            day = date.fromisoformat(text)
            return _day(day + timedelta(days=1 if end else 0)), True
        if not _TIME.fullmatch(text):
            raise ValueError("not one of the forms read")
        moment = datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError as e:
        raise InputError(f"cannot read the time {text!r}", hint=_FORMS) from e
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp(), False


def time_window(
    since: str | None = None, until: str | None = None, week: str | None = None
) -> TimeWindow:
    """The window of ``--since``/``--until`` (``until`` includes its whole day) or of
    an ISO ``--week``.

    Raises:
        InputError: a time cannot be read, ``week`` is combined with the others,
            or the window is empty (``since`` is not before ``until``).
    """
    if week is not None:
        if since or until:
            raise InputError("--week cannot be combined with --since/--until")
        if not _WEEK.fullmatch(week.strip()):  # a day or an age would be empty
            raise InputError(
                f"--week takes an ISO week, not {week!r}", hint="e.g. 2026-W42"
            )
        return TimeWindow(parse_when(week), parse_when(week, end=True))
    start = None if since is None else parse_when(since)
    end = None if until is None else parse_when(until, end=True)
    if start is not None and end is not None and start >= end:
        raise InputError(
            f"--since {since} is not before --until {until}: no time is in between",
            hint="--until includes the whole day it names; swap the two if reversed",
        )
    return TimeWindow(start, end)


def _day(day: date) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


# -- finding runs ------------------------------------------------------------


class RunFilter(Value):
    """What ``mltrail runs`` narrows by; every field optional, all must hold.

    ``params`` and ``dataset`` match records the run's starter signed only
    (another user's ``run.params`` in a run does not make it match).
    """

    __match_args__ = ("window", "user", "status", "params", "dataset", "name", "limit")
    window: TimeWindow
    user: str | None
    status: str | None
    params: Sequence[tuple[str, str]]
    dataset: str | None
    name: str | None
    limit: int | None

    def __init__(
        self,
        window: TimeWindow | None = None,
        user: str | None = None,
        status: str | None = None,
        params: Sequence[tuple[str, str]] = (),
        dataset: str | None = None,
        name: str | None = None,
        limit: int | None = None,
    ) -> None:
        self.window = TimeWindow() if window is None else window
        self.user = user
        self.status = status
        self.params = params
        self.dataset = dataset
        self.name = name
        self.limit = limit


def search_runs(home: Home, index: Index, spec: RunFilter) -> list[RunSummary]:
    """Runs matching ``spec``, oldest first (the newest ``limit`` of them when set).

    The rows of every run listed are checked against its records first (a run
    the index wrongly says matches); on a difference the index is rebuilt and
    the search done again (see ``mltrail.index.check``).
    """
    from mltrail.index.check import repaired, runs_differ

    found = _search_runs(home, index, spec)
    if repaired(index, runs_differ(index, [s.id for s in found])):
        found = _search_runs(home, index, spec)
    return found


def _search_runs(home: Home, index: Index, spec: RunFilter) -> list[RunSummary]:
    where, args = _conditions(spec, index)
    sql = f"SELECT {_COLUMNS} FROM runs"  # noqa: S608 (fixed column list)
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY started_ts DESC, seq DESC"
    live = spec.status in ("running", "stale")
    if spec.limit is not None and not live:
        sql += " LIMIT ?"
        args.append(spec.limit)
    found = [_summary(home, row) for row in index.conn.execute(sql, args)]
    if live:
        found = [s for s in found if s.status == spec.status][: spec.limit]
    found.reverse()
    return found


_COLUMNS = (
    "id, name, status, started, ended, duration_s, exit_code, user, host, command, seq, "
    "claimed_user, ended_by, (SELECT json_array(p.seq, p.time, p.origin) FROM pushed AS p "
    "WHERE p.first <= runs.seq AND runs.seq <= p.last LIMIT 1) AS pushed"
)


# A parameter value held by at least this many runs is matched run by run, newest
# first, stopping at the limit (~3 us a run); a rarer one by the list of its runs
# (~6 us each, then sorted). At 100,000 runs, lr=0.05 held by 14,286 of them: 2.5
# ms against 86 ms; a value no run holds: 0.1 ms against 310 ms.
# Only rows the run's starter signed (``own``) match: another user's run.params
# in Alice's run does not make it one "with" that value (ADR 0010, 2026-12-07).
_COMMON_PARAM = 2_000
_BY_LIST = "id IN (SELECT run FROM params WHERE key = ? AND value IN (?, ?) AND own)"
_BY_RUN = (
    "EXISTS (SELECT 1 FROM params WHERE params.run = runs.id AND key = ? "
    "AND value IN (?, ?) AND own)"
)


def _param_condition(index: Index | None, limit: int | None, args: list[Any]) -> str:
    if index is None or limit is None or limit > _COMMON_PARAM // 4:
        return _BY_LIST
    (count,) = index.conn.execute(
        "SELECT count(*) FROM params WHERE key = ? AND value IN (?, ?)", args
    ).fetchone()
    return _BY_RUN if count >= _COMMON_PARAM else _BY_LIST


def _name_condition(index: Index | None, limit: int | None, pattern: str) -> str:
    """A name glob many runs match is checked run by run, newest first (``+name``
    keeps SQLite from walking the name index and sorting every match): at 100,000
    runs, 'train-4*' (22,000 runs): 128 ms -> 0.2 ms."""
    if index is None or limit is None or limit > _COMMON_PARAM // 4:
        return "name GLOB ?"
    (count,) = index.conn.execute(
        "SELECT count(*) FROM runs WHERE name GLOB ?", (pattern,)
    ).fetchone()
    return "+name GLOB ?" if count >= _COMMON_PARAM else "name GLOB ?"


def _conditions(
    spec: RunFilter, index: Index | None = None
) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    args: list[Any] = []
    if spec.window.start is not None:
        where.append("started_ts >= ?")
        args.append(spec.window.start)
    if spec.window.end is not None:
        where.append("started_ts < ?")
        args.append(spec.window.end)
    if spec.user:
        where.append("user = ?")
        args.append(spec.user)
    if spec.status:
        if spec.status in _LIVE:
            where.append("status = 'open'")
        else:
            where.append("status = ?")
            args.append(spec.status)
    if spec.name:
        where.append(_name_condition(index, spec.limit, spec.name))
        args.append(spec.name)
    if spec.params:  # the parameter parser (tomllib, yaml) only when asked
        from mltrail.capture.run.values import coerce_value
    for key, value in spec.params:
        matched = [key, param_value(coerce_value(value)), param_value(value)]
        where.append(_param_condition(index, spec.limit, matched))
        args.extend(matched)
    if spec.dataset:
        _check_hex(spec.dataset, "dataset id")
        where.append(
            "id IN (SELECT run FROM data WHERE dataset >= ? AND dataset < ? AND own "
            "UNION SELECT run FROM data WHERE sha256 >= ? AND sha256 < ? AND own)"
        )
        low, high = _prefix_range(spec.dataset)
        args.extend([low, high, low, high])
    return where, args


_LIVE = ("running", "stale", "open")


def _prefix_range(prefix: str) -> tuple[str, str]:
    return prefix, prefix + "\uffff"


def _check_hex(value: str, what: str) -> None:
    if not re.fullmatch(r"[0-9a-f]{4,64}", value):
        raise InputError(
            f"{what} {value!r} is not a hex id (or a prefix of 4+ hex digits)",
            hint="ids are shown by `mltrail runs --json` and `mltrail show RUN`",
        )


def _summary(home: Home, row: Any) -> RunSummary:
    run_id, name, status, started, ended, duration, exit_code, user, host, cmd = row[
        :10
    ]
    seq, claimed, ended_by, pushed = row[10:]
    if status == "open":
        status = run_liveness(home.path, run_id, home.ledger.store)
    return RunSummary(
        id=run_id,
        name=name,
        status=status,
        started=started,
        ended=ended,
        duration_s=duration,
        exit_code=exit_code,
        user=user,
        host=host,
        command=json.loads(cmd),
        seq=seq,
        claimed_user=claimed,
        pushed=_pushed(pushed),
        ended_by=ended_by,
    )


def _pushed(window: str | None) -> dict[str, Any] | None:
    """The ``ledger.pushed`` header whose window holds the run's first record."""
    if window is None:
        return None
    header, time, origin = json.loads(window)
    return {"seq": header, "time": time, "origin": origin}


# -- one run -----------------------------------------------------------------


def resolve_run(index: Index, ref: str) -> str:
    """The id of the run ``ref`` names: a full id, a unique id prefix of 4+
    characters, or a run name (its latest run); ``run:ID`` is exactly the run
    ``ID``.

    Run ids can be chosen, so a full id that is also the start of another run's
    id, or another run's name, is ambiguous: a writer could otherwise start a run
    whose id is another run's short id and answer for it.

    Raises:
        InputError: no such run, or the prefix (or id) is ambiguous.
    """
    from mltrail.index.check import repaired, runs_differ

    found = _resolve_run(index, ref)
    if repaired(index, runs_differ(index, [found])):
        found = _resolve_run(index, ref)
    return found


def _resolve_run(index: Index, ref: str) -> str:
    ref = ref.strip()
    typed = ref.removeprefix("run:") if ref.startswith("run:") else None
    if typed is not None and index.query("SELECT 1 FROM runs WHERE id = ?", (typed,)):
        return typed
    if index.query("SELECT 1 FROM runs WHERE id = ?", (ref,)):
        _refuse_shadowed(index, ref)
        return ref
    if typed:
        ref = typed
    if len(ref) >= _MIN_PREFIX:
        low, high = _prefix_range(ref)
        ids = [r[0] for r in index.query(
            "SELECT id FROM runs WHERE id >= ? AND id < ? LIMIT 6", (low, high)
        )]  # fmt: skip
        if len(ids) == 1:
            return str(ids[0])
        if len(ids) > 1:
            raise InputError(
                f"{ref!r} matches several runs: {', '.join(ids[:5])}",
                hint="give more characters of the id",
            )
    named = index.query(
        "SELECT id, user FROM runs WHERE name = ? "
        "ORDER BY started_ts DESC, seq DESC LIMIT 1",
        (ref,),
    )
    if named:
        _refuse_shared_name(index, ref, named[0][1])
        return str(named[0][0])
    close = close_runs(index, ref)
    raise InputError(
        f"no run {ref!r} in this ledger"
        + (f"; did you mean {' or '.join(close)}?" if close else ""),
        hint="give a run id, a prefix of one, or a run name; see `mltrail runs`",
    )


def _refuse_shadowed(index: Index, run_id: str) -> None:
    """Refuse ``run_id`` when it also starts another run's id or names another run.

    Raises:
        InputError: naming the runs it could mean, with ``run:ID`` as the exact form.
    """
    low, high = _prefix_range(run_id)
    others = [r[0] for r in index.query(
        "SELECT id FROM runs WHERE id > ? AND id < ? "
        "UNION SELECT id FROM runs WHERE name = ? AND id != ? LIMIT 5",
        (low, high, run_id, run_id),
    )]  # fmt: skip
    if others:
        shown = ", ".join(sorted({run_id, *others}))
        raise InputError(
            f"{run_id!r} matches several runs: {shown} (it is the id of one and the "
            "start of another's id or another's name)",
            hint=f"give a full id, or run:{run_id} for the run of exactly that id",
        )


NAME_STARTERS = (
    "SELECT (SELECT user FROM runs WHERE name = ?1 ORDER BY user LIMIT 1), "
    "(SELECT user FROM runs WHERE name = ?1 ORDER BY user DESC LIMIT 1)"
)
"""The lowest and highest starter of the runs of one name (``_refuse_shared_name``)."""


def _refuse_shared_name(index: Index, name: str, user: str | None) -> None:
    """Refuse a run name that runs of more than one starter bear.

    "Its latest run" is chosen by start time, which each writer dates: another
    user could start a run of the same name (dated ahead, or pushed from an
    offline ledger) and answer for it.

    Raises:
        InputError: naming each starter's latest run of that name.
    """
    # the lowest and highest starter of the name (NULL sorts first): two seeks in
    # runs_name_user, where reading each run of a name of 2,000 runs took 9 ms
    ((low, high),) = index.query(NAME_STARTERS, (name,))
    if low == high == user:
        return
    rows = index.query(
        "SELECT user, id FROM runs WHERE name = ? ORDER BY started_ts DESC, seq DESC",
        (name,),
    )
    latest: dict[str | None, str] = {}
    for who, run in rows:
        latest.setdefault(who, run)
    shown = ", ".join(
        f"{who or '(no user)'}'s {run}" for who, run in list(latest.items())[:5]
    )
    raise InputError(
        f"{name!r} names runs started by {len(latest)} users (latest: {shown})",
        hint=f"give a run id or a prefix of one; `mltrail runs --name {name}` lists them",
    )


def close_runs(index: Index, ref: str, limit: int = 3) -> list[str]:
    """Run ids and names that look like ``ref`` (a mistyped one), closest first."""
    rows = index.query("SELECT id, name FROM runs")
    known = {str(v) for row in rows for v in row if v}
    import difflib  # only for a ref that names nothing

    return difflib.get_close_matches(ref, sorted(known), n=limit, cutoff=0.6)


class RunView(Value):
    """Everything the ledger holds about one run, in seq order."""

    __match_args__ = ("id", "summary", "records", "purged")
    id: str
    summary: RunSummary
    records: list[Record]
    purged: list[dict[str, Any]]
    """The run's blob references whose blob was purged, with what the purge
    record says (see :func:`mltrail.ledger.purged.purged_refs`)."""

    def __init__(
        self,
        id: str,
        summary: RunSummary,
        records: list[Record],
        purged: list[dict[str, Any]] | None = None,
    ) -> None:
        self.id = id
        self.summary = summary
        self.records = records
        self.purged = [] if purged is None else purged

    def all(self, kind: str) -> list[Record]:
        """The run's records of ``kind``."""
        return [r for r in self.records if r.entry.kind == kind]

    def bodies(self, kind: str) -> list[dict[str, Any]]:
        """The bodies of the run's records of ``kind``."""
        return [dict(r.entry.body) for r in self.all(kind)]

    def body(self, kind: str) -> dict[str, Any] | None:
        """The body of the run's first record of ``kind`` (rank 0's, if several)."""
        found = self.bodies(kind)
        return found[0] if found else None

    def added_by_others(self) -> dict[str, Any] | None:
        """The run's records (notes aside) signed by another user than the one
        who started it, or None (see :func:`mltrail.core.run_owner.added_by_others`)."""
        from mltrail.core.run_owner import added_by_others

        return added_by_others(self.records)

    def params(self) -> dict[str, tuple[Any, str]]:
        """Every parameter with the source it came from (later entries win)."""
        merged: dict[str, tuple[Any, str]] = {}
        for body in self.bodies("run.params"):
            file = body.get("file") if isinstance(body.get("file"), dict) else None
            source = str(file["path"]) if file else str(body.get("source", "api"))
            for key, value in (body.get("params") or {}).items():
                merged[str(key)] = (value, source)
        return merged


def load_run(home: Home, index: Index, run_id: str) -> RunView:
    """A run's records read from the ledger, located through the index.

    Raises:
        InputError: no such run.
    """
    from mltrail.index.check import repaired, runs_differ

    repaired(index, runs_differ(index, [run_id]))
    rows = index.query(f"SELECT {_COLUMNS} FROM runs WHERE id = ?", (run_id,))  # noqa: S608
    if not rows:
        raise InputError(f"no run {run_id!r} in this ledger", hint="see `mltrail runs`")
    seqs = [
        r[0]
        for r in index.query(
            "SELECT seq FROM records WHERE run = ? ORDER BY seq", (run_id,)
        )
    ]
    from mltrail.ledger.purged import purged_refs

    records = list(_records(home, seqs))
    purged = purged_refs(home.ledger, records)
    return RunView(run_id, _summary(home, rows[0]), records, purged)


def _records(home: Home, seqs: list[int]) -> Iterator[Record]:
    """Records by seq, fetched in contiguous ranges.

    A range takes in the records between those wanted: when one of them cannot
    be read (the index left it out; ``mltrail verify`` names it), the range is
    read again one wanted record at a time, so an unreadable neighbour does not
    stop a reader (an unreadable wanted record still raises).
    """
    wanted = set(seqs)
    for start, stop in _ranges(seqs):
        try:
            found = [r for r in home.ledger.records(start, stop) if r.seq in wanted]
        except MltrailError:
            found = [
                record
                for seq in range(start, stop)
                if seq in wanted
                for record in home.ledger.records(seq, seq + 1)
            ]
        yield from found


def _ranges(seqs: list[int], gap: int = 8) -> Iterator[tuple[int, int]]:
    if not seqs:
        return
    start = prev = seqs[0]
    for seq in seqs[1:]:
        if seq - prev > gap:
            yield start, prev + 1
            start = seq
        prev = seq
    yield start, prev + 1
