"""Alembic environment: the URL comes from the settings (HAN_DATABASE_URL), or from db.session.upgrade().

Processes that start together on a new database (a trainer, a worker, a submit) all run
`upgrade`; one migrates at a time: PostgreSQL through a transaction-level advisory lock, a SQLite
file through an exclusive lock on `<file>.migrate-lock`. The others then find the schema at head.
"""
import errno
import fcntl
import os
from contextlib import contextmanager
from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine, text

from db.models import Base
from db.session import normalise_url
from han.settings import get_settings

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

url = config.attributes.get("database_url") or normalise_url(get_settings().database_url)


def run_migrations_offline() -> None:
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


MIGRATION_LOCK_KEY = 0x48414E  # "HAN": PostgreSQL advisory lock held while migrating


@contextmanager
def sqlite_file_lock(engine):
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    folder = os.path.dirname(os.path.abspath(database))
    if not os.path.isdir(folder):
        raise FileNotFoundError(errno.ENOENT, "no such folder for the SQLite database", folder)
    with open(f"{database}.migrate-lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        yield


def run_migrations_online() -> None:
    engine = create_engine(url)
    with sqlite_file_lock(engine), engine.connect() as connection:
        context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
