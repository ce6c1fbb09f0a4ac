"""Optuna pieces shared by the sweeper plugin and the training jobs it launches."""

from __future__ import annotations

import logging
from typing import Any

import optuna
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)

SAMPLERS = {
    "tpe": optuna.samplers.TPESampler,
    "random": optuna.samplers.RandomSampler,
    "cmaes": optuna.samplers.CmaEsSampler,
    "gp": optuna.samplers.GPSampler,
    "grid": optuna.samplers.GridSampler,
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


def build_sampler(conf: Any, **extra: Any) -> optuna.samplers.BaseSampler:
    name = conf.name
    if name not in SAMPLERS:
        raise ValueError(f"hydra.sweeper.sampler.name: {name!r} is not one of {list(SAMPLERS)}")
    return SAMPLERS[name](seed=conf.seed, **{**dict(conf.kwargs or {}), **extra})


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

    study = optuna.load_study(
        study_name=sweeper.study_name, storage=sweeper.storage, pruner=build_pruner(sweeper.pruner)
    )
    trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    return [PyTorchLightningPruningCallback(optuna.trial.Trial(study, trial_id), monitor=monitor)]
