"""capture_environment: interpreter, packages, OS, container, CUDA and variables."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mltrail.capture.machine import environment, hardware
from mltrail.capture.machine.environment import (
    capture_environment,
    is_recorded_variable,
    read_torch_version_file,
)
from mltrail.capture.run.blob import Blob

SMI_HEADER = """\
+-----------------------------------------------------------------------------+
| NVIDIA-SMI 550.54.15    Driver Version: 550.54.15    CUDA Version: 12.4     |
+-----------------------------------------------------------------------------+
"""
SMI_QUERY = "0, NVIDIA H100 80GB HBM3, 81559, 550.54.15, GPU-1111, 00000000:18:00.0\n"


@pytest.fixture(autouse=True)
def fresh_nvidia_smi_cache():
    hardware._query_nvidia_smi.cache_clear()
    yield
    hardware._query_nvidia_smi.cache_clear()


@pytest.fixture
def no_tools(tmp_path) -> dict[str, str]:
    """An environment whose PATH holds no tool at all."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    return {"PATH": str(empty)}


def fake_nvidia_smi(tmp_path: Path) -> Path:
    """A directory holding an ``nvidia-smi`` script: CSV for queries, else the header."""
    bin_dir = tmp_path / "smi-bin"
    bin_dir.mkdir()
    script = bin_dir / "nvidia-smi"
    script.write_text(
        "#!/bin/sh\n"
        f"if [ $# -gt 0 ]; then printf '%s' '{SMI_QUERY}'; exit 0; fi\n"
        f"cat <<'EOF'\n{SMI_HEADER}EOF\n"
    )
    script.chmod(0o755)
    return bin_dir


def lines_of(body: dict) -> list[str]:
    blob = body["packages"]["list"]
    assert isinstance(blob, Blob)
    assert blob.media_type == "text/plain"
    return blob.data.decode().splitlines()


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def json_safe(body: dict) -> str:
    def swap(value):
        if isinstance(value, Blob):
            return {"blob": "sha256:" + hashlib.sha256(value.data).hexdigest()}
        if isinstance(value, dict):
            return {k: swap(v) for k, v in value.items()}
        if isinstance(value, list):
            return [swap(v) for v in value]
        return value

    return json.dumps(swap(body), allow_nan=False)


def write_dist(site: Path, name: str, version: str, direct_url: dict | None = None):
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\nA long description.\n"
        "Name: not-a-header\n"
    )
    if direct_url is not None:
        (info / "direct_url.json").write_text(json.dumps(direct_url))


# --- shape and packages -----------------------------------------------------------


def test_body_shape_and_types():
    body = capture_environment()
    assert set(body) == {
        "python",
        "python_probe_error",
        "packages",
        "editable",
        "conda",
        "os",
        "container",
        "cuda",
        "variables",
    }
    python = body["python"]
    assert python["version"] == ".".join(map(str, sys.version_info[:3]))
    assert python["implementation"] == "CPython"
    assert python["executable"] == sys.executable
    assert python["prefix"] == sys.prefix
    assert python["base_prefix"] == sys.base_prefix
    assert python["virtualenv"] is (sys.prefix != sys.base_prefix)
    assert body["python_probe_error"] is None
    assert set(body["os"]) == {
        "system",
        "release",
        "version",
        "machine",
        "distribution",
        "libc",
    }
    assert all(isinstance(v, str) for v in body["variables"].values())
    json_safe(body)


def test_packages_list_this_venv_sorted_and_deduped():
    body = capture_environment()
    lines = lines_of(body)
    assert f"pytest=={importlib.metadata.version('pytest')}" in lines
    assert f"mltrail=={importlib.metadata.version('mltrail')}" in lines
    names = [normalize(line.split("==")[0]) for line in lines]
    assert names == sorted(names)
    assert len(names) == len(set(names))
    assert body["packages"]["count"] == len(lines)
    data = body["packages"]["list"].data
    assert body["packages"]["sha256"] == hashlib.sha256(data).hexdigest()


def test_first_distribution_on_sys_path_wins(tmp_path, monkeypatch):
    site = tmp_path / "site"
    write_dist(site, "PyTest", "0.0.1")
    monkeypatch.syspath_prepend(str(site))
    lines = lines_of(capture_environment())
    assert [line for line in lines if normalize(line.split("==")[0]) == "pytest"] == [
        "PyTest==0.0.1"
    ]


