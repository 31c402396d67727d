"""Schemathesis against the served OpenAPI spec: no route answers 5xx.

Bounded (8 generated requests per operation, a few seconds): every operation
with an admin token of ledger team-a, the ledger path parameter pinned to
team-a so the generated values reach the handlers rather than stopping at 403
(other ledgers are the access table's job, test_server_api.py). Driven through
Hypothesis directly: schemathesis's pytest plugin does not run on this pytest.
"""

from __future__ import annotations

from optional_extras import require_extra

require_extra("server", "fastapi", "uvicorn", "psycopg")
(schemathesis,) = require_extra("test", "schemathesis")

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402


def test_no_route_answers_5xx(team_server):
    schema = schemathesis.openapi.from_url(f"{team_server.base}/openapi.json")
    token = team_server.token("admin", "fuzz-admin")
    base_url = f"http://127.0.0.1:{team_server.port}"
    # The run hold streams for as long as its lease (up to a day, by design):
    # the access table (test_server_api.py) calls it with a short lease.
    operations = [
        op
        for op in (result.ok() for result in schema.get_all_operations())
        if not op.path.endswith("/hold")
    ]
    assert len(operations) >= 25
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=8,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def check(case):
            if case.path_parameters and "ledger" in case.path_parameters:
                case.path_parameters["ledger"] = "team-a"
            response = case.call(
                base_url=base_url,
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
            )
            assert response.status_code < 500, (
                case.method,
                case.formatted_path,
                response.text[:500],
            )

        check()
