"""A small JSON-over-HTTP client: one aiohttp session for its whole life, a timeout on every request, and
bounded retries with backoff for what is worth retrying.

Retried: 429 (waiting as long as the server asks, within the cap), 5xx but 501 and 505, and transport
failures (refused or lost connections, truncated bodies, timeouts). Everything else is an `ApiError` at
once: a 4xx, a 501 (not implemented) or a 505 (HTTP version) will not change by asking again. A TLS
certificate the client does not trust is a `ConfigurationError`: no retry fixes that either. Sleeping goes
through an injectable callable, so tests never wait for real."""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, ClassVar, Self

import aiohttp

from letta_matrix_reference.bridge.errors import (
    ApiError,
    BridgeError,
    ConfigurationError,
    ProtocolError,
    RetriesExhausted,
)

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
# Asked after a non-idempotent request failed in a way that leaves open whether the server acted on it:
# the answer the request would have had if it did (e.g. the room it created), or None to send it again.
Reconcile = Callable[[], Awaitable["Response | None"]]

# aiohttp's ways of saying "no usable answer": connection refused, reset or dropped mid-answer, a body cut
# short. Timeouts are asyncio's TimeoutError (aiohttp's own timeout errors subclass it).
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    aiohttp.ClientConnectionError,
    aiohttp.ClientPayloadError,
    TimeoutError,
)
# 5xx that say the server cannot do this request at all, however often it is asked.
PERMANENT_5XX = frozenset({501, 505})


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry. `max_attempts` counts the first attempt."""

    max_attempts: int = 5
    backoff_base: float = 0.5
    backoff_cap: float = 30.0

    def __post_init__(self) -> None:
        # Pauses are capped by `backoff_cap`: at 0 (or NaN) a client looking for a lost request's effect
        # would never wait, and never stop looking.
        if not 0 < self.backoff_cap < float("inf"):
            raise ValueError(f"backoff_cap must be positive and finite, got {self.backoff_cap!r}")

    def backoff(self, retry: int, rng: random.Random) -> float:
        """Seconds before retry number `retry` (1-based): exponential, capped, with "equal jitter" (half
        fixed, half random) so that many clients failing together do not come back together."""
        ceiling: float = min(self.backoff_cap, self.backoff_base * 2.0 ** (retry - 1))
        return ceiling / 2 + rng.uniform(0, ceiling / 2)

    def server_delay(self, asked: float) -> float:
        """A server's own Retry-After, honoured but never beyond the cap."""
        return min(self.backoff_cap, max(0.0, asked))


@dataclass(frozen=True)
class Response:
    status: int
    body: Any
    headers: Mapping[str, str]


def retry_after_seconds(response: Response, now: datetime | None = None) -> float | None:
    """What a 429 asks for: the longer of the body's `retry_after_ms` (Matrix) and the `Retry-After` header
    (seconds or an HTTP date), or None if it says nothing usable."""
    asked: list[float] = []
    if isinstance(response.body, dict):
        millis = response.body.get("retry_after_ms")
        if isinstance(millis, int | float) and not isinstance(millis, bool) and millis >= 0:
            asked.append(millis / 1000)
    header = response.headers.get("Retry-After")
    if header:
        header = header.strip()
        if header.isascii() and header.isdigit():  # str.isdigit alone takes "²", which float() refuses
            asked.append(float(header))
        else:
            try:
                when = email.utils.parsedate_to_datetime(header)
            except (TypeError, ValueError):  # ValueError covers dates out of datetime's range too
                when = None
            if when is not None:
                if when.tzinfo is None:
                    when = when.replace(tzinfo=UTC)
                asked.append(max(0.0, (when - (now or datetime.now(UTC))).total_seconds()))
    return max(asked) if asked else None


