"""An aiohttp client middleware that checks every request a client sends and every response it gets.

    hook = ContractMiddleware({"http://127.0.0.1:8008": "matrix", "http://127.0.0.1:8283": "letta"})
    async with aiohttp.ClientSession(middlewares=(hook,)) as session:
        ...                       # the client under test uses this session
    hook.assert_clean()           # or ContractMiddleware(..., strict=True) to raise at the first violation

Requests to hosts not in the map pass through unchecked. With `record=path` every checked exchange is also
appended to a JSON-lines recording (secrets masked) that `contracts validate` can check again later."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from aiohttp import ClientHandlerType, ClientRequest, ClientResponse

from contracts.exchanges import Exchange, write_exchange
from contracts.validation import ContractValidator, Violation, validator_for


class ContractViolationError(AssertionError):
    def __init__(self, violations: list[Violation]) -> None:
        self.violations = violations
        listed = "\n  ".join(v.message for v in violations)
        super().__init__(f"{len(violations)} contract violation(s):\n  {listed}")


@dataclass
class Checked:
    exchange: Exchange
    operation: str | None
    violations: list[Violation]
    variant: str | None


class ContractMiddleware:
    def __init__(
        self,
        services: Mapping[str, str | ContractValidator],
        *,
        strict: bool = False,
        record: Path | None = None,
    ) -> None:
        # Longest base URL first, so "http://h/v1" wins over "http://h".
        self._services = sorted(
            ((base.rstrip("/"), spec if isinstance(spec, ContractValidator) else validator_for(spec))
             for base, spec in services.items()),
            key=lambda item: -len(item[0]),
        )  # fmt: skip
        self.strict = strict
        self.checked: list[Checked] = []
        self._record: TextIO | None = record.open("a", encoding="utf-8") if record else None

    def _validator(self, url: str) -> ContractValidator | None:
        return next((validator for base, validator in self._services if _under(url, base)), None)

    async def __call__(self, request: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        validator = self._validator(str(request.url))
        if validator is None:
            return await handler(request)
        body = await request.body.as_bytes() if request.body else b""
        response = await handler(request)
        data = await response.read()
        exchange = Exchange(
            method=request.method,
            url=str(request.url),
            request_headers=dict(request.headers),
            request_body=body,
            status=response.status,
            response_headers=dict(response.headers),
            response_body=data,
        )
        result = exchange.check(validator)
        self.checked.append(Checked(exchange, result.operation, result.violations, result.variant))
        if self._record is not None:
            write_exchange(self._record, exchange)
        if result.violations and self.strict:
            raise ContractViolationError(result.violations)
        return response

    @property
    def violations(self) -> list[Violation]:
        return [v for checked in self.checked for v in checked.violations]

    def assert_clean(self) -> None:
        if self.violations:
            raise ContractViolationError(self.violations)

    def close(self) -> None:
        if self._record is not None:
            self._record.close()
            self._record = None


def _under(url: str, base: str) -> bool:
    """Is `url` at or below `base`? A path boundary is required: http://h:80 is not a prefix of http://h:8008."""
    return url.startswith(base) and url[len(base) : len(base) + 1] in ("", "/", "?", "#")
