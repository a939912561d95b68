"""Semantic hits: the nearest cached request of the same key space, above a node's threshold.

Only nodes that opt in (`ResponseCache(semantic={"smart_home/intent": 0.93})`) are looked up
this way, and only after the exact lookup missed. The key space (`key.semantic_space`) is
everything in the exact key except the last user message, so candidates share the node, the
tenant, the skill version, the binding, the system prompt, the earlier turns and the schema;
within it the new user text is compared with each cached one by the cosine of their MiniLM
embeddings (`agents.embeddings.minilm_encoder`, the encoder the graph's intent kNN uses).

A candidate above the threshold is still not a hit when `guard_problem` finds a reason: an
answer that is not one of the offered choices or not JSON where JSON is asked for, a value
of a structured answer (a tool call's arguments, an extraction's fields) that the *new*
request does not say (with word starts: "lock" is not said by "unlock"), or a number the new
request says that the cached one did not (a changed slot). Then the agent validates the hit as
it validates a fresh answer, and a cached tool call is executed again.

An index entry is `Entry`: the exact key of the cached completion, the cached user text and its
embedding (float16), packed into bytes for `CacheBackend.push`.
"""

from __future__ import annotations

import json
import re
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from brickwork.agents.grounding import is_grounded, normalise_text, said_numbers

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = [
    "DEFAULT_SPACE_ENTRIES",
    "Entry",
    "MemoEncoder",
    "guard_problem",
    "nearest",
    "said_strictly",
]

#: Cached texts kept per semantic key space (newest first): bounds the lookup's work.
DEFAULT_SPACE_ENTRIES = 256
_DIM = struct.Struct("<H")
_KEY_BYTES = 64


@dataclass(frozen=True)
class Entry:
    """One cached request of a semantic key space.

    Packed as: the embedding's dimension (uint16), the embedding (float16), the exact key
    (64 hex characters), the user text (UTF-8). The embedding comes first so that a lookup
    reads every entry's embedding with one array operation and decodes only the nearest.

    Attributes:
        key: The exact key (`request_key`) its completion is stored under.
        text: The user text it answered.
        vector: The text's normalised embedding.
    """

    key: str
    text: str
    vector: NDArray[Any]

    def pack(self) -> bytes:
        """Bytes for the backend."""
        import numpy as np

        vector = np.asarray(self.vector, dtype=np.float16)
        key = self.key.encode()
        if len(key) != _KEY_BYTES:
            raise ValueError(f"an entry's key must be {_KEY_BYTES} hex characters, not {key!r}")
        return _DIM.pack(vector.shape[0]) + vector.tobytes() + key + self.text.encode()

    @classmethod
    def unpack(cls, data: bytes) -> Entry:
        """The entry `pack` wrote.

        Raises:
            ValueError: The bytes are not a packed entry.
        """
        import numpy as np

        try:
            (dim,) = _DIM.unpack_from(data)
            start = _DIM.size + 2 * dim
            if len(data) < start + _KEY_BYTES:
                raise ValueError(f"{len(data)} bytes, fewer than an entry of dimension {dim}")
            vector = np.frombuffer(data, dtype=np.float16, count=dim, offset=_DIM.size)
            key = data[start : start + _KEY_BYTES].decode()
            text = data[start + _KEY_BYTES :].decode()
        except (struct.error, ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"not a semantic cache entry: {exc}") from exc
        return cls(key, text, vector.astype(np.float32))


def nearest(query: NDArray[Any], packed: Sequence[bytes]) -> tuple[Entry, float] | None:
    """The packed entry whose embedding is closest to `query` (cosine), with its similarity.

    Entries of another dimension (another encoder) and unreadable ones are skipped.
    """
    import numpy as np

    dim = int(query.shape[0])
    head = _DIM.pack(dim)
    size = _DIM.size + 2 * dim
    usable = [data for data in packed if data[: _DIM.size] == head and len(data) >= size + 64]
    if not usable:
        return None
    matrix = np.frombuffer(b"".join(d[_DIM.size : size] for d in usable), dtype=np.float16)
    matrix = matrix.reshape(len(usable), dim).astype(np.float32)
    norms = np.linalg.norm(matrix, axis=1) * max(float(np.linalg.norm(query)), 1e-12)
    similarities = (matrix @ query) / np.maximum(norms, 1e-12)
    for best in np.argsort(-similarities)[:3]:
        try:
            return Entry.unpack(usable[int(best)]), float(similarities[int(best)])
        except ValueError:
            continue  # an unreadable entry: try the next nearest
    return None


