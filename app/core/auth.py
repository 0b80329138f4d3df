"""API keys: when any is configured every route but health and metrics needs one, sent as
`Authorization: Bearer <key>` or `X-API-Key: <key>`; admin routes always need one."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import Headers

from app.core.errors import Forbidden, Unauthorized
from app.core.settings import Settings

MIN_KEY_LENGTH = 16
# Declared by the key dependencies for the OpenAPI page's "Authorize" button (both schemes);
# the key itself is read by `offered_key`, the one reading admission uses too. auto_error=False:
# a missing key is ours to answer (401 in our error shape).
_bearer = HTTPBearer(auto_error=False)
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
HeaderKeyDep = Annotated[str | None, Depends(_api_key_header)]


class ApiKeys:
    """The accepted keys, compared in constant time."""

    def __init__(self, keys: list[str]) -> None:
        short = [key for key in keys if len(key) < MIN_KEY_LENGTH]
        if short:
            raise ValueError(
                f"{len(short)} API key(s) are shorter than {MIN_KEY_LENGTH} "
                "characters; use long random keys, e.g. `openssl rand -hex 32`"
            )
        self._keys = [key.encode() for key in keys]

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiKeys:
        """WBC_API_KEY plus the lines of WBC_API_KEYS_FILE; an unreadable or empty file
        stops the service from starting rather than leaving it open."""
        keys = [] if settings.api_key is None else [settings.api_key.get_secret_value()]
        path = settings.api_keys_file
        if path is not None:
            try:
                lines = path.read_text().splitlines()
            except OSError as error:
                raise ValueError(f"cannot read WBC_API_KEYS_FILE {path}: {error}") from None
            from_file = [
                line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")
            ]
            if not from_file:
                raise ValueError(f"WBC_API_KEYS_FILE {path} holds no key")
            keys += from_file
        return cls(keys)

    @property
    def configured(self) -> bool:
        return bool(self._keys)

    def check(self, candidate: str | None) -> None:
        """Unauthorized unless `candidate` is an accepted key (or no key is configured)."""
        if not self._keys:
            return
        if candidate is None:
            raise Unauthorized(
                "this route needs an API key: send `Authorization: Bearer <key>` or "
                "`X-API-Key: <key>`"
            )
        if not self.accepts(candidate):
            raise Unauthorized("the API key is not valid")

    def check_headers(self, headers: Headers) -> None:
        """`check` of the key a request's headers offer, read as the route dependencies read
        it: admission calls it before a request for model work takes a queue place."""
        self.check(offered_key(headers))

    def accepts(self, candidate: str) -> bool:
        offered = candidate.encode()
        matched = False
        for key in self._keys:  # no early exit: the time taken does not tell which key
            matched |= hmac.compare_digest(offered, key)
        return matched


def offered_key(headers: Headers) -> str | None:
    """The key a request offers: an `Authorization: Bearer` token first (the scheme in any
    case, as HTTPBearer reads it), else `X-API-Key`."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return headers.get("x-api-key")


async def require_api_key(  # async: no thread-pool hop on every request (app.api.dependencies)
    request: Request,
    _bearer: BearerDep,
    _header_key: HeaderKeyDep,
) -> None:
    """Lets the request through when no key is configured or it carries a valid one."""
    keys: ApiKeys = request.app.state.api_keys
    keys.check_headers(request.headers)


def require_admin_key(
    request: Request,
    _bearer: BearerDep,
    _header_key: HeaderKeyDep,
) -> None:
    """Admin routes need a valid key, and are switched off while none is configured."""
    keys: ApiKeys = request.app.state.api_keys
    if not keys.configured:
        raise Forbidden(
            "admin routes are disabled because no API key is configured; set "
            "WBC_API_KEY or WBC_API_KEYS_FILE to enable them",
            code="admin_disabled",
        )
    keys.check_headers(request.headers)
