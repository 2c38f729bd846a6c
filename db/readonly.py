"""Run a user's SQL read-only, with bound parameters: `python -m cli sql`.

One statement only, and the database itself refuses writes: SQLite opens the file with mode=ro,
query_only and an authorizer that denies ATTACH; PostgreSQL connects with
default_transaction_read_only and runs the statement prepared (the extended protocol takes a
single statement, so "...; COMMIT; CREATE ..." is refused).

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


def parameter_value(raw: str):
    """A number when the text is exactly that number's spelling ("42", "0.5"), else the text ("007")."""
    for kind in (int, float):
        try:
            value = kind(raw)
        except ValueError:
            continue
        if str(value) == raw:
            return value
    return raw


def _deny_attach(action, *_):
    return sqlite3.SQLITE_DENY if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH) else sqlite3.SQLITE_OK


def _sqlite_rows(path: str, query: str, params: dict):
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise ReadOnlyError(f"cannot open {path} ({exc})") from None
    try:
        connection.execute("PRAGMA query_only = ON")
        connection.set_authorizer(_deny_attach)
        cursor = connection.execute(query, params)
        if cursor.description is None:
            raise ReadOnlyError("the statement returned no rows; only queries are run")
        return [d[0] for d in cursor.description], [tuple(r) for r in cursor.fetchall()]
    except sqlite3.Error as exc:
        raise ReadOnlyError(f"query refused: {exc}") from None
    finally:
        connection.close()


def _postgres_rows(url: str, query: str, params: dict):
    import psycopg

    engine = create_engine(url, connect_args={"options": "-c default_transaction_read_only=on"})
    try:
        with engine.connect() as connection:
            compiled = text(query).compile(dialect=engine.dialect)
            missing = [name for name in compiled.params if name not in params]
            if missing:
                raise ReadOnlyError(f"no value for :{missing[0]} (give -p {missing[0]} VALUE)")
            cursor = connection.connection.driver_connection.cursor()
            cursor.execute(str(compiled), {name: params[name] for name in compiled.params}, prepare=True)
            if cursor.description is None:
                raise ReadOnlyError("the statement returned no rows; only queries are run")
            return [d.name for d in cursor.description], [tuple(r) for r in cursor.fetchall()]
    except (psycopg.Error, SQLAlchemyError) as exc:
        message = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        raise ReadOnlyError(f"query refused: {message}") from None
    finally:
        engine.dispose()


def run_read_only(url: str, query: str, params: dict[str, str]) -> tuple[list[str], list[tuple]]:
    url = normalise_url(url)
    values = {k: parameter_value(v) for k, v in params.items()}
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_rows(parsed.database, query, values)
    return _postgres_rows(url, query, values)
