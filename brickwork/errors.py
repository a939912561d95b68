"""The errors brickwork raises, one small tree under `BrickworkError`.

```
BrickworkError
├── AdmissionRefused            too many runs in flight and waiting: retry after a while
├── ConfigError                 malformed configuration or unknown names
│   ├── UnknownModelError       a logical model name no endpoint serves
│   └── PrivilegedRoleError     agent SQL would run as a superuser / server-file role
├── MissingDependencyError      an optional extra is not installed (names the extra)
├── RunInProgress               another live process (replica) is running that run now
├── ModelFolderError            a model folder is missing, corrupt or cannot be built
├── SkillError                  a skill definition or its data files are invalid
├── TuneError                   tuning data, a training run or an adapter is unusable
├── ToolError                   a tool call went wrong (agents turn these into signals)
│   ├── UnknownToolError        the model named a tool the registry does not have
│   ├── ToolArgumentsError      arguments fail the tool's JSON schema / types
│   ├── ToolExecutionError      the tool itself raised
│   └── ToolTimeoutError        the tool did not return in time
├── SQLError                    anything about generated SQL
│   ├── UnsafeSQLError          not one read-only SELECT over known tables/columns
│   ├── SQLExecutionError       the database refused or failed the query
│   └── SQLTimeoutError         the query ran past its time limit
└── ServingError                anything about model servers and calls to them
    ├── PortInUseError          the port a server should bind is taken
    ├── ServerStartError        a launched server died or never became ready
    │   └── PlacementError      a core plan names missing cores or shares one
    ├── EndpointUnavailableError  every endpoint for a model is down or its circuit is open
    ├── ModelCallError          the server answered with an error (status code kept)
    └── ModelTimeoutError       no answer within the read timeout, after retries
```

Messages quote the offending value with `!r` and say what to do next.
"""

from __future__ import annotations

__all__ = [
    "AdmissionRefused",
    "BrickworkError",
    "ConfigError",
    "EndpointUnavailableError",
    "MissingDependencyError",
    "ModelCallError",
    "ModelFolderError",
    "ModelTimeoutError",
    "PlacementError",
    "PortInUseError",
    "PrivilegedRoleError",
    "RunInProgress",
    "SQLError",
    "SQLExecutionError",
    "SQLTimeoutError",
    "ServerStartError",
    "ServingError",
    "SkillError",
    "ToolArgumentsError",
    "ToolError",
    "ToolExecutionError",
    "ToolTimeoutError",
    "TuneError",
    "UnknownModelError",
    "UnknownToolError",
    "UnsafeSQLError",
]


class BrickworkError(Exception):
    """Base class of every error brickwork raises on purpose."""


class AdmissionRefused(BrickworkError):
    """A run was refused before it started: too many runs in flight and waiting.

    Either every slot was taken and the queue full (refused at once), or the run waited in
    the queue past its wait limit (see `brickwork.admission`).

    Attributes:
        reason: Which limit refused it, for messages.
        retry_after_s: A hint for when capacity is likely free again (seconds).
    """

    def __init__(self, reason: str, *, retry_after_s: float) -> None:
        self.reason = reason
        self.retry_after_s = retry_after_s
        super().__init__(
            f"run refused: {reason}; nothing was run. Retry in about {retry_after_s:.1f} s, "
            "or raise the App's max_in_flight/max_queue if the models can take more"
        )


class ConfigError(BrickworkError):
    """Configuration is malformed or refers to something that does not exist."""


class UnknownModelError(ConfigError):
    """A logical model name that no endpoint in the pool serves."""


class PrivilegedRoleError(ConfigError):
    """Agent SQL would run as a PostgreSQL superuser or a member of a server-file role.

    Such a role reads and writes server files whatever the read-only transaction says; the
    message says how to create a read-only role and pass it, or how to opt in explicitly.
    """

    def __init__(self, message: str, *, role: str) -> None:
        self.role = role
        super().__init__(message)


class RunInProgress(BrickworkError):
    """A run is being advanced by another live process (an API replica) right now.

    Two processes advancing one LangGraph thread fork its checkpoint chain, so the second is
    refused before it runs anything.
    """

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(
            f"run {run_id!r} is running in another process right now; nothing was run. "
            "Wait for it to end (GET /v1/runs/<id> shows its status), then resume it if it "
            "was interrupted"
        )


class MissingDependencyError(BrickworkError):
    """An optional dependency is not installed; the message names the extra."""

    def __init__(self, module: str, extra: str, purpose: str) -> None:
        self.module = module
        self.extra = extra
        super().__init__(
            f"{module!r} is not installed; it is needed for {purpose}. "
            f"Install it with: pip install 'brickwork[{extra}]'"
        )


class ModelFolderError(BrickworkError):
    """A model folder is missing, half-written or fails its manifest check."""


class SkillError(BrickworkError):
    """A skill definition or one of its data files is invalid."""


class TuneError(BrickworkError):
    """Tuning data is empty or invalid, training failed, or an adapter does not fit its base."""


class ToolError(BrickworkError):
    """A tool call failed; `tool` names the tool when known."""

    def __init__(self, message: str, *, tool: str | None = None) -> None:
        self.tool = tool
        super().__init__(message)


class UnknownToolError(ToolError):
    """The model named a tool that is not in the registry."""


class ToolArgumentsError(ToolError):
    """The arguments do not satisfy the tool's schema."""


class ToolExecutionError(ToolError):
    """The tool function raised an exception."""


class ToolTimeoutError(ToolError):
    """The tool function did not return within its timeout."""


class SQLError(BrickworkError):
    """Generated SQL was rejected or failed."""


class UnsafeSQLError(SQLError):
    """The SQL is not a single read-only query over the known schema."""


class SQLExecutionError(SQLError):
    """The database raised an error running the query (message kept for repair)."""


class SQLTimeoutError(SQLError):
    """The query ran past its time limit and was cancelled."""


class ServingError(BrickworkError):
    """A model server could not be started or a call to one failed."""


class PortInUseError(ServingError):
    """The port a server should listen on is already taken."""


class ServerStartError(ServingError):
    """A launched server exited or did not become ready in time."""


class PlacementError(ServerStartError):
    """A placement plan names cores the machine lacks or gives one core to two instances."""


class EndpointUnavailableError(ServingError):
    """No endpoint for a logical model can take a request right now."""


class ModelCallError(ServingError):
    """The model server answered a request with an error."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        self.status_code = status_code
        super().__init__(message)


class ModelTimeoutError(ServingError):
    """The model server did not answer within the timeout (after retries)."""
