"""Make internal error text fit for users: no URLs, hosts, ports, file paths or exception types.

    >>> redact("model 'slm' is unavailable: ConnectError: cannot reach http://127.0.0.1:8400/v1")
    "model 'slm' is unavailable: cannot reach an internal address"

Run traces keep the full text (operators need it); what a user reads (an HTTP error message,
an answer that says why a request could not be done) goes through `redact` first. It is a
text filter, not a security boundary: it removes the shapes that leak how the deployment is
built (addresses, file layout, the language's exception names, object reprs, tracebacks).
"""

from __future__ import annotations

import re

__all__ = ["redact"]

_SERVER = "an internal address"
_PATH = "an internal file"

_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    # Traceback lines: File "/x/y.py", line 3, in f
    (re.compile(r'File "[^"]*", line \d+(?:, in \S+)?'), ""),
    # Object reprs: <httpx.Client object at 0x7f...>
    (re.compile(r"<[\w.]+(?: object)? at 0x[0-9a-fA-F]+>"), "an object"),
    # URLs of any scheme, including credentials and query strings.
    (re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>)\]]+"), _SERVER),
    # Bracketed IPv6 with an optional port: [::1]:8000
    (re.compile(r"\[[0-9a-fA-F:]*:[0-9a-fA-F:]*\](?::\d+)?"), _SERVER),
    # IPv4 with an optional port.
    (re.compile(r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?(?![\w.])"), _SERVER),
    # host:port (a name starting with a letter, then a 2-5 digit port).
    (re.compile(r"(?<![\w.:/])[a-zA-Z][\w-]*(?:\.[\w-]+)*:\d{2,5}(?![\w.:])"), _SERVER),
    # POSIX absolute or home paths with at least two segments, and Windows paths.
    (re.compile(r"(?<![\w/.~])~?/(?:[\w.@+-]+/)+[\w.@+-]*"), _PATH),
    (re.compile(r"\b[a-zA-Z]:\\(?:[\w.@+ -]+\\)*[\w.@+-]*"), _PATH),
    # Exception type names, qualified or not, with the colon that follows them.
    (
        re.compile(
            r"\b(?:[a-z_][\w]*\.)*[A-Z]\w*(?:Error|Exception|Exit|Interrupt|Warning)\b(?::\s*)?"
        ),
        "",
    ),
    # Module-qualified class names (httpx.ReadTimeout) and CamelCase names before a colon.
    (re.compile(r"\b(?:[a-z_]\w*\.)+[A-Z]\w*(?::\s*)?"), ""),
    (re.compile(r"\b[A-Z][a-z0-9]+(?:[A-Z][a-z0-9]*)+:\s*"), ""),
)
_SPACES = re.compile(r"[ \t]{2,}")
_DUPLICATE = re.compile(rf"({re.escape(_SERVER)})(?:[/\s]*{re.escape(_SERVER)})+")


def redact(text: str) -> str:
    """`text` without internal URLs, hosts, ports, file paths, exception names or reprs.

    Args:
        text: An error message or answer meant for a user.

    Returns:
        The text with each such part replaced by a neutral phrase ("an internal address",
        "an internal file") or removed (exception type names, traceback locations).
    """
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    text = _DUPLICATE.sub(r"\1", text)
    return _SPACES.sub(" ", text).strip()
