"""The sweeper's config schema, registered as ``hydra/sweeper=hintcolor_optuna``.

No ``from __future__ import annotations`` here: Hydra's plugin scan loads this module in a
way that breaks string annotations of dataclasses.

Values live in ``conf/hparams_search/*.yaml``; these defaults only make the schema complete.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional  # noqa: UP035 - OmegaConf's schema types

from hydra.core.config_store import ConfigStore


@dataclass
class SamplerConf:
    # tpe | random | cmaes | gp | grid | qmc
    name: str = "tpe"
    seed: Optional[int] = None  # noqa: UP045
    kwargs: Any = field(default_factory=dict)


@dataclass
class PrunerConf:
    # median | successive_halving | hyperband | threshold | none
    name: str = "median"
    kwargs: Any = field(default_factory=dict)


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.hintcolor_optuna_sweeper.sweeper.OptunaSweeper"
    study_name: str = "hintcolor"
    # an SQLAlchemy URL (sqlite:///..., postgresql://...); null: an in-memory study
    storage: Optional[str] = None  # noqa: UP045
    direction: str = "maximize"
    # trials in the study in total, across restarts and workers
    n_trials: int = 20
    # trials launched at once by this worker (the launcher may run them in parallel)
    n_jobs: int = 1
    # stop, with the underlying error, once more than this fraction of trials failed
    max_failure_rate: float = 0.0
    # a trial whose worker stops beating for grace_period seconds is marked FAIL
    heartbeat_interval: int = 10
    grace_period: int = 30
    sampler: SamplerConf = field(default_factory=SamplerConf)
    pruner: PrunerConf = field(default_factory=PrunerConf)
    # search space in Hydra's sweep syntax: key -> "interval(...)", "choice(...)", ...
    params: Dict[str, str] = field(default_factory=dict)  # noqa: UP006
    # checkpoints kept in <sweep dir>/trial_NNN/checkpoints once trials finish:
    # best (the study's best trial only) | none | all
    keep_checkpoints: str = "best"
    # A study records the settings it was started with (everything but the search space);
    # a worker with other settings is refused. These keys (and what lies below them) may
    # differ between the runs and workers of one study.
    ignore_settings: List[str] = field(  # noqa: UP006
        default_factory=lambda: [
            "paths",
            "logger",
            "tags",
            "callbacks.progress_bar",
            "callbacks.model_summary",
            "data.num_workers",
        ]
    )


ConfigStore.instance().store(
    group="hydra/sweeper",
    name="hintcolor_optuna",
    node=OptunaSweeperConf,
    provider="hintcolor",
)