def test_editable_and_direct_url_installs_are_listed(tmp_path, monkeypatch):
    site = tmp_path / "site"
    vcs = {
        "url": "https://github.com/org/lib.git",
        "vcs_info": {"vcs": "git", "commit_id": "a" * 40},
    }
    write_dist(site, "from-vcs", "1.0", vcs)
    write_dist(site, "plain", "2.0")
    monkeypatch.syspath_prepend(str(site))
    editable = capture_environment()["editable"]
    by_name = {item["name"]: item for item in editable}
    assert by_name["from-vcs"] == {
        "name": "from-vcs",
        "version": "1.0",
        "url": "https://github.com/org/lib.git",
        "editable": False,
        "vcs": "git",
        "commit": "a" * 40,
    }
    assert by_name["mltrail"]["editable"] is True
    assert by_name["mltrail"]["url"].startswith("file://")
    assert "plain" not in by_name


# --- another interpreter ------------------------------------------------------------


@pytest.fixture
def bare_venv(tmp_path) -> Path:
    path = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(path)],
        check=True,
        capture_output=True,
    )
    return path


def test_probe_of_another_interpreter(bare_venv):
    body = capture_environment(python=str(bare_venv / "bin" / "python"))
    assert body["python_probe_error"] is None
    assert os.path.realpath(body["python"]["prefix"]) == os.path.realpath(bare_venv)
    assert body["python"]["virtualenv"] is True
    assert body["packages"]["count"] <= 2  # --without-pip: nearly empty
    assert not any(line.startswith("pytest==") for line in lines_of(body))
    assert not any(item["name"] == "mltrail" for item in body["editable"])


def test_probe_finds_a_bare_name_on_the_given_path(bare_venv):
    env = {"PATH": str(bare_venv / "bin")}
    body = capture_environment(env, python="python")
    assert body["python_probe_error"] is None
    assert os.path.realpath(body["python"]["prefix"]) == os.path.realpath(bare_venv)


@pytest.mark.skipif(sys.prefix == sys.base_prefix, reason="needs to run inside a venv")
def test_base_interpreter_of_this_venv_is_probed_not_mistaken_for_it():
    base = os.path.realpath(sys.executable)  # the venv's python links to it
    body = capture_environment(python=base)
    assert body["python_probe_error"] is None
    assert body["python"]["prefix"] == sys.base_prefix
    assert body["python"]["virtualenv"] is False


def test_this_interpreter_is_not_probed():
    body = capture_environment(python=sys.executable)
    assert body["python_probe_error"] is None
    assert body["python"]["executable"] == sys.executable


def test_failing_probe_falls_back_to_this_interpreter():
    body = capture_environment(python="/bin/false")
    assert body["python_probe_error"].startswith("could not probe /bin/false:")
    assert body["python"]["executable"] == sys.executable
    assert any(line.startswith("pytest==") for line in lines_of(body))


def test_probe_printing_garbage_falls_back(tmp_path):
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'not json'\n")
    fake.chmod(0o755)
    body = capture_environment(python=str(fake))
    assert body["python_probe_error"].startswith(f"could not probe {fake}:")
    assert body["python"]["executable"] == sys.executable


def test_probe_timeout_falls_back(tmp_path, monkeypatch):
    monkeypatch.setattr(environment, "_TIMEOUT_S", 0.2)
    fake = tmp_path / "python"
    fake.write_text(f"#!/bin/sh\nexec {shutil.which('sleep')} 5\n")
    fake.chmod(0o755)
    body = capture_environment(python=str(fake))
    assert (
        body["python_probe_error"]
        == f"could not probe {fake}: it timed out after 0.2 s"
    )


def test_interpreter_not_on_path(no_tools):
    body = capture_environment(no_tools, python="python3")
    assert body["python_probe_error"] == "python3 was not found on PATH"
    assert body["python"]["executable"] == sys.executable


# --- conda, OS, container -------------------------------------------------------------


def test_conda():
    env = {"CONDA_DEFAULT_ENV": "train", "CONDA_PREFIX": "/opt/conda/envs/train"}
    assert capture_environment(env)["conda"] == {
        "env": "train",
        "prefix": "/opt/conda/envs/train",
    }
    assert capture_environment({})["conda"] is None


