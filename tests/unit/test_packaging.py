"""pyproject's extras, the README's commands and CI stay in step.

Extras list their packages in full: the pip of a fresh ``python3 -m venv`` (23.2)
cannot resolve an extra that names the project's own extras.
"""

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).parents[2]
EXTRAS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
    "optional-dependencies"
]
HEAVY = {"torch", "transformers", "peft", "accelerate", "lightning"}


def _reqs(extra: str) -> dict[str, Requirement]:
    return {canonicalize_name(r.name): r for r in map(Requirement, EXTRAS[extra])}


def _covers(big: str, small: str) -> None:
    have = _reqs(big)
    for name, req in _reqs(small).items():
        assert name in have, f"{big} lacks {req} (from {small})"
        assert have[name].specifier == req.specifier, f"{big}: {have[name]} vs {req}"
        assert req.extras <= have[name].extras, f"{big}: {have[name]} vs {req}"


def test_no_extra_names_the_project_itself():
    for extra, reqs in EXTRAS.items():
        assert not any(r.startswith("mltrail") for r in reqs), extra


def test_test_has_every_light_extra_and_no_torch():
    for extra in ("parquet", "remote", "models", "postgres", "timestamps", "report",
                  "intoto", "openlineage", "client", "server"):  # fmt: skip
        _covers("test", extra)
    assert not HEAVY & set(_reqs("test"))


def test_dev_is_test_plus_finetune_the_frameworks_and_mlflow():
    heavy = ("finetune", "huggingface", "lightning", "mlflow")
    _covers("dev", "test")
    for extra in heavy:
        _covers("dev", extra)
    _covers("finetune", "models")
    assert set(_reqs("dev")) == set(_reqs("test")).union(*map(_reqs, heavy))
    assert not set(_reqs("mlflow")) & set(_reqs("test"))


def test_ci_installs_what_the_readme_test_command_installs():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    commands = re.findall(r"^python3 -m venv .*$", readme, re.MULTILINE)
    test_command = next(c for c in commands if "pytest" in c)
    install = re.search(r"pip install (.*?) &&", test_command)
    assert install is not None
    assert f"python -m pip install -q {install[1]}\n" in ci
    pytest_args = test_command.partition("python -m pytest")[2]
    assert pytest_args == " -n logical"  # parallel on every core (pytest-xdist)
    assert f"python -m pytest -q{pytest_args}\n" in ci
    assert "--upgrade pip" not in ci  # the README's fresh venv keeps its own pip
