"""The transparency-dev/merkle RFC 9162 proof vectors (tests/vectors/rfc9162).

Every case with ``wantErr: false`` must verify and every case with
``wantErr: true`` must raise ProofError, exactly as the Go reference does.
"""

import base64
import json
from pathlib import Path

import pytest

from mltrail.core.merkle import verify_consistency, verify_inclusion
from mltrail.errors import ProofError

VECTORS = Path(__file__).parent / "rfc9162"
INCLUSION = sorted((VECTORS / "inclusion").rglob("*.json"))
CONSISTENCY = sorted((VECTORS / "consistency").rglob("*.json"))


def _id(path: Path) -> str:
    return path.relative_to(VECTORS).as_posix()


def _b64(value: str | None) -> bytes:
    # Go marshals a nil []byte as null and an empty one as "".
    return base64.b64decode(value, validate=True) if value else b""


def _proof(values: list[str] | None) -> list[bytes]:
    return [_b64(v) for v in values or []]


def test_all_vectors_are_present():
    assert len(INCLUSION) == 98
    assert len(CONSISTENCY) == 98
    assert (VECTORS / "LICENSE").is_file()
    assert (VECTORS / "NOTICE").is_file()


@pytest.mark.parametrize("path", INCLUSION, ids=_id)
def test_inclusion_vector(path: Path):
    case = json.loads(path.read_text())
    args = (
        case["leafIdx"],
        case["treeSize"],
        _b64(case["leafHash"]),
        _proof(case["proof"]),
        _b64(case["root"]),
    )
    if case["wantErr"]:
        with pytest.raises(ProofError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("path", CONSISTENCY, ids=_id)
def test_consistency_vector(path: Path):
    case = json.loads(path.read_text())
    args = (
        case["size1"],
        case["size2"],
        _b64(case["root1"]),
        _b64(case["root2"]),
        _proof(case["proof"]),
    )
    if case["wantErr"]:
        with pytest.raises(ProofError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)