class _Retryable(Exception):
    """One attempt failed in a way worth retrying. `wait`: what the server asked for (None: back off);
    `ambiguous`: the server may have acted on the request before failing."""

    def __init__(self, reason: str, wait: float | None, *, ambiguous: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.wait = wait
        self.ambiguous = ambiguous


def shape(body: Any) -> str:
    """What an answer looks like, for an error message: its keys, never its values (a Matrix login's
    answer holds an access token, a Letta agent may hold its tools' secrets)."""
    if isinstance(body, dict):
        return f"an object with keys {sorted(map(str, body))}"
    if isinstance(body, list):
        return f"an array of {len(body)}"
    if body is None:
        return "empty"
    return "a string (or not JSON)" if isinstance(body, str) else f"a JSON {type(body).__name__}"


def _parse_body(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
        return raw[:500].decode("utf-8", "replace")


class JsonClient:
    """One service's base URL and session. Use as `async with Client(...) as client:`."""

    service: ClassVar[str] = "http"

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float,
        retry: RetryPolicy,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        headers: Mapping[str, str] | None = None,
        connections: int = 100,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retry = retry
        self.timeout = timeout
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._headers = dict(headers or {})
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        if self._session is not None:
            raise RuntimeError(f"{type(self).__name__} is already open")
        self._session = aiohttp.ClientSession(
            timeout=self._timeout,
            headers=self._headers,
            connector=aiohttp.TCPConnector(limit=self._connections),
        )
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def error_for(self, method: str, path: str, response: Response) -> BridgeError:
        """The error a refused request raises; services refine it (e.g. Letta's 401)."""
        return ApiError(self.service, method, path, response.status, response.body)

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
        token: str | None = None,
        reconcile: Reconcile | None = None,
    ) -> Response:
        """Send a request until it succeeds (2xx), fails for good (`ApiError`), or runs out of attempts
        (`RetriesExhausted`). Give `reconcile` for a request that must not take effect twice."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._attempt(method, path, json_body, params, token)
            except _Retryable as failure:
                if attempt >= self.retry.max_attempts:
                    raise RetriesExhausted(self.service, method, path, attempt, failure.reason) from None
                if failure.ambiguous and reconcile is not None:
                    log.warning(
                        "%s %s %s failed (%s); looking for its effect before attempt %d of %d",
                        self.service, method, path, failure.reason, attempt + 1, self.retry.max_attempts,
                    )  # fmt: skip
                    found = await self._settle(reconcile)
                    if found is not None:
                        log.info("%s %s %s took effect after all; not resent", self.service, method, path)
                        return found
                    continue
                if failure.wait is not None:
                    delay = self.retry.server_delay(failure.wait)
                else:
                    delay = self.retry.backoff(attempt, self._rng)
                log.warning(
                    "%s %s %s failed (%s); attempt %d of %d in %.2f s",
                    self.service, method, path, failure.reason, attempt + 1, self.retry.max_attempts, delay,
                )  # fmt: skip
                await self._sleep(delay)

    async def _settle(self, reconcile: Reconcile) -> Response | None:
        """What `reconcile` finds of a request that failed ambiguously, asked at once and then after ever
        longer pauses (none longer than the backoff cap) until more than `timeout` has passed: a server may
        still be working on a request its client gave up on, and sending it again before that work is done
        would make it twice."""
        waited, pause = 0.0, self.timeout / 8
        while True:
            found = await reconcile()
            if found is not None or waited > self.timeout:
                return found
            pause = min(pause, self.retry.backoff_cap)
            await self._sleep(pause)
            waited += pause
            pause *= 2

    async def _attempt(
        self,
        method: str,
        path: str,
        json_body: Any,
        params: Mapping[str, str] | None,
        token: str | None,
    ) -> Response:
        """One try: the 2xx response, an `ApiError`, or `_Retryable`."""
        if self._session is None:
            raise RuntimeError(f"{type(self).__name__} is not open; use it as an async context manager")
        headers = {"Authorization": f"Bearer {token}"} if token is not None else None
        try:
            async with self._session.request(
                method, self.base_url + path, json=json_body, params=params, headers=headers
            ) as answer:
                raw = await answer.read()
                response = Response(answer.status, _parse_body(raw), answer.headers)
        except aiohttp.ClientConnectorCertificateError as exc:
            raise ConfigurationError(
                f"{self.service} at {self.base_url}: its TLS certificate is not trusted "
                f"({exc.certificate_error}); give the server a certificate this machine trusts"
            ) from exc
        except aiohttp.ClientConnectorError as exc:
            # Never connected: the request cannot have reached the server.
            raise _Retryable(f"cannot connect: {exc}", None, ambiguous=False) from exc
        except TRANSPORT_ERRORS as exc:
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise _Retryable(reason, None, ambiguous=True) from exc
        except aiohttp.ClientError as exc:
            # Whatever else aiohttp refuses (too many redirects, an answer that is not HTTP): no aiohttp
            # exception leaves this client, callers handle the bridge's own.
            raise ProtocolError(f"{self.service} {method} {path}: {type(exc).__name__}: {exc}") from exc
        if 200 <= response.status < 300:
            if isinstance(response.body, str):
                raise ProtocolError(f"{self.service} {method} {path} answered {response.status} without JSON")
            return response
        if response.status == 429:
            raise _Retryable(f"429 {self._summary(response)}", retry_after_seconds(response), ambiguous=False)
        if response.status >= 500 and response.status not in PERMANENT_5XX:
            # The server may have done part or all of the work before failing.
            raise _Retryable(f"{response.status} {self._summary(response)}", None, ambiguous=True)
        raise self.error_for(method, path, response)

    @staticmethod
    def _summary(response: Response) -> str:
        body = response.body
        if isinstance(body, dict):
            return str(body.get("errcode") or body.get("detail") or body.get("error") or "")
        return ""
