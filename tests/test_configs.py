"""Every config composes and builds: each option of each group of conf/train.yaml (every
experiment and hparams_search study among them) and every W&B sweep, the networks at their quick
sizes (the lightning-hydra-template's ``experiment=glob(*)``). A new YAML is tested by being
there."""

from __future__ import annotations

import pytest
import torch
import wandb
from conftest import KODAK, ROOT, compose
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf, open_dict

from hintcolor.build import (
    build_backbone,
    build_callbacks,
    build_datamodule,
    build_loggers,
    build_module,
    build_trainer,
)
from hintcolor.models.registry import backbone_names, compared_backbones, model_yaml
from hintcolor.wandb_sweep import load_sweep

CONF = ROOT / "conf"
TRAIN_DEFAULTS = OmegaConf.load(CONF / "train.yaml").defaults
GROUPS = [next(iter(entry)) for entry in TRAIN_DEFAULTS if entry != "_self_"]
OPTIONS = [
    (group, path.stem)
    for group in GROUPS
    if group != "hydra"  # Hydra's own settings: composed with every other case
    for path in sorted((CONF / group).glob("*.yaml"))
]
SWEEPS = sorted((ROOT / "sweeps" / "wandb").glob("*.yaml"))


def _shrunk(cfg):
    """``cfg`` with the backbone at its quick size (``model.quick``, every model YAML has one)."""
    with open_dict(cfg):
        cfg.model.backbone.update(cfg.model.quick)
    return cfg


def _with_hydra(overrides: list[str], tmp_path):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return hydra_compose(
            "train", [f"paths.log_dir={tmp_path}", *overrides], return_hydra_config=True
        )


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_composes_and_builds(group, option, tmp_path):
    cfg = _shrunk(compose("train", [f"{group}={option}"], tmp_path))
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
    network = build_backbone(cfg)
    assert build_module(cfg, network).backbone is network
    if not any(cfg.data.get(k) for k in ("train_dir", "val_dir", "test_dir", "root")):
        cfg.data.root = str(KODAK)  # data=folder: the photos are the user's to give
    datamodule = build_datamodule(cfg.data, cfg.hints, cfg.get("eval_hints"))
    assert datamodule.hints is not None
    callbacks = build_callbacks(cfg)
    if cfg.trainer.accelerator != "gpu" or torch.cuda.is_available():
        trainer = build_trainer(cfg.trainer, callbacks, [])
        assert trainer.max_epochs == cfg.trainer.max_epochs
    if group == "logger":
        if "wandb" in cfg.logger:
            cfg.logger.wandb.mode = "disabled"  # a W&B run without files or network
        loggers = build_loggers(cfg)
        assert len(loggers) == len(cfg.logger)
        wandb.finish()


@pytest.mark.parametrize("name", backbone_names())
def test_every_model_is_named_and_read_as_hydra_composes_it(name, tmp_path):
    cfg = compose("train", [f"model={name}"], tmp_path)
    assert cfg.model.name == name  # runs, tables and checkpoints report this name
    assert OmegaConf.to_container(cfg.model) == model_yaml(name)


def _check_values_land(values: dict[str, list], fixed: list[str], tmp_path) -> None:
    """Compose with every value of every key (the i-th of each key together) and check that
    each lands on its key (a config group: the option chosen)."""
    for i in range(max(len(v) for v in values.values())):
        chosen = {key: v[i % len(v)] for key, v in values.items()}
        cfg = compose("train", [*fixed, *(f"{k}={v}" for k, v in chosen.items())], tmp_path)
        for key, value in chosen.items():
            landed = cfg.model.name if key == "model" else OmegaConf.select(cfg, key)
            assert str(landed) == str(value), (key, value, landed)


@pytest.mark.parametrize("study", sorted(p.stem for p in (CONF / "hparams_search").glob("*.yaml")))
def test_every_study_searches_values_that_compose(study, tmp_path):
    sweeper = _with_hydra([f"hparams_search={study}"], tmp_path).hydra.sweeper
    parser = OverridesParser.create()
    values = {}
    for key, expr in sweeper.params.items():  # resolving runs the hintcolor.* resolvers
        override = parser.parse_override(f"{key}={expr}")
        if override.is_discrete_sweep():
            values[key] = list(override.sweep_string_iterator())
        else:
            values[key] = [override.value().start, override.value().end]
    if values:
        _check_values_land(values, [f"hparams_search={study}"], tmp_path)
    assert sweeper.n_trials >= 1


def test_the_backbone_comparison_takes_every_compared_backbone(tmp_path):
    sweeper = _with_hydra(["hparams_search=backbones"], tmp_path).hydra.sweeper
    names = compared_backbones()
    assert sweeper.params.model == f"choice({', '.join(names)})"
    assert sweeper.n_trials == 3 * len(names)  # every backbone x 3 seeds, once
    assert load_sweep(ROOT / "sweeps" / "wandb" / "backbones.yaml")["parameters"]["model"] == {
        "values": names
    }
    assert {"resunet", "unet", "siggraph17", "vit_tiny"} <= set(names)
    assert not {"resunet_large", "vit_small", "vit_base"} & set(names)  # size variants


@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_every_wandb_sweep_value_composes(path, tmp_path):
    sweep = load_sweep(path)
    fixed = [c for c in sweep["command"] if "${" not in c]  # e.g. +hints@eval_hints=zhang17
    values = {k: p.get("values") or [p["min"], p["max"]] for k, p in sweep["parameters"].items()}
    _check_values_land(values, fixed, tmp_path)
