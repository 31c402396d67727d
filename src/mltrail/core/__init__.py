"""The pure core: entries, canonical bytes, hashing, Merkle trees, signatures, verification.

Nothing here touches the filesystem, network, clock, environment or subprocesses.
"""
