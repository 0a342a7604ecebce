"""The application-code and close-reason rules, defined once in the protocol layer and
shared by every layer that takes a code or a reason from a caller."""

from __future__ import annotations

from typing import Any

import pytest

from starlette_webtransport.protocol import errors
from starlette_webtransport.protocol.capsules import CloseSession
from starlette_webtransport.protocol.errors import (
    MAX_APPLICATION_CODE,
    MAX_CLOSE_REASON_SIZE,
    check_close,
    check_code,
)
from starlette_webtransport.session import constants
from starlette_webtransport.starlette import INTERNAL_ERROR_CODE, WebTransportException


@pytest.mark.parametrize("code", [0, 1, 0x102, MAX_APPLICATION_CODE])
def test_u32_codes_pass(code: int) -> None:
    assert check_code(code) == code


@pytest.mark.parametrize("code", [-1, MAX_APPLICATION_CODE + 1, 2**62, True, 1.0, "1", None])
def test_everything_else_is_refused_with_the_callers_name(code: Any) -> None:
    with pytest.raises(ValueError, match=r"^stream reset code must be 0\.\.4294967295, got "):
        check_code(code, "stream reset code")


def test_close_reason_is_utf8_up_to_the_limit() -> None:
    assert check_close(7, "é" * (MAX_CLOSE_REASON_SIZE // 2)) == ("é" * 512).encode()
    with pytest.raises(ValueError, match="1025 UTF-8 bytes; the limit is 1024"):
        check_close(0, "x" * 1025)
    with pytest.raises(ValueError, match="not encodable as UTF-8"):
        check_close(0, "\ud800")
    with pytest.raises(ValueError, match="WT_CLOSE_SESSION code must be"):
        check_close(-1, "")


def test_every_layer_refuses_the_same_codes() -> None:
    """The capsule, the Starlette exception and the wire mapping share one rule: a bool
    is not a code in any of them (the capsule took ``True`` as 1 before)."""
    for build in (
        lambda: CloseSession(True, ""),
        lambda: WebTransportException(True),
        lambda: errors.app_to_http3(True),
    ):
        with pytest.raises(ValueError, match=r"must be 0\.\.4294967295"):
            build()


def test_the_session_layer_names_the_protocol_facts_without_copying_them() -> None:
    assert constants.MAX_ERROR_CODE is errors.MAX_APPLICATION_CODE
    assert constants.MAX_CLOSE_REASON_BYTES is errors.MAX_CLOSE_REASON_SIZE
    assert constants.INTERNAL_ERROR_CODE is errors.INTERNAL_ERROR_CODE is INTERNAL_ERROR_CODE
