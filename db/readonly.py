"""Run a user's SQL read-only, with bound parameters: `python -m cli sql`.

SQLite opens the file with mode=ro and query_only; PostgreSQL runs the statement in a READ ONLY
transaction. A write is refused by the database itself, whatever the statement looks like.

    columns, rows = run_read_only(url, "SELECT * FROM attention_stats WHERE version = :v", {"v": "2"})
"""
from __future__ import annotations

import sqlite3

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from db.session import normalise_url


class ReadOnlyError(Exception):
    pass


def _value(raw: str):
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    return raw


def _sqlite_creator(path: str):
    def connect():
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        connection.execute("PRAGMA query_only = ON")
        return connection
    return connect


def run_read_only(url: str, query: str, params: dict[str, str]) -> tuple[list[str], list[tuple]]:
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine("sqlite://", creator=_sqlite_creator(parsed.database))
    else:
        engine = create_engine(url)
    try:
        with engine.connect() as connection:
            if engine.dialect.name == "postgresql":
                connection.exec_driver_sql("SET TRANSACTION READ ONLY")
            result = connection.execute(text(query), {k: _value(v) for k, v in params.items()})
            if not result.returns_rows:
                raise ReadOnlyError("the statement returned no rows; only queries are run")
            return list(result.keys()), [tuple(row) for row in result]
    except SQLAlchemyError as exc:
        message = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        raise ReadOnlyError(f"query refused: {message}") from None
    finally:
        engine.dispose()
