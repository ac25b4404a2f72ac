"""Create Letta 0.16.8's tables in an empty PostgreSQL database: ``python -P schema.py`` with Letta's venv.

Run as a file, not a module of ours (its directory stays off ``sys.path``), by the supervisor, with
``LETTA_PG_URI`` set: Letta's ORM picks its column types (pgvector's ``vector`` or a binary blob) from that
variable when it is imported. The wheel ships no alembic migrations, so the schema is the ORM's
``create_all`` plus the one thing the migrations add that the ORM does not declare: ``messages.sequence_id``
is filled from a sequence (without it every agent creation fails on its NOT NULL).
"""

from __future__ import annotations

import importlib
import os
import sys


def main() -> int:
    sqlalchemy = importlib.import_module("sqlalchemy")
    orm = importlib.import_module("letta.orm")
    # Letta's own URI is for asyncpg; this one-off runs synchronously through psycopg2.
    uri = os.environ["LETTA_PG_URI"].replace("postgresql://", "postgresql+psycopg2://", 1)
    engine = sqlalchemy.create_engine(uri)
    text = sqlalchemy.text
    with engine.begin() as conn:
        conn.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
        orm.Base.metadata.create_all(conn)
        conn.execute(text("CREATE SEQUENCE IF NOT EXISTS message_seq"))
        conn.execute(text("ALTER TABLE messages ALTER COLUMN sequence_id SET DEFAULT nextval('message_seq')"))
    engine.dispose()
    print(f"letta schema: {len(orm.Base.metadata.tables)} tables", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
