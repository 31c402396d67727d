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

__all__ = [
    "TsaCa",
    "TsaServer",
    "forge_token",
    "make_other_tsa",
    "make_tsa_ca",
    "openssl_reply",
    "require_openssl",
    "resign_token",
    "stamp_dated",
    "stamp_with_openssl",
    "with_accuracy",
]


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


def make_tsa_ca(
    folder: Path, name: str = "mltrail test", accuracy: str = "secs:1"
) -> TsaCa:
    """A root CA and a TSA certificate it issued, with an openssl ts config
    (``accuracy`` as openssl ts writes it into tokens)."""
    folder.mkdir(parents=True, exist_ok=True)
    root_key = ec.generate_private_key(ec.SECP256R1())
    tsa_key = ec.generate_private_key(ec.SECP256R1())
    root = _certificate(f"{name} root", f"{name} root", root_key, root_key, 1, ca=True)
    tsa = _certificate(f"{name} TSA", f"{name} root", tsa_key, root_key, 2, ca=False)
    (folder / "ca.pem").write_bytes(_pem(root))
    (folder / "ca.key").write_bytes(_private_pem(root_key))
    return _tsa_files(folder, folder / "ca.pem", tsa, tsa_key, accuracy)


def _private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _tsa_files(
    folder: Path, ca_pem: Path, tsa, tsa_key, accuracy: str = "secs:1"
) -> TsaCa:
    """The TSA's certificate, key and openssl ts config, in ``folder``."""
    (folder / "tsa.pem").write_bytes(_pem(tsa))
    (folder / "tsa.key").write_bytes(_private_pem(tsa_key))
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
        f"accuracy = {accuracy}\n"
        "ordering = yes\ntsa_name = yes\n"
        "ess_cert_id_chain = no\ness_cert_id_alg = sha256\n"
    )
    return TsaCa(folder, ca_pem, config)


def make_other_tsa(ca: TsaCa, folder: Path, name: str) -> TsaCa:
    """A second TSA certificate (``CN=<name>``, timeStamping EKU) issued by the
    root CA of ``ca``: a TSA the CA vouches for, but not ``ca``'s TSA."""
    folder.mkdir(parents=True, exist_ok=True)
    root = x509.load_pem_x509_certificate(ca.ca_pem.read_bytes())
    root_key = serialization.load_pem_private_key(
        (ca.folder / "ca.key").read_bytes(), None
    )
    issuer = root.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _certificate(name, issuer, key, root_key, 3, ca=False)
    return _tsa_files(folder, ca.ca_pem, cert, key)


