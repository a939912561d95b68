"""`Idempotency-Key` on the run-creating route: a retried request never starts a second run.

A client sends `Idempotency-Key: <key>` (a UUID is best) with `POST /v1/chat/completions` and
sends the same key again when it retries (after a 5xx, a dropped connection, a timeout). The
key names one run of one tenant: the run's id is derived from the tenant and the key
(`run_id_for`), so every replica finds the same run in the shared store, and two tenants using
the same key get two runs (a key never reads another tenant's run).

What a request whose key names a run already in the store gets (see `brickwork.http.server`):

- a finished run (any outcome): its stored outcome, with the status code it first had, and
  `Idempotent-Replayed: true`; nothing runs again;
- an interrupted run (its replica died): the run resumed from its last checkpoint, as
  `POST /v1/runs/{run_id}/resume` does;
- a run still running on a live replica, or a request with the same key being answered now:
  409 `run_in_progress` with `Retry-After` and `x-should-retry: true`;
- a different request (another graph, text, mode): 422 `idempotency_key_reused`.

The field's rules: the IETF draft `draft-ietf-httpapi-idempotency-key-header` (422 for a key
reused with another payload, 409 while the first request is processed; a lookup key composed of
the client's key and something of the client's own, here the tenant) and Stripe's keys (up to
255 characters).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

from brickwork.http.models import ApiError

__all__ = ["HEADER", "MAX_KEY_CHARS", "REPLAYED_HEADER", "parse_key", "run_id_for"]

#: The request header (the IETF draft's name, also Stripe's and OpenAI's SDKs').
HEADER = "Idempotency-Key"
#: Set on an answer read from the store instead of run now.
REPLAYED_HEADER = "Idempotent-Replayed"
#: Longest key accepted.
MAX_KEY_CHARS = 255

#: Visible ASCII, no spaces: what a UUID, a ULID or any random token is made of.
_KEY = re.compile(r"[\x21-\x7e]+")


def parse_key(values: Sequence[str]) -> str | None:
    """The request's idempotency key from its `Idempotency-Key` header values, or None.

    The key may be sent bare (`Idempotency-Key: 8e03978e-...`) or as the draft's quoted
    structured-field string (`Idempotency-Key: "8e03978e-..."`); both name the same key.

    Raises:
        ApiError: 400 `invalid_idempotency_key` for an empty, too long or non-ASCII key, one
            with spaces or control characters, or more than one header.
    """
    if not values:
        return None
    if len(values) > 1:
        raise _invalid(f"the request has {len(values)} {HEADER} headers; send one")
    key = values[0].strip()
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1]
    if not key:
        raise _invalid(f"the {HEADER} header is empty; send a unique key, e.g. a UUID")
    if len(key) > MAX_KEY_CHARS:
        raise _invalid(
            f"the {HEADER} is {len(key)} characters; the limit is {MAX_KEY_CHARS} (a UUID is 36)"
        )
    if _KEY.fullmatch(key) is None:
        raise _invalid(
            f"the {HEADER} may hold only visible ASCII characters, without spaces (e.g. a UUID)"
        )
    return key


def run_id_for(tenant: str, key: str) -> str:
    """The id of the run that `tenant`'s requests with idempotency key `key` name."""
    digest = hashlib.sha256(f"brickwork-idempotency\x00{tenant}\x00{key}".encode())
    return digest.hexdigest()[:16]


def _invalid(message: str) -> ApiError:
    return ApiError(400, message, param=HEADER, code="invalid_idempotency_key")
