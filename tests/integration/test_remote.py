"""hash_remote against real servers on loopback: http.server and moto's S3 server.

Nothing of fsspec is mocked: the HTTP tests run a ``http.server`` in a thread, the
S3 tests moto's ``ThreadedMotoServer`` (a real S3-compatible HTTP endpoint) read
through s3fs. Tests skip when the optional packages are missing, except under
``CI=true``, where a missing package fails the test and names the extra to install.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import socket
import sys
import threading
import uuid
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mltrail.capture.data.files import capture_file_entries
from mltrail.capture.data.remote import (
    RemoteListing,
    hash_remote,
    is_remote,
    public_url,
)
from mltrail.capture.data.remote_checksums import _b64_sha256, _hf_sha256, _http_sha256
from mltrail.core.manifest import FileEntry, compute_manifest
from mltrail.errors import CaptureError, ConfigError, InputError
from optional_extras import require_extra


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def b64_sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def pseudo_random(size: int, seed: bytes = b"seed") -> bytes:
    """Deterministic incompressible bytes (SHA-256 in counter mode)."""
    blocks = (size + 31) // 32
    stream = b"".join(
        hashlib.sha256(seed + n.to_bytes(8, "big")).digest() for n in range(blocks)
    )
    return stream[:size]


# --- pure helpers (no optional package needed) ------------------------------------


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("s3://bucket/key", True),
        ("https://example.com/data.csv", True),
        ("HTTP://example.com/data.csv", True),
        ("hf://datasets/org/name", True),
        ("gs://bucket/prefix/", True),
        ("file:///tmp/data", False),
        ("/tmp/data", False),
        ("relative/data.csv", False),
        ("C:\\data\\train.csv", False),
        ("s3:/not-a-url", False),
    ],
)
def test_is_remote(location, expected):
    require_extra("remote", "fsspec")
    assert is_remote(location) is expected


def test_is_remote_rejects_an_unknown_scheme():
    require_extra("remote", "fsspec")
    assert not is_remote("nosuchproto://host/x")


def test_without_fsspec_a_url_is_remote_and_hashing_it_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "fsspec", None)
    monkeypatch.setitem(sys.modules, "fsspec.registry", None)
    assert is_remote("s3://bucket/key")
    assert not is_remote("file:///tmp/x")
    with pytest.raises(ConfigError, match="remote extra") as caught:
        hash_remote("s3://bucket/key")
    assert caught.value.hint == "pip install 'mltrail[remote]'"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:pw@host:8443/a/b.csv", "https://host:8443/a/b.csv"),
        ("https://token@host/a", "https://host/a"),
        (
            "https://bucket.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4&X-Amz-Signature=ab",
            "https://bucket.s3.amazonaws.com/k",
        ),
        (
            "https://acct.blob.core.windows.net/c/f?sv=2022&sig=abc",
            "https://acct.blob.core.windows.net/c/f",
        ),
        ("https://host/data.csv?version=2", "https://host/data.csv?version=2"),
        ("https://host/data.csv#part", "https://host/data.csv"),
        ("s3://bucket/prefix/", "s3://bucket/prefix/"),
    ],
)
def test_public_url(url, expected):
    assert public_url(url) == expected


def test_not_a_remote_url():
    with pytest.raises(InputError, match="not a remote URL"):
        hash_remote("/tmp/data")


def test_workers_must_be_positive():
    with pytest.raises(InputError, match="workers"):
        hash_remote("s3://bucket/key", workers=0)


def test_store_checksum_parsers():
    digest = hashlib.sha256(b"x").digest()
    b64 = base64.b64encode(digest).decode()
    assert _b64_sha256(b64) == digest.hex()
    assert _b64_sha256(b64 + "-2") is None  # a multipart checksum of checksums
    assert _b64_sha256(base64.b64encode(b"short").decode()) is None
    assert _b64_sha256("not base64!") is None
    assert _http_sha256({"size": 1, "Digest": f"md5=abc, SHA-256={b64}"}) == (
        1,
        digest.hex(),
    )
    assert _http_sha256({"size": 1, "Repr-Digest": f"sha-256=:{b64}:"}) == (
        1,
        digest.hex(),
    )
    assert _http_sha256({"size": None, "Digest": f"sha-256={b64}"}) is None
    assert _http_sha256({"size": 1, "Digest": "md5=abc"}) is None


def test_hugging_face_lfs_sha256():
    hexdigest = sha256(b"weights")
    lfs_file = {"size": 7, "type": "file", "lfs": {"size": 7, "sha256": hexdigest}}
    assert _hf_sha256(lfs_file) == (7, hexdigest)
    assert (
        _hf_sha256({"size": 7, "type": "file", "lfs": None, "blob_id": "ab" * 20})
        is None
    )
    assert _hf_sha256({"size": 8, "lfs": {"size": 7, "sha256": hexdigest}}) is None
    assert _hf_sha256({"size": 7, "lfs": {"size": 7, "sha256": "0" * 40}}) is None


# --- HTTP ----------------------------------------------------------------------------

INDEX_PAGE = b"""<html><body>
<a href="?C=N;O=D">Name</a> <a href="../">Parent</a> <a href="/">Home</a>
<a href="#top">Top</a> <a href="https://example.invalid/far.csv">Elsewhere</a>
<a href="x.csv">x.csv</a>
</body></html>
"""


@pytest.fixture
def site(tmp_path) -> Path:
    """The folder the HTTP server serves."""
    root = tmp_path / "site"
    files = {
        "data/a.csv": b"a,b\n1,2\n",
        "data/big.bin": pseudo_random(3 * 2**20 + 17),
        "data/empty.txt": b"",
        "data/sub/c.txt": b"nested\n",
        "data/with space.txt": b"spaced\n",
        "digest/a.csv": b"a,b\n1,2\n",
        "forbidden/secret.csv": b"no\n",
        "custom/index.html": INDEX_PAGE,
        "custom/x.csv": b"x\n",
    }
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    (root / "nothing").mkdir()
    return root


class Handler(SimpleHTTPRequestHandler):
    """Serves a folder; 403 under /forbidden/, a Digest header under /digest/."""

    def log_message(self, format, *args):
        pass

    def send_head(self):
        if self.path.startswith("/forbidden/"):
            self.send_error(HTTPStatus.FORBIDDEN)
            return None
        return super().send_head()

    def end_headers(self):
        if self.path.startswith("/digest/") and not self.path.endswith("/"):
            file = Path(self.translate_path(self.path))
            if file.is_file():
                self.send_header("Digest", f"sha-256={b64_sha256(file.read_bytes())}")
        super().end_headers()


@pytest.fixture
def server(site):
    """Base URL of an http.server on 127.0.0.1 serving ``site``."""
    require_extra("remote", "fsspec", "aiohttp")
    httpd = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(site))
    )
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def test_http_single_file(server, site):
    listing = hash_remote(f"{server}/data/a.csv")
    assert listing == RemoteListing(
        entries=[FileEntry("a.csv", 8, sha256(b"a,b\n1,2\n"))],
        checksum_source={"a.csv": "streamed"},
        url=f"{server}/data/a.csv",
        protocol="http",
    )


def test_http_folder_matches_the_local_copy(server, site):
    calls = []
    listing = hash_remote(f"{server}/data/", progress=lambda *a: calls.append(a))
    local = site / "data"
    assert [e.path for e in listing.entries] == [
        "a.csv",
        "big.bin",
        "empty.txt",
        "sub/c.txt",
        "with space.txt",
    ]
    for entry in listing.entries:
        data = (local / entry.path).read_bytes()
        assert (entry.size, entry.sha256) == (len(data), sha256(data))
    assert set(listing.checksum_source.values()) == {"streamed"}
    remote_id = compute_manifest(listing.entries).dataset_id
    assert remote_id == compute_manifest(capture_file_entries(local)).dataset_id
    assert calls == [(n, 5) for n in range(1, 6)]


def test_http_one_worker_gives_the_same_listing(server):
    assert hash_remote(f"{server}/data/", workers=1) == hash_remote(
        f"{server}/data/", workers=8
    )


def test_http_digest_header_is_used(server, site):
    listing = hash_remote(f"{server}/digest/a.csv")
    assert listing.checksum_source == {"a.csv": "store"}
    assert listing.entries[0].sha256 == sha256((site / "digest/a.csv").read_bytes())


def test_http_index_page_navigation_links_are_not_files(server):
    listing = hash_remote(f"{server}/custom/")
    assert [e.path for e in listing.entries] == ["x.csv"]


def test_http_404_names_the_url(server):
    with pytest.raises(InputError, match="no such remote file") as caught:
        hash_remote(f"{server}/data/missing.csv")
    assert f"{server}/data/missing.csv" in str(caught.value)
    assert caught.value.hint


def test_http_403_is_access_denied(server):
    with pytest.raises(InputError, match="access denied") as caught:
        hash_remote(f"{server}/forbidden/secret.csv")
    assert "forbidden/secret.csv" in str(caught.value)


def test_http_empty_folder(server):
    with pytest.raises(InputError, match="no files found"):
        hash_remote(f"{server}/nothing/")


def test_credentials_never_reach_the_record_or_the_error(server):
    host = server.removeprefix("http://")
    listing = hash_remote(f"http://user:s3cret@{host}/data/a.csv?token=t0ps3cret")
    assert listing.url == f"{server}/data/a.csv"
    with pytest.raises(InputError) as caught:
        hash_remote(f"http://user:s3cret@{host}/data/gone.csv?token=t0ps3cret")
    text = f"{caught.value} {caught.value.hint} {caught.value.__cause__}"
    assert "s3cret" not in str(caught.value)
    assert "t0ps3cret" not in str(caught.value)
    assert f"{server}/data/gone.csv" in text


def test_unreachable_host():
    require_extra("remote", "fsspec", "aiohttp")
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(CaptureError, match="cannot reach") as caught:
        hash_remote(f"http://127.0.0.1:{port}/data.csv")
    assert f"127.0.0.1:{port}/data.csv" in str(caught.value)
    assert "network" in caught.value.hint


def test_missing_backend_names_the_extra(monkeypatch):
    require_extra("remote", "fsspec")
    monkeypatch.setitem(sys.modules, "gcsfs", None)
    with pytest.raises(ConfigError, match="gcsfs") as caught:
        hash_remote("gs://bucket/data.csv")
    assert caught.value.hint == "pip install 'mltrail[remote]' gcsfs"


# --- S3 (moto server) -------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory):
    """A moto S3 server on 127.0.0.1, and the storage options that reach it."""
    require_extra("remote", "s3fs")
    require_extra("test", "moto.server", "boto3")
    from moto.server import ThreadedMotoServer

    home = tmp_path_factory.mktemp("aws")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": str(home / "config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
        }.items():
            patch.setenv(name, value)
        patch.delenv("AWS_PROFILE", raising=False)
        patch.delenv("AWS_ENDPOINT_URL", raising=False)
        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        moto.start()
        try:
            host, port = moto.get_host_and_port()
            yield f"http://{host}:{port}"
        finally:
            moto.stop()


@pytest.fixture
def s3(s3_endpoint):
    """(boto3 client, a fresh bucket, storage options for hash_remote)."""
    import boto3

    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    bucket = f"mltrail-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    options = {
        "client_kwargs": {"endpoint_url": s3_endpoint, "region_name": "us-east-1"}
    }
    return client, bucket, options


def multipart_upload(client, bucket: str, key: str, parts: list[bytes]) -> None:
    upload = client.create_multipart_upload(
        Bucket=bucket, Key=key, ChecksumAlgorithm="SHA256"
    )
    done = []
    for number, body in enumerate(parts, 1):
        part = client.upload_part(
            Bucket=bucket,
            Key=key,
            PartNumber=number,
            UploadId=upload["UploadId"],
            Body=body,
            ChecksumAlgorithm="SHA256",
        )
        done.append(
            {
                "PartNumber": number,
                "ETag": part["ETag"],
                "ChecksumSHA256": part["ChecksumSHA256"],
            }
        )
    client.complete_multipart_upload(
        Bucket=bucket,
        Key=key,
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": done},
    )


def test_s3_sha256_checksums_come_from_the_store(s3):
    client, bucket, options = s3
    files = {"train/a.csv": b"a,b\n1,2\n", "train/sub/b.bin": pseudo_random(70_000)}
    for key, body in files.items():
        client.put_object(Bucket=bucket, Key=key, Body=body, ChecksumAlgorithm="SHA256")
    listing = hash_remote(f"s3://{bucket}/train", storage_options=options)
    assert listing.checksum_source == {"a.csv": "store", "sub/b.bin": "store"}
    assert listing.entries == [
        FileEntry("a.csv", 8, sha256(files["train/a.csv"])),
        FileEntry("sub/b.bin", 70_000, sha256(files["train/sub/b.bin"])),
    ]
    assert listing.url == f"s3://{bucket}/train"
    assert listing.protocol == "s3"


def test_s3_objects_without_sha256_are_streamed(s3):
    client, bucket, options = s3
    body = pseudo_random(2 * 2**20 + 5)
    client.put_object(Bucket=bucket, Key="plain.bin", Body=body)
    listing = hash_remote(f"s3://{bucket}/plain.bin", storage_options=options)
    assert listing.entries == [FileEntry("plain.bin", len(body), sha256(body))]
    assert listing.checksum_source == {"plain.bin": "streamed"}


def test_s3_multipart_checksum_is_not_taken_for_a_file_sha256(s3):
    client, bucket, options = s3
    parts = [pseudo_random(5 * 2**20, b"p1"), pseudo_random(1000, b"p2")]
    multipart_upload(client, bucket, "big.bin", parts)
    head = client.head_object(Bucket=bucket, Key="big.bin", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"].partition("-")[0] != b64_sha256(b"".join(parts))
    listing = hash_remote(f"s3://{bucket}/big.bin", storage_options=options)
    assert listing.checksum_source == {"big.bin": "streamed"}
    assert listing.entries == [
        FileEntry("big.bin", 5 * 2**20 + 1000, sha256(b"".join(parts)))
    ]


def test_s3_prefix_listing_mixes_sources(s3):
    client, bucket, options = s3
    client.put_object(
        Bucket=bucket, Key="ds/x.csv", Body=b"x", ChecksumAlgorithm="SHA256"
    )
    client.put_object(Bucket=bucket, Key="ds/deep/y.csv", Body=b"y")
    client.put_object(Bucket=bucket, Key="ds2/not-in.csv", Body=b"z")
    client.put_object(Bucket=bucket, Key="other/no.csv", Body=b"w")
    for url in (f"s3://{bucket}/ds", f"s3://{bucket}/ds/"):
        listing = hash_remote(url, storage_options=options, workers=2)
        assert listing.checksum_source == {"deep/y.csv": "streamed", "x.csv": "store"}
        assert listing.entries == [
            FileEntry("deep/y.csv", 1, sha256(b"y")),
            FileEntry("x.csv", 1, sha256(b"x")),
        ]
    whole = hash_remote(f"s3://{bucket}", storage_options=options)
    assert [e.path for e in whole.entries] == [
        "ds/deep/y.csv",
        "ds/x.csv",
        "ds2/not-in.csv",
        "other/no.csv",
    ]


def test_s3_missing_object_and_bucket(s3):
    _, bucket, options = s3
    with pytest.raises(InputError, match="no such remote") as caught:
        hash_remote(f"s3://{bucket}/nope.csv", storage_options=options)
    assert f"s3://{bucket}/nope.csv" in str(caught.value)
    with pytest.raises(InputError, match="no such remote"):
        hash_remote("s3://no-such-bucket-mltrail/x", storage_options=options)


def test_s3_without_credentials(s3, monkeypatch):
    _, bucket, options = s3
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    fresh = {**options, "skip_instance_cache": True}
    with pytest.raises(ConfigError, match="no credentials") as caught:
        hash_remote(f"s3://{bucket}/x.csv", storage_options=fresh)
    assert "storage_options" in caught.value.hint
