"""capture_hardware: CPU and memory from (fake) /proc, GPUs from (fake) nvidia-smi."""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
from pathlib import Path

import pytest

from mltrail.capture.machine import hardware
from mltrail.capture.machine.hardware import (
    capture_hardware,
    capture_nvidia_smi,
    parse_cpuinfo,
    parse_meminfo,
)

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc"
)

TWO_GPUS = (
    "0, NVIDIA A100-SXM4-80GB, 81920, 535.104.05, GPU-aaaa-0000, 00000000:07:00.0\n"
    "1, NVIDIA A100-SXM4-80GB, 81920, 535.104.05, GPU-bbbb-1111, 00000000:0F:00.0\n"
)
MEMINFO = "MemTotal:       16318412 kB\nMemFree:         1000000 kB\nMemAvailable:   12000000 kB\n"


@pytest.fixture(autouse=True)
def fresh_nvidia_smi_cache():
    hardware._query_nvidia_smi.cache_clear()
    yield
    hardware._query_nvidia_smi.cache_clear()


def cpuinfo(
    sockets: int, cores: int, threads: int, model: str = "Intel(R) Xeon(R) Gold"
) -> str:
    blocks = []
    for socket in range(sockets):
        for _thread in range(threads):
            for core in range(cores):
                blocks.append(
                    f"processor\t: {len(blocks)}\nvendor_id\t: GenuineIntel\n"
                    f"model name\t: {model}\nphysical id\t: {socket}\n"
                    f"siblings\t: {cores * threads}\ncore id\t\t: {core}\n"
                    f"cpu cores\t: {cores}\nflags\t\t: fpu vme\n"
                )
    return "\n".join(blocks) + "\n"


def fake_proc(tmp_path: Path, cpu: str, mem: str = MEMINFO) -> Path:
    root = tmp_path / "root"
    (root / "proc").mkdir(parents=True)
    (root / "proc" / "cpuinfo").write_text(cpu)
    (root / "proc" / "meminfo").write_text(mem)
    return root


def fake_nvidia_smi(tmp_path: Path, script: str) -> dict[str, str]:
    """An environment whose PATH holds only an ``nvidia-smi`` running ``script``."""
    bin_dir = tmp_path / "smi-bin"
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / "nvidia-smi"
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)
    return {"PATH": str(bin_dir)}


def printing(text: str) -> str:
    return f"printf '%s' '{text}'"


@pytest.fixture
def no_tools(tmp_path) -> dict[str, str]:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    return {"PATH": str(empty)}


def test_this_machine(no_tools):
    body = capture_hardware(no_tools)
    assert set(body) == {"cpu", "memory", "gpus", "gpu_count", "gpu_note"}
    assert body["gpus"] == []
    assert body["gpu_count"] == 0
    assert body["gpu_note"] == "no GPU found: nvidia-smi is not installed"
    assert body["cpu"]["logical_cores"] == os.cpu_count()
    assert body["cpu"]["arch"]
    json.dumps(body, allow_nan=False)


@pytest.mark.skipif(
    shutil.which("nvidia-smi") is not None, reason="this machine has a GPU"
)
def test_this_machine_without_a_gpu():
    body = capture_hardware()
    assert body["gpus"] == []
    assert body["gpu_note"].startswith("no GPU found:")


@linux_only
def test_this_machine_memory_and_affinity(no_tools):
    body = capture_hardware(no_tools)
    assert body["memory"]["total_bytes"] > 0
    assert 0 < body["memory"]["available_bytes"] <= body["memory"]["total_bytes"]
    assert body["cpu"]["available_cores"] == len(os.sched_getaffinity(0))


@linux_only
def test_two_sockets_two_cores_with_hyperthreading(tmp_path, no_tools):
    root = fake_proc(tmp_path, cpuinfo(sockets=2, cores=2, threads=2))
    body = capture_hardware(no_tools, root=root)
    assert body["cpu"]["model"] == "Intel(R) Xeon(R) Gold"
    assert body["cpu"]["physical_cores"] == 4
    assert body["memory"] == {
        "total_bytes": 16318412 * 1024,
        "available_bytes": 12000000 * 1024,
    }


@linux_only
def test_missing_proc_files(tmp_path, no_tools):
    body = capture_hardware(no_tools, root=tmp_path)
    assert body["cpu"]["model"] is None
    assert body["cpu"]["physical_cores"] is None
    assert body["memory"] == {"total_bytes": None, "available_bytes": None}


