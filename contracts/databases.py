"""Where Hypothesis keeps the failing examples it found and replays them first on the next run: a directory,
or a Redis server (`redis://HOST:PORT/N`) that shards on several processes and CI machines share, so each
shard replays the failures any other found.

Redis only on a loopback address: the database is read and written without authentication by whoever
reaches it, and a fuzz run talks to nothing beyond this machine."""

from __future__ import annotations

from urllib.parse import urlsplit

from hypothesis.database import DirectoryBasedExampleDatabase, ExampleDatabase

from contracts.loopback import is_loopback

REDIS_SCHEME = "redis"
# Every call to the server is bounded; a loopback server answers in well under a millisecond.
REDIS_TIMEOUT_SECONDS = 10.0


def open_database(location: str) -> ExampleDatabase:
    """The example database at `location`: a `redis://HOST:PORT/N` URL, else a directory (created when
    first written). ValueError, in one line, for a URL that names no loopback host or a server that does
    not answer."""
    if urlsplit(location).scheme == REDIS_SCHEME:
        return _redis(location)
    return DirectoryBasedExampleDatabase(location)


def _redis(url: str) -> ExampleDatabase:
    parts = urlsplit(url)
    try:
        host, _ = parts.hostname, parts.port  # .port raises on a port that is no number
    except ValueError as exc:
        raise ValueError(f"example database {url}: {exc}") from None
    if not host:
        raise ValueError(f"example database {url}: no host")
    if not is_loopback(host):
        raise ValueError(
            f"example database {url}: Redis must be on a loopback address (127.0.0.1, ::1, localhost), "
            f"not {host}"
        )
    try:
        import redis
        from hypothesis.extra.redis import RedisExampleDatabase
    except ImportError:
        raise ValueError(
            "a redis:// example database needs the redis package: pip install 'letta-matrix-contracts[redis]'"
        ) from None
    client = redis.Redis.from_url(
        url, socket_timeout=REDIS_TIMEOUT_SECONDS, socket_connect_timeout=REDIS_TIMEOUT_SECONDS
    )
    try:
        client.ping()
    except redis.RedisError as exc:
        raise ValueError(f"example database {url}: no Redis answers there ({exc})") from None
    return RedisExampleDatabase(client)
