"""The machine a run used: CPU, memory and GPUs.

``capture_hardware()`` returns the body of a ``run.hardware`` entry. On Linux it reads
``/proc/cpuinfo`` and ``/proc/meminfo`` (under an injectable ``root``); on macOS one
``sysctl`` call. GPUs come from one ``nvidia-smi`` query, run through
``capture_nvidia_smi()``, which caches its answer per ``PATH`` so the environment
collector (driver and CUDA version) reuses it instead of running ``nvidia-smi`` again.

A missing, failing or slow tool never raises: the body says what could not be read
(``gpu_note``).
"""

from __future__ import annotations

import functools
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["capture_hardware", "capture_nvidia_smi", "parse_cpuinfo", "parse_meminfo"]

_TIMEOUT_S = 10
_GPU_FIELDS = "index,name,memory.total,driver_version,uuid,pci.bus_id"
_CUDA_HEADER = re.compile(rb"CUDA Version:\s*([0-9][0-9.]*)")
_MODEL_KEYS = ("model name", "Processor", "cpu model", "Model")
_SYSCTL_NAMES = ("machdep.cpu.brand_string", "hw.memsize", "hw.physicalcpu")
_SMI_LOCK = threading.Lock()


def capture_hardware(
    env: Mapping[str, str] | None = None, *, root: Path = Path("/")
) -> dict[str, Any]:
    """The ``run.hardware`` body.

    Args:
        env: the environment the command runs with; its ``PATH`` is where
            ``nvidia-smi`` is looked for (default: this process's).
        root: where ``/proc`` is read from (tests use fakes).
    """
    env = os.environ if env is None else env
    smi = capture_nvidia_smi(env.get("PATH"))
    cpu, memory = _cpu_and_memory(root)
    return {
        "cpu": cpu,
        "memory": memory,
        "gpus": smi["gpus"],
        "gpu_count": len(smi["gpus"]),
        "gpu_note": _gpu_note(smi),
    }


