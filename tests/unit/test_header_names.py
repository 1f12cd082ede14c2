"""Header names as upstream stacks read them."""

import pytest

from extproc.headers import fold_header_name, validate_header_name, validate_mutable_header_name


def test_fold_header_name_is_what_cgi_wsgi_and_rack_read():
    assert fold_header_name("X_Auth_Tenant") == fold_header_name("x-auth-tenant") == "x-auth-tenant"


@pytest.mark.parametrize("validate", [validate_header_name, validate_mutable_header_name])
def test_a_policy_naming_an_underscore_header_is_a_load_error(validate):
    # The edge refuses such headers and the processor strips them: a rule on
    # one could never apply, so it must not load silently.
    with pytest.raises(ValueError, match="'_'"):
        validate("x_debug")
    assert validate("X-Debug") == "x-debug"
