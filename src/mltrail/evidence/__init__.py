"""Evidence from outside: timestamps, cosignatures, write-once seals, proof bundles."""
