"""Pydantic models of what crosses the wire (see the AgentCube wire contract).

Responses accept unknown fields (servers may add some); missing required fields raise
:class:`pydantic.ValidationError`, which the clients turn into SDK errors.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "CreateSessionRequest",
    "CreateSessionResponse",
    "EntryPoint",
    "ExecuteRequest",
    "ExecuteResponse",
    "FileEntry",
    "FileInfo",
    "FileListResponse",
    "UploadFileRequest",
]


class _WireModel(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class CreateSessionRequest(_WireModel):
    """Body of ``POST /v1/<segment>``."""

    name: str
    namespace: str
    ttl: int | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class EntryPoint(_WireModel):
    path: str = ""
    protocol: str = ""
    endpoint: str = ""


class CreateSessionResponse(_WireModel):
    """Answer of ``POST /v1/<segment>``; ``sessionId`` is required."""

    session_id: str = Field(alias="sessionId")
    kind: str | None = None
    sandbox_id: str | None = Field(default=None, alias="sandboxId")
    sandbox_name: str | None = Field(default=None, alias="sandboxName")
    entry_points: list[EntryPoint] = Field(default_factory=list, alias="entryPoints")
    owner_id: str | None = Field(default=None, alias="ownerId")


class ExecuteRequest(_WireModel):
    """Body of ``POST api/execute``."""

    command: list[str]
    timeout: str
    working_dir: str | None = None
    env: dict[str, str] | None = None


class ExecuteResponse(_WireModel):
    """Answer of ``POST api/execute``; ``exit_code`` is required (a null output reads as "")."""

    exit_code: int
    stdout: str = ""
    stderr: str = ""
    duration: Any = None
    start_time: Any = None
    end_time: Any = None

    @field_validator("stdout", "stderr", mode="before")
    @classmethod
    def _null_is_empty(cls, value: Any) -> Any:
        return "" if value is None else value


class UploadFileRequest(_WireModel):
    """JSON body of ``POST api/files``."""

    path: str
    content: str
    mode: str = "0644"


class FileInfo(_WireModel):
    """Answer of ``POST api/files``."""

    path: str = ""
    size: int = 0
    mode: str | None = None
    modified: Any = None


class FileEntry(_WireModel):
    """One entry of a directory listing."""

    name: str
    size: int = 0
    modified: Any = None
    mode: str | None = None
    is_dir: bool = False


class FileListResponse(_WireModel):
    """Answer of ``GET api/files?path=DIR``."""

    files: list[FileEntry] = Field(default_factory=list)
