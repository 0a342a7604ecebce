"""The stream-id bits (RFC 9000 §2.1), read in one place: ``protocol/ids.py``."""

from __future__ import annotations

import pytest

from starlette_webtransport.protocol.ids import (
    is_client_bidirectional,
    is_unidirectional,
    opener_bit,
)


@pytest.mark.parametrize(
    ("stream_id", "opener", "unidirectional", "client_bidi"),
    [
        (0, 0, False, True),  # client bidirectional: a CONNECT, a session id
        (1, 1, False, False),  # server bidirectional
        (2, 0, True, False),  # client unidirectional
        (3, 1, True, False),  # server unidirectional
        (4 * 1_000_003, 0, False, True),
        (4 * 1_000_003 + 3, 1, True, False),
    ],
)
def test_the_two_low_bits_name_opener_and_direction(
    stream_id: int, opener: int, unidirectional: bool, client_bidi: bool
) -> None:
    assert opener_bit(stream_id) == opener
    assert is_unidirectional(stream_id) is unidirectional
    assert is_client_bidirectional(stream_id) is client_bidi


def test_no_module_of_the_package_reads_the_bits_by_hand() -> None:
    """Every ``& 0x1``/``& 0x2``/``& 0x3``/``% 4`` on a stream id goes through ids.py."""
    import re
    from pathlib import Path

    package = Path(__file__).resolve().parents[2] / "starlette_webtransport"
    found = [
        f"{path.relative_to(package)}:{number}"
        for path in package.rglob("*.py")
        if path.name != "ids.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"stream_id\s*(&\s*0x[123]\b|%\s*4\b)|session_id\s*&\s*0x3", line)
    ]
    assert found == []
