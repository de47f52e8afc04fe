"""Domain errors of the operations layer; `web/errors.py` maps each to one HTTP status and the
CLI prints its message as one sentence.

    OperationError
     ├── NotFound           (404) unknown integration, user or resource
     ├── Unauthorized       (401) bad or missing credentials
     ├── InvalidInput       (422) a body or argument we cannot accept; `issues` name the paths
     ├── Conflict           (409) the request contradicts the current state
     └── Unavailable        (503) a dependency (store, Dataverse, Didomi) failed
"""

from __future__ import annotations

from dataclasses import dataclass


class OperationError(Exception):
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(OperationError):
    status = 404


class Unauthorized(OperationError):
    status = 401


class Conflict(OperationError):
    status = 409


class Unavailable(OperationError):
    status = 503


@dataclass(frozen=True)
class Issue:
    path: str
    message: str


class InvalidInput(OperationError):
    status = 422

    def __init__(self, issues: list[Issue], status: int = 422) -> None:
        super().__init__("; ".join(f"{i.path}: {i.message}" for i in issues))
        self.issues = issues
        self.status = status

    def as_json(self) -> dict[str, list[dict[str, str]]]:
        return {"errors": [{"path": i.path, "message": i.message} for i in self.issues]}
