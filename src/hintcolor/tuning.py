"""Optuna pieces shared by the sweeper plugin and the training jobs it launches."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import optuna
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch import Callback
from omegaconf import DictConfig

from hydra_plugins.hintcolor_optuna_sweeper.storage import load_trial

log = logging.getLogger(__name__)


class AskTellGridSampler(optuna.samplers.GridSampler):
    """The grid sampler, for studies driven by ask/tell (our sweeper) rather than optimize.

    Optuna's own calls ``study.stop()`` once the grid is used up, which outside ``optimize``
    raises from ``study.tell``, after the trial is stored, ending the sweep with an error at
    its last trial. The sweeper stops at ``n_trials`` by itself.
    """

    def after_trial(self, *args: Any, **kwargs: Any) -> None:
        pass


SAMPLERS = {
    "tpe": optuna.samplers.TPESampler,
    "random": optuna.samplers.RandomSampler,
    "cmaes": optuna.samplers.CmaEsSampler,
    "gp": optuna.samplers.GPSampler,
    "grid": AskTellGridSampler,
    "qmc": optuna.samplers.QMCSampler,
}
PRUNERS = {
    "median": optuna.pruners.MedianPruner,
    "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
    "hyperband": optuna.pruners.HyperbandPruner,
    "threshold": optuna.pruners.ThresholdPruner,
    "none": optuna.pruners.NopPruner,
}


def build_pruner(conf: Any) -> optuna.pruners.BasePruner:
    name = conf.name
    if name not in PRUNERS:
        raise ValueError(f"hydra.sweeper.pruner.name: {name!r} is not one of {list(PRUNERS)}")
    return PRUNERS[name](**dict(conf.kwargs or {}))


# These samplers draw from a random generator that starts again from ``seed`` whenever the
# sampler is built, so a resumed study (or a second worker) would replay the draws already
# made. They are seeded per trial instead. Grid and QMC must keep one seed for the whole
# study: the seed fixes their sequence, which they index by the trial number (grid) or by a
# counter kept in the study (QMC), so they never repeat a point anyway.
SEEDED_PER_TRIAL = frozenset({"tpe", "random", "gp", "cmaes"})


def trial_seed(seed: int, number: int) -> int:
    """The seed of trial ``number`` in a study seeded with ``seed``: the same on every run and
    every worker, independent between trials."""
    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


def seeded_per_trial(conf: Any) -> bool:
    """Whether the sampler of ``conf`` is seeded per trial (see ``SEEDED_PER_TRIAL``)."""
    return conf.seed is not None and conf.name in SEEDED_PER_TRIAL


def build_sampler(
    conf: Any, trial_number: int | None = None, **extra: Any
) -> optuna.samplers.BaseSampler:
    """The sampler of ``hydra.sweeper.sampler``; given ``trial_number``, the one that draws
    that trial (its seed derived from the study's seed when ``seeded_per_trial``)."""
    name = conf.name
    if name not in SAMPLERS:
        raise ValueError(f"hydra.sweeper.sampler.name: {name!r} is not one of {list(SAMPLERS)}")
    seed = conf.seed
    if trial_number is not None and seeded_per_trial(conf):
        seed = trial_seed(seed, trial_number)
    kwargs = dict(conf.kwargs or {})
    try:
        return SAMPLERS[name](seed=seed, **kwargs, **extra)
    except TypeError as exc:  # e.g. the TPE's kwargs left over after sampler.name=random
        raise ValueError(
            f"hydra.sweeper.sampler.kwargs {kwargs} do not fit the {name} sampler ({exc}); "
            "remove them with ~hydra.sweeper.sampler.kwargs.<key>"
        ) from exc


def pruning_callbacks(cfg: DictConfig, monitor: str = "val/psnr") -> list[Callback]:
    """In a job launched by the Optuna sweeper: report ``monitor`` each epoch to the trial.

    The trial is found from its number (a job override) and the sweeper's own config,
    which Hydra hands to every job, so it works with any launcher (processes, SLURM).
    """
    number = (cfg.get("optuna") or {}).get("trial_number")
    if number is None or not HydraConfig.initialized():
        return []
    sweeper = HydraConfig.get().sweeper
    if sweeper.get("storage") is None:
        log.warning("in-memory Optuna study: jobs cannot reach it, so there is no pruning")
        return []
    from optuna_integration import PyTorchLightningPruningCallback

    pruner = build_pruner(sweeper.pruner)
    trial = load_trial(sweeper.storage, sweeper.study_name, number, pruner)
    # which job ran the trial: with a submitit launcher, the SLURM (or local process) job
    # id, whose logs are <sweep dir>/.submitit/<job_id>/
    trial.set_user_attr("job_id", str(HydraConfig.get().job.get("id")))
    return [PyTorchLightningPruningCallback(trial, monitor=monitor)]
