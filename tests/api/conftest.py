"""Fixtures for the control-plane tests; the machinery lives in ``api_helpers``."""

from collections.abc import Iterator

import httpx
import pytest

from tests.api.api_helpers import (  # noqa: F401  (pytest fixtures)
    Server,
    db_url,
    pg_cloud,
    pg_cluster,
    server,
    two_computes_server,
    user_client,
)

# A module's own server and its two clients, unless the module defines its own (its fixtures win).

@pytest.fixture(scope="module")
def srv(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server of the module's own on the two-computes scenario (SQLite), named after the module."""
    name = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    with two_computes_server(tmp_path_factory.mktemp(name), name) as own:
        yield own


@pytest.fixture(scope="module")
def admin(srv: Server) -> Iterator[httpx.Client]:
    """The admin's client of the module's server."""
    with srv.http() as c:
        yield c


@pytest.fixture(scope="module")
def demo(srv: Server) -> Iterator[httpx.Client]:
    """The demo project's member's client of the module's server."""
    with user_client(srv, "demo", "demo") as c:
        yield c
