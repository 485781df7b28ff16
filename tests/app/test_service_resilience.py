"""A PostgreSQL restart (what a failover looks like to clients) costs no failed API request."""

from __future__ import annotations

from fastapi.testclient import TestClient

from testing.servers import ThrowawayStack


def test_api_survives_a_database_restart(app_client: TestClient, stack: ThrowawayStack, as_viewer: dict[str, str],
                                         workers) -> None:  # type: ignore[no-untyped-def]
    for _ in range(3):  # fill the pool with live connections
        assert app_client.get("/api/v1/reconciliations", headers=as_viewer).status_code == 200
    assert stack.pg is not None
    stack.pg.restart()
    # every pooled connection is now dead; checked on checkout, they are replaced transparently
    codes = [app_client.get("/api/v1/reconciliations", headers=as_viewer).status_code for _ in range(5)]
    assert codes == [200] * 5
    assert app_client.get("/ready").status_code == 200
    workers.ensure()
