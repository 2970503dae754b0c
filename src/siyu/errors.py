"""Errors that carry their HTTP status: business conflicts are not crashes."""

from __future__ import annotations


class SiyuError(Exception):
    """A logical error with the status code the API answers it with."""

    status_code = 500

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code

    def body(self) -> dict[str, object]:
        """The JSON the API answers with."""
        return {"detail": self.message}


class NotFound(SiyuError):
    status_code = 404


class Conflict(SiyuError):
    status_code = 409


class BadRequest(SiyuError):
    status_code = 400


class Unauthorized(SiyuError):
    status_code = 401


class Forbidden(SiyuError):
    status_code = 403


class LocatedError(SiyuError):
    """Bad input whose `path` locates the offending part (a JSONPath, a template field), with the problem."""

    status_code = 422

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.problem = message

    def body(self) -> dict[str, object]:
        """The error with the path of the offending part, for the console to highlight."""
        return {"detail": self.message, "path": self.path, "problem": self.problem}
