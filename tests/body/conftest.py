"""Shared fixtures of the body-layer tests."""
import pytest

from body.assets import load_asset_set


@pytest.fixture(scope="session")
def assets():
    """The bundled open asset set (loaded once)."""
    return load_asset_set("open")
