"""Data on disk and remote: hashing, caches, walks, tables, splits, DVC."""