def test_parse_cpuinfo_without_core_ids():
    arm = "processor\t: 0\nBogoMIPS\t: 108.00\n\nprocessor\t: 1\n\nModel\t\t: Raspberry Pi 4\n"
    assert parse_cpuinfo(arm) == ("Raspberry Pi 4", None)
    assert parse_cpuinfo("") == (None, None)


def test_parse_cpuinfo_single_socket():
    assert parse_cpuinfo(cpuinfo(sockets=1, cores=8, threads=1, model="AMD EPYC")) == (
        "AMD EPYC",
        8,
    )


def test_parse_meminfo():
    assert parse_meminfo(MEMINFO) == (16318412 * 1024, 12000000 * 1024)
    assert parse_meminfo("MemTotal: 1024 kB\n") == (1024 * 1024, None)
    assert parse_meminfo("") == (None, None)


def test_two_gpus(tmp_path):
    env = fake_nvidia_smi(tmp_path, printing(TWO_GPUS))
    body = capture_hardware(env)
    assert body["gpus"] == [
        {
            "index": 0,
            "name": "NVIDIA A100-SXM4-80GB",
            "memory_total_bytes": 81920 * 2**20,
            "driver": "535.104.05",
            "uuid": "GPU-aaaa-0000",
            "pci_bus_id": "00000000:07:00.0",
        },
        {
            "index": 1,
            "name": "NVIDIA A100-SXM4-80GB",
            "memory_total_bytes": 81920 * 2**20,
            "driver": "535.104.05",
            "uuid": "GPU-bbbb-1111",
            "pci_bus_id": "00000000:0F:00.0",
        },
    ]
    assert body["gpu_count"] == 2
    assert body["gpu_note"] is None
    json.dumps(body, allow_nan=False)


def test_gpu_memory_not_available(tmp_path):
    line = "0, Tesla T4, [N/A], 535.1, GPU-x, 00000000:00:04.0\n"
    gpu = capture_hardware(fake_nvidia_smi(tmp_path, printing(line)))["gpus"][0]
    assert gpu["memory_total_bytes"] is None
    assert gpu["name"] == "Tesla T4"


def test_nvidia_smi_failing_gives_a_note(tmp_path):
    script = (
        "echo \"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA "
        'driver."; exit 9'
    )
    body = capture_hardware(fake_nvidia_smi(tmp_path, script))
    assert body["gpus"] == []
    assert body["gpu_count"] == 0
    assert body["gpu_note"] == (
        "no GPU found: nvidia-smi failed (exit 9): NVIDIA-SMI has failed because it "
        "couldn't communicate with the NVIDIA driver."
    )


def test_nvidia_smi_listing_nothing(tmp_path):
    body = capture_hardware(fake_nvidia_smi(tmp_path, "exit 0"))
    assert body["gpus"] == []
    assert body["gpu_note"] == "no GPU found: nvidia-smi lists none"


def test_nvidia_smi_timeout_gives_a_note(tmp_path, monkeypatch):
    monkeypatch.setattr(hardware, "_TIMEOUT_S", 0.2)
    env = fake_nvidia_smi(tmp_path, f"exec {shutil.which('sleep')} 5")
    body = capture_hardware(env)
    assert body["gpu_note"] == "no GPU found: nvidia-smi timed out after 0.2 s"


def test_nvidia_smi_runs_once_per_path_even_from_two_threads(tmp_path):
    calls = tmp_path / "calls"
    script = f"echo run >> '{calls}'\n{printing(TWO_GPUS)}"
    env = fake_nvidia_smi(tmp_path, script)
    threads = [threading.Thread(target=capture_hardware, args=(env,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    capture_nvidia_smi(env["PATH"])
    assert calls.read_text().count("run") == 2  # the GPU query and the header, once


def test_capture_nvidia_smi_returns_copies(tmp_path):
    env = fake_nvidia_smi(tmp_path, printing(TWO_GPUS))
    first = capture_nvidia_smi(env["PATH"])
    first["gpus"][0]["name"] = "changed"
    first["gpus"].clear()
    again = capture_nvidia_smi(env["PATH"])
    assert again["gpus"][0]["name"] == "NVIDIA A100-SXM4-80GB"
    assert again["driver"] == "535.104.05"
    assert again["error"] is None
