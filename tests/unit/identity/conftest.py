import pytest

from extproc.local.demo_keys import generate_rsa_key
from tests.unit.identity.idp_server import IdpServer


@pytest.fixture
def idp():
    server = IdpServer()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def rsa_keys():
    """Three RSA keys (generation is the slow part; share them)."""
    return [generate_rsa_key() for _ in range(3)]
