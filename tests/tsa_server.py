"""A real RFC 3161 TSA on 127.0.0.1 for tests: ``openssl ts -reply`` behind HTTP.

``make_tsa_ca(folder)`` writes a test root CA and a TSA certificate issued by
it (extendedKeyUsage timeStamping, critical) with an ``openssl ts`` config;
``TsaServer(ca)`` answers each POSTed ``TimeStampReq`` by piping it through
``openssl ts -reply -queryfile ... -config ...`` in a subprocess.

    ca = make_tsa_ca(tmp_path / "tsa")
    with TsaServer(ca) as tsa:
        ... tsa.url ...

Only the TSA's own certificate goes into tokens (OpenSSL writes a ``certs``
chain as a SET that is not in DER order, which strict parsers refuse).
"""

from __future__ import annotations

import datetime
import http.server
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["TsaCa", "TsaServer", "make_tsa_ca", "require_openssl"]


def require_openssl() -> str:
    """The openssl binary, or skip."""
    found = shutil.which("openssl")
    if found is None:
        pytest.skip("openssl is not installed (apt-get install openssl)")
    return found


@dataclass(frozen=True)
class TsaCa:
    """A test CA and the TSA it certified: files in ``folder``."""

    folder: Path
    ca_pem: Path
    config: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _usage(*, sign: bool, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=sign,
        content_commitment=sign,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _certificate(subject, issuer, key, signer, serial, *, ca: bool):
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(_usage(sign=not ca, ca=ca), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True
        )
    return builder.sign(signer, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def make_tsa_ca(folder: Path, name: str = "mltrail test") -> TsaCa:
    """A root CA and a TSA certificate it issued, with an openssl ts config."""
    folder.mkdir(parents=True, exist_ok=True)
    root_key = ec.generate_private_key(ec.SECP256R1())
    tsa_key = ec.generate_private_key(ec.SECP256R1())
    root = _certificate(f"{name} root", f"{name} root", root_key, root_key, 1, ca=True)
    tsa = _certificate(f"{name} TSA", f"{name} root", tsa_key, root_key, 2, ca=False)
    (folder / "ca.pem").write_bytes(_pem(root))
    (folder / "tsa.pem").write_bytes(_pem(tsa))
    (folder / "tsa.key").write_bytes(
        tsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (folder / "serial").write_text("01\n")
    config = folder / "ts.cnf"
    config.write_text(
        "[ tsa ]\ndefault_tsa = tsa1\n[ tsa1 ]\n"
        f"serial = {folder / 'serial'}\n"
        "crypto_device = builtin\n"
        f"signer_cert = {folder / 'tsa.pem'}\n"
        f"signer_key = {folder / 'tsa.key'}\n"
        "signer_digest = sha256\n"
        "default_policy = 1.3.6.1.4.1.99999.1\n"
        "other_policies = 1.3.6.1.4.1.99999.2\n"
        "digests = sha256, sha384, sha512\n"
        "accuracy = secs:1\n"
        "ordering = yes\ntsa_name = yes\n"
        "ess_cert_id_chain = no\ness_cert_id_alg = sha256\n"
    )
    return TsaCa(folder, folder / "ca.pem", config)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        query = self.rfile.read(length)
        self.server.requests += 1
        reply = self.server.reply(query)
        if reply is None:
            self.send_response(500)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/timestamp-reply")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    def __init__(self, ca: TsaCa) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.ca = ca
        self.requests = 0
        self.lock = threading.Lock()

    def reply(self, query: bytes) -> bytes | None:
        with self.lock, tempfile.TemporaryDirectory() as tmp:
            query_file, reply_file = Path(tmp) / "q.tsq", Path(tmp) / "r.tsr"
            query_file.write_bytes(query)
            done = subprocess.run(
                ["openssl", "ts", "-reply", "-config", str(self.ca.config),
                 "-queryfile", str(query_file), "-out", str(reply_file)],
                capture_output=True,
                timeout=30,
            )  # fmt: skip
            return reply_file.read_bytes() if done.returncode == 0 else None


class TsaServer:
    """The TSA, serving on 127.0.0.1 (a free port) while the ``with`` lasts."""

    def __init__(self, ca: TsaCa) -> None:
        require_openssl()
        self._server = _Server(ca)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """Where to POST requests."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/tsr"

    @property
    def requests(self) -> int:
        """How many requests it answered."""
        return self._server.requests

    def __enter__(self) -> TsaServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (a TSA that is down)."""
    server = http.server.HTTPServer(
        ("127.0.0.1", 0), http.server.BaseHTTPRequestHandler
    )
    port = server.server_address[1]
    server.server_close()
    return f"http://127.0.0.1:{port}/tsr"
