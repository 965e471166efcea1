"""A fresh namespace per e2e test on the session's kube-apiserver (the `cluster`, `api_client` and `installed_crds`
fixtures come from tests/cluster.py, registered once in tests/conftest.py)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest


@pytest.fixture
def namespace(api_client: Any) -> str:
    """A fresh namespace for one test (left behind: the cluster is thrown away after the session)."""
    from kubernetes import client

    name = f"e2e-{uuid.uuid4().hex[:10]}"
    client.CoreV1Api(api_client).create_namespace({"metadata": {"name": name}})
    return name
