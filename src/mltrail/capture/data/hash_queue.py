"""The queue of files from the walk to the hashing threads.

Large files go alone, largest first; small ones in batches; at most
:data:`MAX_QUEUED` files wait (then the walk waits for the workers rather than
holding the whole tree in memory).
"""

from __future__ import annotations

import heapq
import threading
from collections import deque

from mltrail.tuples import NamedTuple

TYPE_CHECKING = False
if TYPE_CHECKING:
    from mltrail.capture.data.hashcache import FolderKey, StatKey

__all__ = ["BATCH_BYTES", "BATCH_FILES", "MAX_QUEUED", "File", "WorkQueue"]

BATCH_BYTES = 8 << 20
BATCH_FILES = 256
MAX_QUEUED = 1 << 16  # files waiting for a worker, at most (a few tens of MB)


class File(NamedTuple):
    """A regular file to hash, with its stat key when it was listed."""

    full: bytes
    rel: bytes
    key: StatKey
    folder: FolderKey


class WorkQueue:
    """Files to hash, handed from the walk to the workers as they are found.

    Large files go alone, largest known first; small ones in batches. Half the
    workers take large files first and half small ones, so that threads hashing
    large files (which hardly need the GIL) run beside those hashing small files
    (which need it for every open, read and stat), rather than all of them taking
    turns at the GIL on small files at the end. At most MAX_QUEUED files wait: then
    the walk waits for the workers rather than holding the whole tree in memory.
    """

    def __init__(self) -> None:
        self.queued = 0
        self.ready = threading.Condition()
        self.large: list[tuple[int, int, list[File]]] = []  # heap: (-size, n, [file])
        self.small: deque[list[File]] = deque()
        self.batch: list[File] = []
        self.batch_size = self.tasks = 0
        self.closed = False

    def add(self, file: File) -> None:
        size = file.key[2]
        if size >= BATCH_BYTES:
            self.tasks += 1
            with self.ready:
                heapq.heappush(self.large, (-size, self.tasks, [file]))
                self.queued += 1
                self.ready.notify()
            return
        if not self.batch:
            self.tasks += 1
        self.batch.append(file)
        self.batch_size += size
        if self.batch_size >= BATCH_BYTES or len(self.batch) >= BATCH_FILES:
            self._flush()

    def _flush(self) -> None:
        with self.ready:
            if self.batch:
                self.small.append(self.batch)
                self.queued += len(self.batch)
                self.ready.notify()
            self.batch, self.batch_size = [], 0

    def close(self) -> None:
        """No more files: workers finish what is queued, then stop."""
        self._flush()
        with self.ready:
            self.closed = True
            self.ready.notify_all()

    def full(self) -> bool:
        return self.queued >= MAX_QUEUED

    def take(self, large_first: bool) -> list[File] | None:
        """The next batch (waiting for one), or None once closed and empty."""
        with self.ready:
            while True:
                if self.large and (large_first or not self.small):
                    self.queued -= 1
                    return heapq.heappop(self.large)[2]
                if self.small:
                    batch = self.small.popleft()
                    self.queued -= len(batch)
                    return batch
                if self.closed:
                    return None
                self.ready.wait()