def test_os_distribution_from_os_release(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "os-release").write_text(
        'NAME="Ubuntu"\nPRETTY_NAME="Ubuntu 22.04.4 LTS"\nID=ubuntu\n'
    )
    os_body = capture_environment({}, root=tmp_path)["os"]
    assert os_body["distribution"] == "Ubuntu 22.04.4 LTS"
    assert os_body["system"]
    assert os_body["libc"] is None or re.fullmatch(r"glibc \d+\.\d+", os_body["libc"])


def test_os_release_fallback_and_absence(tmp_path):
    assert capture_environment({}, root=tmp_path)["os"]["distribution"] is None
    (tmp_path / "usr" / "lib").mkdir(parents=True)
    (tmp_path / "usr" / "lib" / "os-release").write_text(
        "PRETTY_NAME='Fedora Linux 40'\n"
    )
    assert (
        capture_environment({}, root=tmp_path)["os"]["distribution"]
        == "Fedora Linux 40"
    )


def fake_root(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.mark.parametrize(
    ("files", "env", "runtime"),
    [
        ({}, {}, None),
        ({".dockerenv": ""}, {}, "docker"),
        ({"run/.containerenv": ""}, {}, "podman"),
        ({"proc/1/cgroup": "0::/machine.slice/libpod-abc.scope\n"}, {}, "podman"),
        ({"proc/1/cgroup": "12:cpu:/docker/0123abcd\n"}, {}, "docker"),
        ({"proc/1/cgroup": "1:cpu:/kubepods/burstable/pod1/abc\n"}, {}, "kubernetes"),
        (
            {"proc/1/cgroup": "0::/system.slice/containerd-abc.scope\n"},
            {},
            "containerd",
        ),
        ({"proc/1/cgroup": "0::/init.scope\n"}, {}, None),
        ({}, {"container": "podman"}, "podman"),
        ({}, {"container": "lxc"}, "unknown"),
        ({".dockerenv": ""}, {"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, "kubernetes"),
    ],
)
def test_container_runtime(tmp_path, files, env, runtime):
    container = capture_environment(env, root=fake_root(tmp_path, files))["container"]
    assert (container and container["runtime"]) == runtime


def test_container_image_and_kubernetes_details(tmp_path):
    namespace = "var/run/secrets/kubernetes.io/serviceaccount/namespace"
    root = fake_root(tmp_path, {".dockerenv": "", namespace: "team-a\n"})
    env = {
        "KUBERNETES_SERVICE_HOST": "10.0.0.1",
        "HOSTNAME": "trainer-0",
        "NODE_NAME": "gpu-node-3",
        "MLTRAIL_IMAGE": "registry.example/train:1.2",
        "MLTRAIL_IMAGE_DIGEST": "sha256:" + "b" * 64,
    }
    assert capture_environment(env, root=root)["container"] == {
        "runtime": "kubernetes",
        "image": "registry.example/train:1.2",
        "digest": "sha256:" + "b" * 64,
        "kubernetes": {"pod": "trainer-0", "namespace": "team-a", "node": "gpu-node-3"},
    }
    env |= {"POD_NAME": "trainer-abc", "POD_NAMESPACE": "team-b"}
    kubernetes = capture_environment(env, root=root)["container"]["kubernetes"]
    assert kubernetes == {
        "pod": "trainer-abc",
        "namespace": "team-b",
        "node": "gpu-node-3",
    }


def test_plain_docker_has_no_kubernetes_section(tmp_path):
    container = capture_environment({}, root=fake_root(tmp_path, {".dockerenv": ""}))
    assert container["container"] == {
        "runtime": "docker",
        "image": None,
        "digest": None,
        "kubernetes": None,
    }


# --- CUDA ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "cuda"),
    [
        ("__version__ = '2.3.0+cu121'\ncuda = '12.1'\n", "12.1"),
        ("cuda: Optional[str] = '12.1'\nhip: Optional[str] = None\n", "12.1"),
        ('cuda: Optional[str] = "11.8"\n', "11.8"),
        ("cuda = None\n", None),
        ("", None),
    ],
)
def test_read_torch_version_file(tmp_path, text, cuda):
    path = tmp_path / "version.py"
    path.write_text(text)
    assert read_torch_version_file(path)["cuda"] == cuda


def test_read_torch_version_file_fields(tmp_path):
    path = tmp_path / "version.py"
    path.write_text(
        "from typing import Optional\n\n__all__ = ['__version__']\n"
        "__version__ = '2.3.0+cu121'\ndebug = False\ncuda: Optional[str] = '12.1'\n"
        "git_version = 'abc123'\nhip: Optional[str] = None\n"
    )
    assert read_torch_version_file(path) == {
        "version": "2.3.0+cu121",
        "cuda": "12.1",
        "cudnn": None,
        "git_version": "abc123",
        "hip": None,
    }
    assert read_torch_version_file(tmp_path / "missing.py")["cuda"] is None


@pytest.fixture
def fake_torch_site(tmp_path, monkeypatch) -> Path:
    """A site-packages dir with a CUDA torch (that must not be imported) and cuDNN."""
    site = tmp_path / "site"
    write_dist(site, "torch", "2.3.0+cu121")
    write_dist(site, "nvidia-cudnn-cu12", "8.9.2.26")
    (site / "torch").mkdir()
    (site / "torch" / "__init__.py").write_text(
        "raise RuntimeError('imported torch')\n"
    )
    (site / "torch" / "version.py").write_text(
        "__version__ = '2.3.0+cu121'\ncuda: Optional[str] = '12.1'\n"
    )
    monkeypatch.syspath_prepend(str(site))
    # other test modules may have imported the real torch (mltrail[finetune])
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    return site


def test_cuda_from_torch_metadata_without_importing_torch(fake_torch_site, no_tools):
    cuda = capture_environment(no_tools)["cuda"]
    assert cuda == {
        "driver": None,
        "cuda": None,
        "torch": "2.3.0+cu121",
        "torch_cuda": "12.1",
        "cudnn": "8.9.2.26",
    }
    assert "torch" not in sys.modules


def test_cuda_with_nvidia_smi(fake_torch_site, tmp_path):
    env = {"PATH": str(fake_nvidia_smi(tmp_path))}
    cuda = capture_environment(env)["cuda"]
    assert cuda["driver"] == "550.54.15"
    assert cuda["cuda"] == "12.4"
    assert cuda["torch_cuda"] == "12.1"


def test_cuda_is_none_without_nvidia_smi_or_torch(no_tools):
    assert capture_environment(no_tools)["cuda"] is None


def test_cuda_from_nvidia_smi_alone(tmp_path, monkeypatch):
    # no torch on the path, even where the dev extras installed one
    kept = [p for p in sys.path if "site-packages" not in p]
    monkeypatch.setattr(sys, "path", kept)
    env = {"PATH": str(fake_nvidia_smi(tmp_path))}
    assert capture_environment(env)["cuda"] == {
        "driver": "550.54.15",
        "cuda": "12.4",
        "torch": None,
        "torch_cuda": None,
        "cudnn": None,
    }


# --- variables ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "recorded"),
    [
        ("MASTER_PORT", True),
        ("CUDA_VISIBLE_DEVICES", True),
        ("PATH", True),
        ("HF_TOKEN", True),
        ("NCCL_DEBUG", True),
        ("MLTRAIL_RUN_ID", True),
        ("AWS_REGION", False),
        ("HOME", False),
        ("PATHEXT", False),
        ("hf_token", False),
    ],
)
def test_is_recorded_variable(name, recorded):
    assert is_recorded_variable(name) is recorded


def test_extra_variables():
    assert is_recorded_variable("AWS_REGION", ("AWS_REGION",)) is True


def test_variables_are_allow_listed_sorted_and_raw():
    env = {
        "WORLD_SIZE": "8",
        "HF_TOKEN": "hf_raw_value",
        "MASTER_PORT": "29500",
        "AWS_REGION": "eu-west-1",
        "HOME": "/root",
    }
    variables = capture_environment(env)["variables"]
    assert variables == {
        "HF_TOKEN": "hf_raw_value",
        "MASTER_PORT": "29500",
        "WORLD_SIZE": "8",
    }
    assert list(variables) == sorted(variables)
    with_extra = capture_environment(env, extra_vars=["AWS_REGION"])["variables"]
    assert with_extra["AWS_REGION"] == "eu-west-1"
