"""The last pass before anything is stored: commit, mask, detect.

A :class:`SecretGuard` belongs to one recording process (a wrapper, a
``start_run``, a joined process). It holds the commitment key's committer, the
run's mask set (grown with every secret found in a body, so that a password given
to ``log_params`` is masked in the logs stored after it), the allow-list, and
whether to run the detector. :meth:`SecretGuard.clean` is applied to every entry
body by the run writer:

1. secrets by name or shape become keyed commitments (``capture.redact``);
2. every string is masked with the mask set (an error message holding a password
   keeps the message, not the password);
3. every text blob (logs, diffs, scripts, config files: ``Blob.text``) is masked
   with the mask set and the detector's findings (``capture.detect``);
4. a digest of exactly the bytes of a masked blob (a script's or config's
   ``sha256``) is replaced by the digest of the masked bytes, and the original's
   keyed commitment is kept beside it (``<field>_original``): the hash of a file
   whose only unknown is a masked password would let anyone test guesses.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mltrail.capture.run import detect
from mltrail.capture.run.blob import Blob
from mltrail.capture.run.commitment import (
    MARKER_PATTERN,
    Committer,
    ephemeral_committer,
    is_commitment,
)
from mltrail.capture.run.mask import MaskSet
from mltrail.capture.run.redact import committing_with, redact_tree
from mltrail.capture.run.secret_names import is_secret_name

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from mltrail.capture.run.allowlist import AllowList

__all__ = ["SecretGuard"]

_MARKER = re.compile(MARKER_PATTERN)
_KEY_IDS = frozenset({"key", "public_key"})
"""Field names of mltrail's own kinds that hold key ids and public keys."""


class SecretGuard:
    """Commits, masks and detects secrets in what one process records."""

    def __init__(
        self,
        committer: Committer | None = None,
        masks: MaskSet | None = None,
        *,
        allow: AllowList | None = None,
        detect_shapes: bool = True,
    ) -> None:
        self.committer = committer or ephemeral_committer()
        self.masks = masks or MaskSet()
        self.allow = allow
        self.detect_shapes = detect_shapes
        self.report: Callable[[Iterable[str]], None] | None = None
        """Where secrets learned are also sent: the wrapper whose command this
        process joined, which stores its output (``capture.run.mask_channel``)."""

    def learn(self, named: list[tuple[str, str]]) -> None:
        """Add ``(name, value)`` secrets to the mask set (and report them)."""
        if named:
            self.masks |= MaskSet.build(named, self.allow)
            if self.report is not None:
                self.report(value for _, value in named)

    def clean(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """``body`` with secrets committed, masked and detected (see module doc)."""
        redacted = redact_tree(dict(body), committer=self.committer)
        self.learn([("secret", s) for s in redacted.secrets])
        cleaned: dict[str, Any] = self._walk(redacted.value)
        return cleaned

    def clean_text(self, text: str) -> str:
        """Free text a person typed (a purge's reason, an approval's note): kept
        readable, with each secret in it replaced in place, never the whole text.

        URL passwords, secret query values and values assigned to secret names
        become commitment markers (as in any body); a credential shape inside
        the text (``hf_…``, ``ghp_…``) is masked as ``[MASKED:secret]``, since
        :meth:`clean` would commit the whole text; a text that is nothing but
        one credential becomes a marker. The mask set is applied last.
        """
        with committing_with(self.committer):
            redacted = redact_tree(text)
        if isinstance(redacted.value, str):
            out = redacted.value
        else:
            parts = [("secret", s) for s in redacted.secrets if s != text]
            out = MaskSet.build(parts, self.allow).mask_text(text)[0] if parts else text
            if out == text:
                return self.committer.marker(text)
        return self.masks.mask_text(out)[0] if self.masks else out

    def clean_strings(self, value: Any) -> Any:
        """``value`` with every string through :meth:`clean_text` and every
        string under a secret name (``password``, ``api_token``) a marker; keys,
        numbers and the shape of the tree are kept, so a body still matches its
        schema. Mltrail's own key ids (``key``, ``public_key``) are not
        secrets."""
        if isinstance(value, str):
            return self.clean_text(value) if value else value
        if isinstance(value, Mapping):
            return {k: self._clean_item(k, v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.clean_strings(v) for v in value]
        return value

    def _clean_item(self, key: object, value: Any) -> Any:
        if (
            isinstance(value, str)
            and value
            and str(key) not in _KEY_IDS
            and is_secret_name(str(key))
            and _MARKER.fullmatch(value) is None
        ):
            return self.committer.marker(value)
        return self.clean_strings(value)

    def _walk(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.masks.mask_text(value)[0] if self.masks else value
        if isinstance(value, Blob):
            return self._blob(value)[0]
        if isinstance(value, Mapping) and not is_commitment(value):
            return self._mapping(value)
        if isinstance(value, list | tuple):
            return [self._walk(v) for v in value]
        return value

    def _mapping(self, value: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        changed: list[tuple[bytes, bytes]] = []
        total = 0
        for key, item in value.items():
            if isinstance(item, Blob):
                out[key], count = self._blob(item)
                if count:
                    changed.append((item.data, out[key].data))
                    total += count
            else:
                out[key] = self._walk(item)
        for original, masked in changed:
            self._replace_digests(out, original, masked)
        if total:
            out["masked"] = int(out.get("masked") or 0) + total
            if "content_redacted" in out:
                out["content_redacted"] = True
        return out

    def _blob(self, blob: Blob) -> tuple[Blob, int]:
        if not blob.text:
            return blob, 0
        data, count = self.masks.mask(blob.data)
        if self.detect_shapes and not blob.scanned:
            found = detect.detected_masks(data, filename=blob.name, allow=self.allow)
            data, more = found.mask(data)
            count += more
        if not count:
            return blob, 0
        return dataclasses.replace(blob, data=data, scanned=True), count

    def _replace_digests(
        self, out: dict[str, Any], original: bytes, masked: bytes
    ) -> None:
        old = hashlib.sha256(original).hexdigest()
        new = hashlib.sha256(masked).hexdigest()
        for key, item in list(out.items()):
            if item == old:
                out[key] = new
                out[f"{key}_original"] = self.committer.commit(original)
