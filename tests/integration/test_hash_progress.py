"""Hashing progress through the services: datasets, outputs, wrapped commands."""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path

import pytest

from mltrail.capture.data import progress
from mltrail.capture.data.progress import HashProgress, count_progress
from mltrail.cli import hash_bar
from mltrail.record.datasets import artifact_body, dataset_body


class Recorder:
    """A progress factory that remembers every label and report, in order."""

    def __init__(self, log: Path | None = None) -> None:
        self.log = log
        self.events: list[tuple[str, str]] = []
        self.reports: dict[str, list[HashProgress]] = {}

    @contextlib.contextmanager
    def __call__(self, label: str):
        self._event("open", label)
        reports = self.reports.setdefault(label, [])
        try:
            yield reports.append
        finally:
            self._event("close", label)

    def _event(self, what: str, label: str) -> None:
        self.events.append((what, label))
        if self.log is not None:
            with self.log.open("a") as f:
                f.write(f"{what} {label}\n")


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    (root / "a.bin").write_bytes(b"a" * 100_000)
    (root / "sub" / "b.bin").write_bytes(b"b" * 50)
    return root


@pytest.fixture
def no_delay(monkeypatch):
    monkeypatch.setattr(progress, "PROGRESS_DELAY_S", 0.0)


def test_dataset_body_reports_counts_to_the_factory(data: Path, no_delay):
    recorder = Recorder()
    body = dataset_body("train", data, progress=recorder)
    label = f"hashing train {data}"
    assert recorder.events == [("open", label), ("close", label)]
    last = recorder.reports[label][-1]
    assert (last.files_done, last.files_total) == (2, 2)
    assert last.bytes_done == last.bytes_total == body["bytes"] == 100_050


def test_artifact_body_reports_counts_to_the_factory(data: Path, no_delay):
    recorder = Recorder()
    artifact_body(data / "a.bin", progress=recorder)
    (label,) = recorder.reports
    assert label == f"hashing output {data / 'a.bin'}"
    assert recorder.reports[label][-1].files_done == 1


def test_without_a_factory_nothing_changes(data: Path, no_delay):
    recorder = Recorder()
    with_bar = dataset_body("train", data, progress=recorder)
    assert dataset_body("train", data) == with_bar


def test_quick_hashing_reports_nothing(data: Path):
    recorder = Recorder()
    dataset_body("train", data, progress=recorder)
    assert recorder.reports == {f"hashing train {data}": []}


def test_inputs_are_hashed_before_the_command_and_outputs_after(
    tmp_path: Path, data: Path, no_delay, isolated_home
):
    from mltrail.record.runs import open_or_create_home
    from mltrail.record.wrapper import WrapOptions, record_command

    log = tmp_path / "events.log"
    out = tmp_path / "out"
    script = f"import pathlib; pathlib.Path({str(out)!r}).write_text('model'); "
    script += f"open({str(log)!r}, 'a').write('command\\n')"
    options = WrapOptions(data=[("train", data)], outputs=[out], progress=Recorder(log))
    home = open_or_create_home(None, {"MLTRAIL_HOME": str(isolated_home)})
    try:
        result = record_command(home, [sys.executable, "-c", script], options)
    finally:
        home.close()
    assert result.status == "succeeded"
    assert log.read_text().splitlines() == [
        f"open hashing train {data}",
        f"close hashing train {data}",
        "command",
        f"open hashing output {out}",
        f"close hashing output {out}",
    ]


def test_count_progress_waits_a_second_then_reports_objects(monkeypatch):
    seen: list[HashProgress] = []
    counted = count_progress(seen.append)
    assert counted is not None
    counted(1, 3)
    counted(3, 3)  # the last: shown only when something was shown before
    assert seen == []
    monkeypatch.setattr(progress, "PROGRESS_DELAY_S", 0.0)
    counted = count_progress(seen.append)
    assert counted is not None
    counted(1, 3)
    counted(3, 3)
    assert [(p.files_done, p.files_total) for p in seen] == [(1, 3), (3, 3)]
    assert count_progress(None) is None


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_bar_is_offered_only_on_a_terminal_and_when_not_quiet(monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert hash_bar.hash_bar_factory() is None
    monkeypatch.setattr(sys, "stderr", _Terminal())
    assert hash_bar.hash_bar_factory() is hash_bar.hash_bar
    assert hash_bar.hash_bar_factory(quiet=True) is None


def test_the_bar_draws_files_and_bytes_then_goes(monkeypatch):
    from mltrail.cli import output

    terminal = _Terminal()
    console = output.err_console.__class__(
        file=terminal, force_terminal=True, width=120
    )
    monkeypatch.setattr(output, "err_console", console)
    with hash_bar.hash_bar("hashing train data") as bar:
        bar(HashProgress(3, 2048, 10, 4096, 10, 1.5))
        assert bar.progress is not None
        bar.progress.refresh()
    assert bar.progress is None
    shown = terminal.getvalue()
    assert "hashing train data" in shown
    assert "3/10 files" in shown
