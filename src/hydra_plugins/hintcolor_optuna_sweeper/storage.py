"""Where studies live and how they are opened: the storage URL, the lock every worker of a study
shares, the study itself, a trial by number, and the heartbeats that let a killed worker's
trials be failed.

The URL is ``hydra.sweeper.storage`` (conf/hparams_search/base.yaml): SQLite, a file per study
on one machine, or PostgreSQL, shared by workers on many; null keeps the study in memory.
Everything else (the Makefile's dashboard, the benchmarks, the tests) asks ``configured_url``
rather than writing the path again.

    python -m hydra_plugins.hintcolor_optuna_sweeper.storage STUDY [override ...]

prints the URL of study STUDY (e.g. for optuna-dashboard).
"""

from __future__ import annotations

import contextlib
import fcntl
import sys
import threading
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import optuna
import sqlalchemy
from hydra import compose, initialize_config_dir

from hintcolor.cli import CONF_DIR, use_repository_root

SQLITE_LOCK_TIMEOUT_S = 60


def database_file(url: str) -> Path | None:
    """The file of an SQLite URL (``sqlite:///logs/x.db`` -> logs/x.db); None for a server
    database (PostgreSQL). Other databases, and SQLite without a file, are refused: the
    study lock below exists only for these two."""
    parsed = sqlalchemy.engine.make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite" and parsed.database not in (None, "", ":memory:"):
        return Path(parsed.database)
    if backend in ("postgresql", "postgres"):
        return None
    raise ValueError(
        f"hydra.sweeper.storage: unsupported database in {url!r} (sqlite:///<file> or "
        "postgresql://...; null: a study in memory)"
    )


@contextlib.contextmanager
def study_lock(url: str | None, study_name: str) -> Iterator[None]:
    """A lock shared by every worker of one study, around "count the trials, then ask" (and
    creating the study): without it two workers can both see one trial missing and both ask,
    ending with more than ``n_trials``. SQLite: an OS file lock beside the database (one
    machine, as SQLite itself requires). PostgreSQL: a session advisory lock, which works
    across machines."""
    if url is None:  # in memory: one process only
        yield
        return
    path = database_file(url)
    if path is not None:
        lock = path.with_name(path.name + ".lock")
        lock.parent.mkdir(parents=True, exist_ok=True)
        with open(lock, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return
    key = zlib.crc32(study_name.encode())  # advisory locks take a bigint key
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
        try:
            yield
        finally:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
    engine.dispose()


def open_storage(
    url: str | None, heartbeat_interval: int | None = None, grace_period: int | None = None
) -> optuna.storages.RDBStorage | None:
    """The database at ``url`` (its folder made for SQLite); None: in memory. With
    ``heartbeat_interval``, a trial that has not beaten for ``grace_period`` seconds is stale
    (``optuna.storages.fail_stale_trials`` marks it FAIL)."""
    if url is None:
        return None
    path = database_file(url)
    engine: dict = {}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Trial jobs in other processes (submitit_local) write their reports while the
        # sweeper beats and tells: wait for SQLite's write lock longer than its 5 s default.
        engine = {"connect_args": {"timeout": SQLITE_LOCK_TIMEOUT_S}}
    return optuna.storages.RDBStorage(
        url,
        heartbeat_interval=heartbeat_interval,
        grace_period=grace_period,
        engine_kwargs=engine,
    )


def open_study(
    storage: optuna.storages.RDBStorage | None,
    study_name: str,
    *,
    direction: str,
    sampler: optuna.samplers.BaseSampler,
    pruner: optuna.pruners.BasePruner,
) -> optuna.study.Study:
    """Study ``study_name`` in ``storage``, created on first use. Call it under
    ``study_lock``: workers starting together would race to create the tables."""
    return optuna.create_study(
        study_name=study_name,
        storage=storage,
        sampler=sampler,
        pruner=pruner,
        direction=direction,
        load_if_exists=True,
    )


def trial_id(storage: optuna.storages.BaseStorage, study_name: str, number: int) -> int:
    """The storage's id of trial ``number`` of a study (heartbeats and ``Trial`` take ids)."""
    study_id = storage.get_study_id_from_name(study_name)
    return storage.get_trial_id_from_study_id_trial_number(study_id, number)


def load_trial(
    url: str, study_name: str, number: int, pruner: optuna.pruners.BasePruner
) -> optuna.trial.Trial:
    """Trial ``number`` of a stored study, live: what a launched job reports to and asks
    whether to prune. Jobs do not beat: the sweeper that asked the trial does."""
    storage = open_storage(url)
    study = optuna.load_study(study_name=study_name, storage=storage, pruner=pruner)
    return optuna.trial.Trial(study, trial_id(storage, study_name, number))


class Heartbeat:
    """Beats for the trials this worker runs, so a killed worker's trials become stale (and
    FAIL); a no-op for a study in memory. Optuna beats only inside ``study.optimize``; with
    ask/tell the sweeper must do it.

        with Heartbeat(storage, study_name, trials, interval): ...  # beats at once, then
                                                                    # every ``interval`` s
    """

    def __init__(
        self,
        storage: optuna.storages.RDBStorage | None,
        study_name: str,
        numbers: Sequence[int],
        interval: int,
    ) -> None:
        self.storage = storage
        self.ids = [] if storage is None else [trial_id(storage, study_name, n) for n in numbers]
        self.interval = interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def beat(self) -> None:
        """Beat now: call it as soon as the trials are asked, since a trial that never beat
        is never found stale."""
        if self.storage is not None:
            for trial in self.ids:
                self.storage.record_heartbeat(trial)

    def _run(self) -> None:
        while not self.stop.wait(self.interval):
            self.beat()

    def __enter__(self) -> Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def configured_url(study_name: str, overrides: Sequence[str] = ()) -> str | None:
    """The storage URL of study ``study_name`` as conf/ composes it for
    ``python src/train.py -m hparams_search=<study> <overrides>`` (``hparams_search=base``
    unless ``overrides`` choose one), e.g. ``overrides=["paths.log_dir=/tmp/x"]``."""
    use_repository_root()
    chosen = any(o.split("=", 1)[0].lstrip("+") == "hparams_search" for o in overrides)
    args = [
        *([] if chosen else ["hparams_search=base"]),
        *overrides,
        f"hydra.sweeper.study_name={study_name}",
    ]
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", args, return_hydra_config=True)
    return cfg.hydra.sweeper.storage


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(f"usage: python -m {__spec__.name} STUDY [override ...]")
    url = configured_url(sys.argv[1], sys.argv[2:])
    if url is None:
        raise SystemExit("error: this study is kept in memory (hydra.sweeper.storage=null)")
    print(url)
