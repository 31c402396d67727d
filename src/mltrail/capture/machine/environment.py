"""The software a run used: Python, packages, OS, container, CUDA and variables.

``capture_environment()`` returns the body of a ``run.environment`` entry. The Python
part describes the interpreter the command runs: this one when it is the same
(same resolved binary and same ``sys.prefix``, so a virtual environment is never
mistaken for its base interpreter), otherwise another interpreter probed with one
``python -I -c`` subprocess. ``-I`` keeps the probe from importing files of the current
directory, and also hides ``PYTHONPATH`` and user site-packages from it.

Package names and versions come from the ``Name``/``Version`` headers of each
distribution's metadata (read directly: parsing the whole metadata with the email
parser costs ~1 ms per distribution). Torch is never imported: its CUDA build is read
from the text of ``torch/version.py``. The driver and its CUDA version come from
``mltrail.capture.machine.hardware.capture_nvidia_smi``, which runs ``nvidia-smi`` once per
process for both collectors.

Variables are recorded raw from an allow-list (``is_recorded_variable``); secrets are
redacted later, centrally, over every body.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from mltrail.capture.machine.hardware import capture_nvidia_smi
from mltrail.capture.run.blob import Blob

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Mapping, Sequence

__all__ = [
    "capture_environment",
    "is_mltrail_secret",
    "is_recorded_variable",
    "is_this_python",
    "read_torch_version_file",
]

_TIMEOUT_S = 10
_RECORDED_NAMES = frozenset(
    {
        "PATH", "PYTHONPATH", "PYTHONHASHSEED", "VIRTUAL_ENV", "CONDA_DEFAULT_ENV",
        "CONDA_PREFIX", "LANG", "LC_ALL", "TZ", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
        "OPENBLAS_NUM_THREADS", "CUDA_VISIBLE_DEVICES", "CUDA_LAUNCH_BLOCKING",
        "CUBLAS_WORKSPACE_CONFIG", "RANK", "WORLD_SIZE", "LOCAL_RANK",
        "LOCAL_WORLD_SIZE", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT", "SLURM_JOB_ID",
        "SLURM_JOB_NAME", "SLURM_NODELIST",
    }
)  # fmt: skip
_RECORDED_PREFIXES = (
    "NCCL_", "TORCH_", "HF_", "TRANSFORMERS_", "TOKENIZERS_", "WANDB_", "MLFLOW_",
    "XLA_", "TF_", "JAX_", "ACCELERATE_", "DEEPSPEED_", "PYTORCH_", "MLTRAIL_",
)  # fmt: skip
_TORCH_LINE = re.compile(
    r"^(?P<key>__version__|cuda|cudnn|git_version|hip)\s*(?::[^=\n]*)?=\s*(?P<value>.*)$",
    re.MULTILINE,
)
_QUOTED = re.compile(r"""^(['"])(.*?)\1""")
_PROBE_SCRIPT = """\
import importlib.metadata as m, json, platform, sys
rows = []
for d in m.distributions():
    try:
        text = d.read_text("METADATA") or d.read_text("PKG-INFO") or ""
        rows.append([text.partition("\\n\\n")[0], d.read_text("direct_url.json"),
                     str(d.locate_file(""))])
    except Exception:
        pass
print(json.dumps({"version": platform.python_version(),
    "implementation": platform.python_implementation(), "executable": sys.executable,
    "prefix": sys.prefix, "base_prefix": getattr(sys, "base_prefix", sys.prefix),
    "rows": rows}))
"""
_PROBE_ERRORS = (OSError, KeyError, TypeError, ValueError, subprocess.SubprocessError)


class _Dist(NamedTuple):
    """One installed distribution, as read from its metadata directory."""

    name: str
    version: str
    direct_url: str | None
    location: str


def capture_environment(
    env: Mapping[str, str] | None = None,
    *,
    python: str | None = None,
    extra_vars: Sequence[str] = (),
    root: Path = Path("/"),
) -> dict[str, Any]:
    """The ``run.environment`` body.

    Args:
        env: the environment the command runs with (default: this process's).
        python: the interpreter the command runs, when it is a Python program; None
            means this interpreter.
        extra_vars: names of further variables to record.
        root: where ``/etc``, ``/proc`` and ``/run`` are read from (tests use fakes).
    """
    env = os.environ if env is None else env
    interpreter, dists, probe_error = _describe_python(python, env)
    return {
        "python": interpreter,
        "python_probe_error": probe_error,
        "packages": _packages_body(dists),
        "editable": _direct_references(dists),
        "conda": _conda_body(env),
        "os": _os_body(root),
        "container": _container_body(env, root),
        "cuda": _cuda_body(dists, capture_nvidia_smi(env.get("PATH"))),
        "variables": {
            k: env[k] for k in sorted(env) if is_recorded_variable(k, extra_vars)
        },
    }


def is_recorded_variable(name: str, extra: Collection[str] = ()) -> bool:
    """Whether the environment variable ``name`` is on the allow-list (or ``extra``).

    mltrail's own secrets (:func:`is_mltrail_secret`) never are, even when named
    in ``extra``: they say nothing about the run, and a commitment to the ledger
    key's password, kept in the ledger, would let whoever also holds the
    commitment key test guesses of it with one HMAC each.
    """
    if is_mltrail_secret(name):
        return False
    return (
        name in _RECORDED_NAMES or name.startswith(_RECORDED_PREFIXES) or name in extra
    )


_MLTRAIL_SECRET_WORDS = ("PASSWORD", "PASSPHRASE", "TOKEN", "CREDENTIAL", "PRIVATE")


def is_mltrail_secret(name: str) -> bool:
    """``MLTRAIL_KEY_PASSWORD``, ``MLTRAIL_TOKEN`` and the like: mltrail's own
    secrets, never recorded and never handed to a wrapped command."""
    return name.startswith("MLTRAIL_") and any(w in name for w in _MLTRAIL_SECRET_WORDS)


# --- Python and packages ---------------------------------------------------------


def _describe_python(
    python: str | None, env: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, _Dist], str | None]:
    """The interpreter, its distributions, and why a probe failed (or None)."""
    target, error = _resolve_python(python, env)
    if target is not None:
        try:
            probed = _probe(target, env)
            return _python_fields(probed), _dedupe(_probed_rows(probed)), None
        except _PROBE_ERRORS as e:
            error = f"could not probe {target}: {e}"
    return _this_python(), _dedupe(_local_rows()), error


def _resolve_python(
    python: str | None, env: Mapping[str, str]
) -> tuple[str | None, str | None]:
    """The interpreter to probe (None: this one), and why it was not found (or None)."""
    if python is None:
        return None, None
    target = python if os.sep in python else shutil.which(python, path=env.get("PATH"))
    if target is None:
        return None, f"{python} was not found on PATH"
    return (None if _is_this_python(target) else target), None


def is_this_python(target: str) -> bool:
    """Whether ``target`` runs as this interpreter (so probing it runs nothing)."""
    return _is_this_python(target)


def _is_this_python(target: str) -> bool:
    """Whether ``target`` runs as this interpreter: same binary and same prefix.

    A virtual environment's ``bin/python`` links to its base interpreter, so the
    binary alone cannot tell them apart; the directory above ``bin`` can.
    """
    if os.path.realpath(target) != os.path.realpath(sys.executable):
        return False
    prefix = os.path.dirname(os.path.dirname(os.path.abspath(target)))
    return os.path.realpath(prefix) == os.path.realpath(sys.prefix)


def _this_python() -> dict[str, Any]:
    """The ``python`` section for this interpreter."""
    return _python_fields(
        {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "executable": sys.executable,
            "prefix": sys.prefix,
            "base_prefix": sys.base_prefix,
        }
    )


def _python_fields(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The ``python`` section from the fields of this process or of a probe."""
    keys = ("version", "implementation", "executable", "prefix", "base_prefix")
    fields = {k: str(raw[k]) for k in keys}
    return {**fields, "virtualenv": fields["prefix"] != fields["base_prefix"]}


def _probe(target: str, env: Mapping[str, str]) -> dict[str, Any]:
    """Run the probe script in ``target`` and return what it printed.

    Raises:
        OSError: the interpreter cannot be started.
        ValueError: it timed out, exited non-zero, or printed something other than
            the probe's JSON.
    """
    try:
        done = subprocess.run(  # noqa: S603 - fixed argv, no shell
            [target, "-I", "-c", _PROBE_SCRIPT],
            env={**env, "LC_ALL": "C"},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        raise ValueError(f"it timed out after {_TIMEOUT_S} s") from e
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip().splitlines()
        last = f": {said[-1]}" if said else ""
        raise ValueError(f"it exited with status {done.returncode}{last}")
    probed = json.loads(done.stdout)
    if not isinstance(probed, dict) or not isinstance(probed.get("rows"), list):
        raise ValueError("the probe printed unexpected output")
    return probed


def _probed_rows(probed: Mapping[str, Any]) -> list[tuple[str, str | None, str]]:
    """The ``(headers, direct_url.json, location)`` rows a probe printed."""
    return [
        (str(h), d if isinstance(d, str) else None, str(loc))
        for h, d, loc in probed["rows"]
    ]


def _local_rows() -> list[tuple[str, str | None, str]]:
    """``(metadata headers, direct_url.json text, location)`` of each distribution.

    Scans ``sys.path`` for ``*.dist-info`` and ``*.egg-info`` as
    ``importlib.metadata.distributions()`` does, without importing it (~50 ms).
    """
    rows = []
    for entry in sys.path:
        for meta in _metadata_dirs(Path(entry or ".")):
            row = _read_metadata(meta)
            if row is not None:
                rows.append((row[0], row[1], entry))
    return rows


def _metadata_dirs(path: Path) -> list[Path]:
    try:
        names = sorted(os.listdir(path))
    except OSError:  # missing, a file, a zip: nothing to scan here
        return []
    return [path / n for n in names if n.endswith((".dist-info", ".egg-info"))]


def _read_metadata(meta: Path) -> tuple[str, str | None] | None:
    try:
        if meta.is_file():  # an old-style egg-info file holds PKG-INFO itself
            return meta.read_text("utf-8").partition("\n\n")[0], None
        for name in ("METADATA", "PKG-INFO"):
            file = meta / name
            if file.is_file():
                text = file.read_text("utf-8").partition("\n\n")[0]
                direct = meta / "direct_url.json"
                return text, direct.read_text("utf-8") if direct.is_file() else None
    except (OSError, UnicodeDecodeError):
        return None
    return None


def _dedupe(rows: Iterable[tuple[str, str | None, str]]) -> dict[str, _Dist]:
    """Distributions by normalized name; the first on ``sys.path`` wins."""
    dists: dict[str, _Dist] = {}
    for headers, direct_url, location in rows:
        name, version = _header(headers, "Name"), _header(headers, "Version")
        if name and version:
            dists.setdefault(
                _normalize(name), _Dist(name, version, direct_url, location)
            )
    return dists


def _header(headers: str, field: str) -> str | None:
    """The first ``field: value`` header of a metadata file."""
    match = re.search(rf"^{field}:[ \t]*(.*?)[ \t]*$", headers, re.MULTILINE)
    return match.group(1) if match else None


def _normalize(name: str) -> str:
    """PEP 503 normalized project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _packages_body(dists: Mapping[str, _Dist]) -> dict[str, Any]:
    """``name==version`` lines sorted by normalized name, as a blob, with count and hash."""
    lines = b"".join(
        f"{dists[k].name}=={dists[k].version}\n".encode() for k in sorted(dists)
    )
    return {
        "count": len(dists),
        "list": Blob(lines, media_type="text/plain"),
        "sha256": hashlib.sha256(lines).hexdigest(),
    }


def _direct_references(dists: Mapping[str, _Dist]) -> list[dict[str, Any]]:
    """Distributions installed from a path, VCS or URL (``direct_url.json``), by name."""
    found = []
    for key in sorted(dists):
        dist = dists[key]
        info = _json_object(dist.direct_url)
        if isinstance(info.get("url"), str):
            found.append(_direct_reference(dist, info))
    return found


def _direct_reference(dist: _Dist, info: Mapping[str, Any]) -> dict[str, Any]:
    """One ``editable`` item: the url, and the VCS commit when there is one."""
    dir_info, vcs_info = info.get("dir_info"), info.get("vcs_info")
    dir_info = dir_info if isinstance(dir_info, dict) else {}
    vcs_info = vcs_info if isinstance(vcs_info, dict) else {}
    return {
        "name": dist.name,
        "version": dist.version,
        "url": info["url"],
        "editable": dir_info.get("editable") is True,
        "vcs": vcs_info.get("vcs"),
        "commit": vcs_info.get("commit_id"),
    }


def _json_object(text: str | None) -> dict[str, Any]:
    """``text`` parsed as a JSON object, or ``{}``."""
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


# --- conda, OS, container ----------------------------------------------------------


def _conda_body(env: Mapping[str, str]) -> dict[str, Any] | None:
    """The active conda environment, or None."""
    name, prefix = env.get("CONDA_DEFAULT_ENV"), env.get("CONDA_PREFIX")
    return {"env": name, "prefix": prefix} if name or prefix else None


def _os_body(root: Path) -> dict[str, Any]:
    """Kernel, distribution and C library."""
    uname = platform.uname()
    return {
        "system": uname.system,
        "release": uname.release,
        "version": uname.version,
        "machine": uname.machine,
        "distribution": _os_release(root),
        "libc": _libc(),
    }


def _os_release(root: Path) -> str | None:
    """``PRETTY_NAME`` from ``/etc/os-release`` (or ``/usr/lib/os-release``)."""
    for path in (root / "etc/os-release", root / "usr/lib/os-release"):
        text = _read_text(path)
        match = re.search(r"^PRETTY_NAME=(.*)$", text, re.MULTILINE)
        if match:
            return match.group(1).strip().strip("\"'") or None
    return None


def _libc() -> str | None:
    """``"glibc 2.36"`` from ``confstr``; None elsewhere (e.g. musl, macOS)."""
    try:
        return os.confstr("CS_GNU_LIBC_VERSION")
    except (AttributeError, ValueError, OSError):
        return None


def _container_body(env: Mapping[str, str], root: Path) -> dict[str, Any] | None:
    """The container the process runs in, when there is visible evidence of one."""
    runtime = _container_runtime(env, root)
    if runtime is None:
        return None
    return {
        "runtime": runtime,
        "image": env.get("MLTRAIL_IMAGE"),
        "digest": env.get("MLTRAIL_IMAGE_DIGEST"),
        "kubernetes": _kubernetes(env, root),
    }


def _container_runtime(env: Mapping[str, str], root: Path) -> str | None:
    """``docker``, ``podman``, ``kubernetes``, ``containerd``, ``unknown`` or None."""
    cgroup = _read_text(root / "proc/1/cgroup")
    marker = env.get("container", "")
    if env.get("KUBERNETES_SERVICE_HOST") or "kubepods" in cgroup:
        return "kubernetes"
    if (
        (root / "run/.containerenv").exists()
        or "libpod" in cgroup
        or marker == "podman"
    ):
        return "podman"
    if (root / ".dockerenv").exists() or "docker" in cgroup or marker == "docker":
        return "docker"
    if "containerd" in cgroup:
        return "containerd"
    return "unknown" if marker else None


def _kubernetes(env: Mapping[str, str], root: Path) -> dict[str, Any] | None:
    """Pod, namespace and node when running in a Kubernetes pod."""
    if not env.get("KUBERNETES_SERVICE_HOST"):
        return None
    namespace_file = root / "var/run/secrets/kubernetes.io/serviceaccount/namespace"
    return {
        "pod": env.get("POD_NAME") or env.get("HOSTNAME"),
        "namespace": env.get("POD_NAMESPACE")
        or _read_text(namespace_file).strip()
        or None,
        "node": env.get("NODE_NAME"),
    }


def _read_text(path: Path) -> str:
    """The text of ``path``, or ``""`` when it cannot be read."""
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


# --- CUDA --------------------------------------------------------------------------


def _cuda_body(
    dists: Mapping[str, _Dist], smi: Mapping[str, Any]
) -> dict[str, Any] | None:
    """Driver, driver CUDA version, torch and its CUDA/cuDNN build, or None if none."""
    torch = dists.get("torch")
    built: dict[str, str | None] = {}
    if torch is not None:
        built = read_torch_version_file(Path(torch.location) / "torch" / "version.py")
    cudnn = next(
        (
            d.version
            for k, d in sorted(dists.items())
            if k.startswith("nvidia-cudnn-cu")
        ),
        built.get("cudnn"),
    )
    found = {
        "driver": smi["driver"],
        "cuda": smi["cuda"],
        "torch_cuda": built.get("cuda"),
        "cudnn": cudnn,
    }
    if all(v is None for v in found.values()):
        return None
    return {**found, "torch": torch.version if torch else None}


def read_torch_version_file(path: Path) -> dict[str, str | None]:
    """Fields of an installed ``torch/version.py``, read as text (torch not imported).

    Understands ``cuda = '12.1'``, ``cuda: Optional[str] = '12.1'`` and ``= None``.
    Returns ``{"version", "cuda", "cudnn", "git_version", "hip"}``; missing ones None.
    """
    fields: dict[str, str | None] = dict.fromkeys(
        ("version", "cuda", "cudnn", "git_version", "hip")
    )
    for match in _TORCH_LINE.finditer(_read_text(path)):
        key = "version" if match["key"] == "__version__" else match["key"]
        quoted = _QUOTED.match(match["value"].strip())
        fields[key] = quoted.group(2) if quoted else None
    return fields