def stamp_with_openssl(ca: TsaCa, message: bytes) -> bytes:
    """A TimeStampResp (DER) of SHA-256(``message``) by ``ca``'s TSA, no HTTP."""
    with tempfile.TemporaryDirectory() as tmp:
        data, query = Path(tmp) / "m", Path(tmp) / "q.tsq"
        data.write_bytes(message)
        subprocess.run(
            ["openssl", "ts", "-query", "-data", str(data), "-sha256", "-cert",
             "-out", str(query)],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        return openssl_reply(ca, query.read_bytes())


def resign_token(ca: TsaCa, reply: bytes, edits: dict[bytes, bytes]) -> bytes:
    """``reply``'s TSTInfo with each ``old: new`` byte edit (same lengths), signed
    again as a CMS SignedData by ``ca``'s TSA key (``openssl cms``), in a granted
    TimeStampResp: what a TSA that writes any name and time into its tokens
    issues."""
    import rfc3161_client

    tst = bytes(rfc3161_client.decode_timestamp_response(reply).tst_info.as_bytes())
    for old, new in edits.items():
        assert len(old) == len(new), old
        assert tst.count(old) == 1, old
        tst = tst.replace(old, new)
    return _signed_reply(ca, tst)


def with_accuracy(ca: TsaCa, reply: bytes, seconds: int) -> bytes:
    """``reply`` (by a TSA of :func:`make_tsa_ca`'s default ``accuracy``, one
    second) with ``seconds`` as its TSTInfo's accuracy, signed again by ``ca``'s
    TSA: what a TSA stating any accuracy issues."""
    import rfc3161_client

    tst = bytes(rfc3161_client.decode_timestamp_response(reply).tst_info.as_bytes())
    one_second = b"\x30\x03\x02\x01\x01"  # Accuracy { seconds 1 }
    assert tst.count(one_second) == 1, tst.hex()
    raw = seconds.to_bytes(seconds.bit_length() // 8 + 1, "big")
    claimed = b"\x02" + _der_length(len(raw)) + raw
    header = 2 + (tst[1] & 0x7F if tst[1] & 0x80 else 0)  # SEQUENCE, its length
    body = tst[header:].replace(
        one_second, b"\x30" + _der_length(len(claimed)) + claimed
    )
    return _signed_reply(ca, b"\x30" + _der_length(len(body)) + body)


def _signed_reply(ca: TsaCa, tst: bytes) -> bytes:
    """A granted TimeStampResp of the TSTInfo ``tst`` (DER), signed as a CMS
    SignedData by ``ca``'s TSA key (``openssl cms``)."""
    with tempfile.TemporaryDirectory() as tmp:
        content = Path(tmp) / "tst.der"
        content.write_bytes(tst)
        signed = subprocess.run(
            ["openssl", "cms", "-sign", "-binary", "-nodetach", "-outform", "DER",
             "-econtent_type", "1.2.840.113549.1.9.16.1.4", "-nosmimecap",
             "-md", "sha256", "-signer", str(ca.folder / "tsa.pem"),
             "-inkey", str(ca.folder / "tsa.key"), "-in", str(content)],
            check=True, capture_output=True, timeout=30,
        ).stdout  # fmt: skip
    body = b"\x30\x03\x02\x01\x00" + signed  # PKIStatusInfo {granted}, the token
    return b"\x30" + _der_length(len(body)) + body


def forge_token(ca: TsaCa, folder: Path, message: bytes, minutes_back: float) -> bytes:
    """A token over ``message`` by another TSA certificate ``ca``'s root issued,
    naming ``ca``'s TSA in its TSTInfo and a time ``minutes_back`` before now:
    what a TSA under the same CA (a colleague's, or one the writer runs) can
    sign. ``ca`` must be of :func:`make_tsa_ca`'s default name."""
    import rfc3161_client

    honest = "mltrail test TSA"
    other = make_other_tsa(ca, folder, "x" * len(honest))
    reply = stamp_with_openssl(other, message)
    stamped = rfc3161_client.decode_timestamp_response(reply).tst_info.gen_time
    back = stamped - datetime.timedelta(minutes=minutes_back)
    return resign_token(
        other,
        reply,
        {
            ("x" * len(honest)).encode(): honest.encode(),
            stamped.strftime("%Y%m%d%H%M%SZ").encode(): back.strftime(
                "%Y%m%d%H%M%SZ"
            ).encode(),
        },
    )


def stamp_dated(ca: TsaCa, message: bytes, minutes_ahead: float) -> bytes:
    """A token over ``message`` by ``ca``'s own TSA whose genTime is
    ``minutes_ahead`` after its clock: a TSA whose clock runs ahead."""
    import rfc3161_client

    reply = stamp_with_openssl(ca, message)
    stamped = rfc3161_client.decode_timestamp_response(reply).tst_info.gen_time
    ahead = stamped + datetime.timedelta(minutes=minutes_ahead)
    edit = {
        stamped.strftime("%Y%m%d%H%M%SZ").encode(): ahead.strftime(
            "%Y%m%d%H%M%SZ"
        ).encode()
    }
    return resign_token(ca, reply, edit)


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


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
        with self.lock:
            try:
                return openssl_reply(self.ca, query)
            except subprocess.CalledProcessError:
                return None


def openssl_reply(ca: TsaCa, query: bytes) -> bytes:
    """``openssl ts -reply`` to a DER TimeStampReq, by ``ca``'s TSA.

    Raises:
        subprocess.CalledProcessError: openssl refused the query.
    """
    with tempfile.TemporaryDirectory() as tmp:
        query_file, reply_file = Path(tmp) / "q.tsq", Path(tmp) / "r.tsr"
        query_file.write_bytes(query)
        subprocess.run(
            ["openssl", "ts", "-reply", "-config", str(ca.config),
             "-queryfile", str(query_file), "-out", str(reply_file)],
            capture_output=True, timeout=30, check=True,
        )  # fmt: skip
        return reply_file.read_bytes()


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