def _cpu_and_memory(root: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``cpu`` and ``memory`` sections, from ``/proc`` or (macOS) ``sysctl``."""
    if sys.platform == "darwin":
        model, physical, total, available = _read_sysctl()
    elif sys.platform.startswith("linux"):
        model, physical = parse_cpuinfo(_read_text(root / "proc/cpuinfo"))
        total, available = parse_meminfo(_read_text(root / "proc/meminfo"))
    else:  # Windows and others: platform.processor() reads no subprocess there
        model, physical = platform.processor() or None, None
        total = available = None
    cpu = {
        "model": model,
        "arch": platform.machine(),
        "logical_cores": os.cpu_count(),
        "physical_cores": physical,
        "available_cores": _available_cores(),
    }
    return cpu, {"total_bytes": total, "available_bytes": available}


def parse_cpuinfo(text: str) -> tuple[str | None, int | None]:
    """CPU model and physical core count from the text of ``/proc/cpuinfo``.

    Physical cores are the distinct ``(physical id, core id)`` pairs; None when the
    file has no such fields (many ARM and some virtual machines).
    """
    model: str | None = None
    cores: set[tuple[str, str]] = set()
    for block in text.split("\n\n"):
        fields = _colon_fields(block)
        model = model or next((fields[k] for k in _MODEL_KEYS if fields.get(k)), None)
        if "physical id" in fields and "core id" in fields:
            cores.add((fields["physical id"], fields["core id"]))
    return model, len(cores) or None


def parse_meminfo(text: str) -> tuple[int | None, int | None]:
    """``MemTotal`` and ``MemAvailable`` in bytes from the text of ``/proc/meminfo``."""
    fields = _colon_fields(text)

    def kib(name: str) -> int | None:
        number = fields.get(name, "").removesuffix("kB").strip()
        return int(number) * 1024 if number.isdigit() else None

    return kib("MemTotal"), kib("MemAvailable")


def _colon_fields(text: str) -> dict[str, str]:
    """``key : value`` lines as a dict (first occurrence wins)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, colon, value = line.partition(":")
        if colon:
            fields.setdefault(key.strip(), value.strip())
    return fields


def _read_sysctl() -> tuple[str | None, int | None, int | None, None]:
    """macOS: CPU brand, physical cores and memory size from one ``sysctl`` call."""
    out, _ = _run_tool(["sysctl", "-n", *_SYSCTL_NAMES], shutil.which("sysctl"))
    lines = [*out.decode(errors="replace").splitlines(), "", "", ""]
    brand, memsize, physical = (line.strip() for line in lines[:3])
    return (
        brand or None,
        int(physical) if physical.isdigit() else None,
        int(memsize) if memsize.isdigit() else None,
        None,
    )


def _available_cores() -> int | None:
    """CPUs this process may run on (its affinity mask), where the OS says."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    return len(os.sched_getaffinity(0))


def _read_text(path: Path) -> str:
    """The text of ``path``, or ``""`` when it cannot be read."""
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


# --- GPUs ---------------------------------------------------------------------------


def _gpu_note(smi: Mapping[str, Any]) -> str | None:
    """Why the GPU list is empty, or None when it is not."""
    if smi["gpus"]:
        return None
    return f"no GPU found: {smi['error'] or 'nvidia-smi lists none'}"


def capture_nvidia_smi(path: str | None = None) -> dict[str, Any]:
    """What ``nvidia-smi`` says: the GPUs, the driver, the driver's CUDA version.

    Runs ``nvidia-smi`` at most twice per ``PATH`` per process (cached; thread-safe,
    since the environment and hardware collectors run in parallel): the GPU query,
    then plain ``nvidia-smi`` for the ``CUDA Version`` of its header. Returns::

        {"gpus": [{"index", "name", "memory_total_bytes", "driver", "uuid",
                   "pci_bus_id"}, ...],
         "driver": str | None, "cuda": str | None, "error": str | None}

    where ``error`` says why nothing could be read (``"nvidia-smi is not installed"``).

    Args:
        path: the ``PATH`` to find ``nvidia-smi`` on (default: this process's).
    """
    with _SMI_LOCK:
        found = _query_nvidia_smi(path)
    return {**found, "gpus": [dict(g) for g in found["gpus"]]}


@functools.cache
def _query_nvidia_smi(path: str | None) -> dict[str, Any]:
    """``capture_nvidia_smi`` without the lock and the defensive copy."""
    exe = shutil.which("nvidia-smi", path=path)
    query = [
        "nvidia-smi",
        f"--query-gpu={_GPU_FIELDS}",
        "--format=csv,noheader,nounits",
    ]
    out, error = _run_tool(query, exe)
    if error is not None:
        return {"gpus": [], "driver": None, "cuda": None, "error": error}
    lines = out.decode(errors="replace").splitlines()
    gpus = [gpu for gpu in map(_parse_gpu_line, lines) if gpu is not None]
    header, _ = _run_tool(["nvidia-smi"], exe)
    cuda = _CUDA_HEADER.search(header)
    return {
        "gpus": gpus,
        "driver": gpus[0]["driver"] if gpus else None,
        "cuda": cuda.group(1).decode() if cuda else None,
        "error": None,
    }


def _parse_gpu_line(line: str) -> dict[str, Any] | None:
    """One CSV line of the GPU query (memory in MiB), or None when it is not one."""
    fields = [f.strip() for f in line.split(",")]
    if len(fields) < 6 or not fields[0].isdigit():
        return None
    memory, driver, uuid, bus = fields[-4:]
    return {
        "index": int(fields[0]),
        "name": ", ".join(fields[1:-4]),
        "memory_total_bytes": int(memory) * 2**20 if memory.isdigit() else None,
        "driver": driver,
        "uuid": uuid,
        "pci_bus_id": bus,
    }


def _run_tool(args: list[str], exe: str | None) -> tuple[bytes, str | None]:
    """stdout of the tool ``args[0]`` found at ``exe``, and why it failed (or None)."""
    name = args[0]
    if exe is None:
        return b"", f"{name} is not installed"
    try:
        done = subprocess.run(  # noqa: S603 - fixed argv, no shell
            [exe, *args[1:]],
            env={**os.environ, "LC_ALL": "C"},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return b"", f"{name} timed out after {_TIMEOUT_S} s"
    except OSError as e:
        return b"", f"{name} could not be started: {e.strerror or e}"
    if done.returncode != 0:
        said = (done.stderr or done.stdout).decode(errors="replace").strip()
        first = said.splitlines()[0] if said else "no message"
        return b"", f"{name} failed (exit {done.returncode}): {first}"
    return done.stdout, None
