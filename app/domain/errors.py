"""What a use case can refuse, independent of the transport that maps it to a status."""

from __future__ import annotations


class DomainError(Exception):
    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotAuthenticated(DomainError):
    code = "not_authenticated"


class Forbidden(DomainError):
    code = "forbidden"


class NotAMember(Forbidden):
    """The caller named a tenant they do not belong to: one code wherever that happens
    (signing in, switching, streaming)."""

    code = "forbidden_tenant"

    def __init__(self, message: str = "You are not a member of that tenant.") -> None:
        super().__init__(message)


class NotFound(DomainError):
    """Also used for anything outside the caller's reach: existence is never leaked."""

    code = "not_found"


class InvalidInput(DomainError):
    code = "invalid_input"


class Conflict(DomainError):
    """Well formed, but the change would leave things in a state they must not reach."""

    code = "conflict"


class RateLimited(DomainError):
    code = "rate_limited"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SignInBusy(DomainError):
    """Every password-hashing thread is busy and the line waiting for them is full."""

    code = "sign_in_busy"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after
