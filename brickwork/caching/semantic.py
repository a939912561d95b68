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
_HEADER = struct.Struct("<64sH")  # exact key (hex), embedding dimension


@dataclass(frozen=True)
class Entry:
    """One cached request of a semantic key space.

    Attributes:
        key: The exact key (`request_key`) its completion is stored under.
        text: The user text it answered.
        vector: The text's normalised embedding.
    """

    key: str
    text: str
    vector: NDArray[Any]

    def pack(self) -> bytes:
        """Bytes for the backend: header, float16 embedding, UTF-8 text."""
        import numpy as np

        vector = np.asarray(self.vector, dtype=np.float16)
        return (
            _HEADER.pack(self.key.encode(), vector.shape[0])
            + vector.tobytes()
            + (self.text.encode())
        )

    @classmethod
    def unpack(cls, data: bytes) -> Entry:
        """The entry `pack` wrote.

        Raises:
            ValueError: The bytes are not a packed entry.
        """
        import numpy as np

        try:
            key, dim = _HEADER.unpack_from(data)
            start = _HEADER.size
            vector = np.frombuffer(data, dtype=np.float16, count=dim, offset=start)
            text = data[start + 2 * dim :].decode()
        except (struct.error, ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"not a semantic cache entry: {exc}") from exc
        return cls(key.decode(), text, vector.astype(np.float32))


def nearest(query: NDArray[Any], entries: Sequence[Entry]) -> tuple[Entry, float] | None:
    """The entry whose embedding is closest to `query` (cosine), with its similarity."""
    import numpy as np

    usable = [e for e in entries if e.vector.shape == query.shape]
    if not usable:
        return None
    matrix = np.stack([e.vector for e in usable])
    norms = np.linalg.norm(matrix, axis=1) * max(float(np.linalg.norm(query)), 1e-12)
    similarities = (matrix @ query) / np.maximum(norms, 1e-12)
    best = int(np.argmax(similarities))
    return usable[best], float(similarities[best])


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
