"""A lock shared by every worker of one study, around "count the trials, then ask".

Without it two workers can both see one trial missing and both ask, ending with more
than ``n_trials``. SQLite: an OS file lock beside the database (one machine, as SQLite
itself requires). PostgreSQL: a session advisory lock, which works across machines.
"""

from __future__ import annotations

import contextlib
import fcntl
import zlib
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy


@contextlib.contextmanager
def study_lock(storage_url: str | None, study_name: str) -> Iterator[None]:
    if storage_url is None:  # in memory: one process only
        yield
        return
    if storage_url.startswith("sqlite:///"):
        path = Path(storage_url[len("sqlite:///") :] + ".lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return
    if storage_url.startswith(("postgresql", "postgres")):
        key = zlib.crc32(study_name.encode())  # advisory locks take a bigint key
        engine = sqlalchemy.create_engine(storage_url, poolclass=sqlalchemy.pool.NullPool)
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
            try:
                yield
            finally:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
        engine.dispose()
        return
    raise ValueError(f"hydra.sweeper.storage: unsupported database in {storage_url!r}")
