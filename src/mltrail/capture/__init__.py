"""Impure collectors: read the machine, return plain JSON-able payloads, never write storage."""
