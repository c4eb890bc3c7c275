"""Fixtures for the control-plane tests; the machinery lives in ``api_helpers``."""

from tests.api.api_helpers import db_url, pg_cluster, server  # noqa: F401  (pytest fixtures)
