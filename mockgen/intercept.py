"""The one module that hooks into the HTTP client libraries, so that `mockgen.reroute` can route requests of
clients it did not create (the code under test opens its own sessions and clients).

Neither library offers a process-wide hook: aiohttp's tracing, resolver and middlewares and httpx's
transports, mounts and event hooks are all given to one session or client when it is made, and a resolver
is never asked about an IP literal. What every request of either library goes through is a documented
method of a public class: aiohttp's `BaseConnector.connect(req, traces, timeout)`, before any pool lookup,
DNS or socket, and httpx's `HTTPTransport.handle_request` / `AsyncHTTPTransport.handle_async_request`,
before httpcore connects. While routing is active those three methods are wrapped on their classes; the
wrapper asks `decide` about the request's URL and, when told, rewrites where the request goes (the `Host`
header keeps the name the client used). `tests/test_reroute.py` checks that these hook points are still
where and what this module expects, so a library upgrade that moves them fails loudly."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import aiohttp

# (scheme, host, port, the URL as the client sent it) -> (scheme, host, port) to use instead, or None to
# leave the request alone; raises to refuse it before anything is connected.
Decide = Callable[[str, str, int, str], tuple[str, str, int] | None]

_lock = threading.Lock()
_originals: dict[tuple[type, str], Any] = {}


def _default_port(scheme: str) -> int:
    return 443 if scheme in ("https", "wss") else 80


def _aiohttp_hook(decide: Decide) -> Callable[..., Any]:
    original = aiohttp.BaseConnector.connect
    local = (aiohttp.UnixConnector, aiohttp.NamedPipeConnector)

    async def connect(self: aiohttp.BaseConnector, req: Any, *args: Any, **kwargs: Any) -> Any:
        if not isinstance(self, local):  # a socket file, not the network
            url, proxy = req.url, req.proxy
            scheme = url.scheme
            target = decide(scheme, url.raw_host or "", url.port or _default_port(scheme), str(url))
            if target is not None:
                req.url = url.with_scheme(target[0]).with_host(target[1]).with_port(target[2])
                req.update_proxy(None, None, None)  # the mock is here: no proxy in between
            elif proxy is not None:
                # Sent through a proxy: where the connection goes is the proxy, judged as a request.
                port = proxy.port or _default_port(proxy.scheme)
                decide(proxy.scheme, proxy.raw_host or "", port, f"{url} (through the proxy {proxy})")
        return await original(self, req, *args, **kwargs)

    return connect


def _httpx_hooks(decide: Decide) -> dict[tuple[type, str], Any]:
    try:
        import httpx
    except ImportError:  # not installed: no httpx client to route
        return {}

    def reroute(request: httpx.Request) -> None:
        url = request.url
        target = decide(url.scheme, url.host, url.port or _default_port(url.scheme), str(url))
        if target is not None:
            request.url = url.copy_with(scheme=target[0], host=target[1], port=target[2])

    sync_original = httpx.HTTPTransport.handle_request
    async_original = httpx.AsyncHTTPTransport.handle_async_request

    def handle_request(self: httpx.HTTPTransport, request: httpx.Request) -> httpx.Response:
        reroute(request)
        return sync_original(self, request)

    async def handle_async_request(self: httpx.AsyncHTTPTransport, request: httpx.Request) -> httpx.Response:
        reroute(request)
        return await async_original(self, request)

    return {
        (httpx.HTTPTransport, "handle_request"): handle_request,
        (httpx.AsyncHTTPTransport, "handle_async_request"): handle_async_request,
    }


def install(decide: Decide) -> None:
    """Wrap the hook points (once; a second install while installed is refused)."""
    with _lock:
        if _originals:
            raise RuntimeError("mockgen.intercept is already installed")
        hooks = {(aiohttp.BaseConnector, "connect"): _aiohttp_hook(decide), **_httpx_hooks(decide)}
        for (owner, name), wrapper in hooks.items():
            _originals[owner, name] = owner.__dict__[name]
            setattr(owner, name, wrapper)


def uninstall() -> None:
    with _lock:
        for (owner, name), original in _originals.items():
            setattr(owner, name, original)
        _originals.clear()


def installed() -> bool:
    return bool(_originals)
