"""`redact`: user-facing text says nothing about the deployment's insides."""

from __future__ import annotations

import pytest

from brickwork.http.redact import redact


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "model 'slm' is unavailable after 3 failed attempt(s): ConnectError: All connection "
            "attempts failed (http://127.0.0.1:8400/v1). Check the server",
            "model 'slm' is unavailable after 3 failed attempt(s): All connection attempts "
            "failed (an internal address). Check the server",
        ),
        (
            "TypeError: TextEncodeInput must be Union[TextInputSequence]",
            "TextEncodeInput must be Union[TextInputSequence]",
        ),
        (
            "BankError: the customer has no credit_card account",
            "the customer has no credit_card account",
        ),
        ("httpx.ReadTimeout: timed out", "timed out"),
        ("could not open /home/bw/.cache/brickwork/runs.sqlite", "could not open an internal file"),
        ("C:\\Users\\bw\\runs.sqlite is locked", "an internal file is locked"),
        ("postgresql://bw:secret@db.internal:5432/runs refused", "an internal address refused"),
        (
            "db.internal:5432 and localhost:8321 and [::1]:8000",
            "an internal address and an internal address and an internal address",
        ),
        ("10.1.2.3 is down", "an internal address is down"),
        ('File "/srv/app/x.py", line 3, in run: boom', "boom"),
        ("<httpx.AsyncClient object at 0x7f3a2b> closed", "an object closed"),
    ],
)
def test_internal_details_are_removed(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "toolcall failed: validation_failed (the room 'attic' is not one of kitchen, bedroom)",
        "turn on the lights at 12:30 and/or 3/4 brightness",
        "Run 1a2b3c: set_thermostat(temperature=21)",
    ],
)
def test_plain_text_is_kept(text: str) -> None:
    assert redact(text) == text
