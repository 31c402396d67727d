"""The mltrail team server (``mltrail[server]``, ADR 0027): one process serving the
ledgers of several teams kept in one PostgreSQL database over HTTP.

Modules:

- :mod:`~mltrail.server.control_schema` and :mod:`~mltrail.server.control`: the
  server's own tables (schema ``mltrail_server``: ledgers, tokens, revocations,
  idempotency keys), ``mltrail db init --ledger`` and the token operations. They
  need only psycopg, so the set-up commands never import FastAPI.
- :mod:`~mltrail.server.tokens`: token text, roles and which kinds each role may
  append.
- :mod:`~mltrail.server.ledgers` and :mod:`~mltrail.server.appender`: per-ledger
  connections and the group-committing appender.
- :mod:`~mltrail.server.limits` and :mod:`~mltrail.server.verifications`: each
  user's, ledger's and the process's share of run holds, verifications and
  large request bodies; the throttled error log.
- :mod:`~mltrail.server.app`, :mod:`~mltrail.server.routes_read` and
  :mod:`~mltrail.server.routes_write`: the FastAPI application (imported only by
  ``mltrail server``).

The API contract is published in ``docs/server.md``.
"""