# -- the guard --------------------------------------------------------------------------------


def said_strictly(value: Any, said: str) -> bool:
    """`agents.grounding.is_grounded`, with strings matched from a word start.

    The grounding check accepts a value anywhere in the text ("door" in "doors"), which also
    finds "lock" in "unlock" and "on" in "conditioner"; a cached answer must not be reused on
    such a near miss, so here a string value must start a word of the new request.
    """
    if not isinstance(value, str):
        return is_grounded(value, said)
    wanted = normalise_text(value)
    text = normalise_text(said)
    if not wanted:
        return True
    if wanted in text:
        return re.search(rf"(?<![a-z0-9]){re.escape(wanted)}", text) is not None
    return is_grounded(value, said)  # currencies, weekdays and dates said in other forms


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, Mapping):
        return [leaf for item in value.values() for leaf in _leaves(item)]
    if isinstance(value, list | tuple):
        return [leaf for item in value for leaf in _leaves(item)]
    return [value]


def _arguments(answer: Any) -> Any:
    """The values to check: a tool call's parameters, else the whole structured answer."""
    if isinstance(answer, Mapping) and "name" in answer and "parameters" in answer:
        return answer["parameters"]
    if isinstance(answer, list):
        return [_arguments(item) for item in answer]
    return answer


def guard_problem(
    answer: str,
    new_text: str,
    cached_text: str,
    *,
    structured: bool,
    choices: Sequence[str] | None = None,
) -> str | None:
    """Why a cached answer must not be served for `new_text` (None: it may be).

    Args:
        answer: The cached completion's text.
        new_text: The new request's user text.
        cached_text: The user text the answer was given for.
        structured: The request asks for JSON (a schema): the answer's values are checked.
        choices: The request's offered choices, when it offers some.
    """
    if choices is not None and answer.strip() not in choices:
        return f"{answer.strip()!r} is not one of the offered choices"
    if not structured:
        return None
    try:
        parsed = json.loads(answer)
    except ValueError:
        return "the cached answer is not JSON"
    for value in _leaves(_arguments(parsed)):
        if not said_strictly(value, new_text):
            return f"{value!r} is not said by the new request"
    new_numbers = said_numbers(new_text) - said_numbers(cached_text)
    if new_numbers:
        return f"the new request says {sorted(new_numbers)!r}, the cached one did not"
    return None


# -- embeddings -------------------------------------------------------------------------------


class MemoEncoder:
    """An encoder with a small memo of its latest texts (a run's nodes embed the same text).

    Args:
        encoder: Texts to a `(n, dim)` array (default: MiniLM, loaded on first use).
        size: Texts remembered.
    """

    def __init__(
        self,
        encoder: Callable[[list[str]], NDArray[Any]] | None = None,
        *,
        size: int = 4096,
    ) -> None:
        self._encoder = encoder
        self._size = size
        self._memo: OrderedDict[str, NDArray[Any]] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, text: str) -> NDArray[Any]:
        """The text's normalised embedding (float32)."""
        import numpy as np

        with self._lock:
            found = self._memo.get(text)
            if found is not None:
                self._memo.move_to_end(text)
                return found
        if self._encoder is None:
            from brickwork.agents.embeddings import minilm_encoder

            self._encoder = minilm_encoder()
        row: NDArray[Any] = np.asarray(self._encoder([text]), dtype=np.float32)[0]
        vector: NDArray[Any] = row / max(float(np.linalg.norm(row)), 1e-12)
        with self._lock:
            self._memo[text] = vector
            while len(self._memo) > self._size:
                self._memo.popitem(last=False)
        return vector
