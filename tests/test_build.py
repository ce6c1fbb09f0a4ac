"""hintcolor.build: a composed config into the objects of a run."""

from __future__ import annotations

import pytest
from conftest import compose
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import CSVLogger
from omegaconf import OmegaConf
from torch import nn

from hintcolor.build import (
    build_backbone,
    build_callbacks,
    build_datamodule,
    build_loggers,
    build_module,
    build_trainer,
    check_backbone,
    plain,
    resolve_precision,
)
from hintcolor.config import ConfigError
from hintcolor.models.backbones import ResUNet
from hintcolor.models.color_head import ColorDistributionHead
from hintcolor.models.hint_prior import PushPullResidual
from hintcolor.models.registry import quick_overrides
from hintcolor.training import train

QUICK = ["model=resunet", *quick_overrides("resunet")]


def test_plain_gives_resolved_builtins_and_leaves_others_alone():
    node = OmegaConf.create({"a": 1, "b": "${a}", "c": [{"d": "${b}"}]})
    assert plain(node) == {"a": 1, "b": 1, "c": [{"d": 1}]}
    assert plain(node, resolve=False)["b"] == "${a}"
    assert plain(3) == 3 and plain(None) is None


def test_backbone_alone_with_a_prior_and_with_a_head(tmp_path):
    alone = build_backbone(compose("train", [*QUICK, "hint_prior=none"], tmp_path))
    assert type(alone) is ResUNet and alone.stem.conv1.in_channels == 4
    prior = build_backbone(compose("train", QUICK, tmp_path))  # push_pull: 2 more channels
    assert type(prior) is PushPullResidual and prior.backbone.stem.conv1.in_channels == 6
    assert prior.stride == prior.backbone.stride == 32
    head = build_backbone(compose("train", [*QUICK, "color_head=default"], tmp_path))
    assert type(head) is ColorDistributionHead and type(head.network) is PushPullResidual


@pytest.mark.parametrize("stride", ["missing", 0, 2.0, True, None])
def test_a_backbone_without_an_integer_stride_is_refused(stride):
    backbone = nn.Conv2d(4, 2, 1)
    if stride != "missing":
        backbone.stride = stride  # a Conv2d's own stride is a tuple: refused as well
    with pytest.raises(ConfigError, match=r"model=mine: Conv2d has no valid `stride`"):
        check_backbone(backbone, "mine")
    good = ResUNet(widths=(4, 8), bridge=8)
    assert check_backbone(good, "resunet") is good


def test_training_with_a_backbone_without_stride_stops_with_one_clear_error(tmp_path):
    # torch.nn.Identity takes any arguments and has no stride
    overrides = [*QUICK, "model.backbone._target_=torch.nn.Identity", "logger=none"]
    cfg = compose("train", overrides, tmp_path)
    with pytest.raises(ConfigError, match=r"model=resunet: Identity has no valid `stride`"):
        build_backbone(cfg)
    with pytest.raises(ConfigError, match="stride"):
        train(cfg)
    assert not (tmp_path / "checkpoints").exists()


def test_module_gets_the_run_config_and_its_settings(tmp_path):
    cfg = compose("train", [*QUICK, "channels_last=false", "optimizer=adamw"], tmp_path)
    module = build_module(cfg, build_backbone(cfg))
    assert module.hparams.optimizer["_target_"] == "torch.optim.AdamW"
    assert module.hparams.channels_last is False
    assert module.config == plain(cfg)  # stored in checkpoints: how the run was configured


def test_datamodule_validates_on_the_training_hints_unless_told_otherwise(tmp_path):
    cfg = compose("train", ["+hints@eval_hints=fixed"], tmp_path)
    same = build_datamodule(cfg.data, cfg.hints)
    assert same.eval_hints is same.hints
    other = build_datamodule(cfg.data, cfg.hints, cfg.eval_hints)
    assert type(other.eval_hints) is not type(other.hints)


def test_callbacks_leave_out_the_learning_rate_monitor_without_a_logger(tmp_path):
    with_logger = build_callbacks(compose("train", ["logger=csv"], tmp_path))
    assert any(isinstance(c, LearningRateMonitor) for c in with_logger)
    without = build_callbacks(compose("train", ["logger=none"], tmp_path))
    assert without and not any(isinstance(c, LearningRateMonitor) for c in without)
    assert build_callbacks(compose("train", ["callbacks=none"], tmp_path)) == []


def test_a_tracker_that_could_not_start_is_left_out(tmp_path, monkeypatch):
    monkeypatch.setattr("hintcolor.tracking.wandb_logger", lambda **kwargs: None)
    loggers = build_loggers(compose("train", ["logger=wandb"], tmp_path))
    assert [type(logger) for logger in loggers] == [CSVLogger]


def test_precision_auto_is_the_fast_one_of_the_accelerator(tmp_path, monkeypatch):
    monkeypatch.setattr(
        "hintcolor.precision.fast_precision", lambda accelerator: f"fast-{accelerator}"
    )
    cfg = compose("train", ["trainer=cpu"], tmp_path)
    assert resolve_precision(cfg.trainer) == "fast-cpu"
    cfg.trainer.precision = "32-true"
    assert resolve_precision(cfg.trainer) == "32-true"


def test_trainer_drops_sync_batchnorm_without_gpus(tmp_path, monkeypatch):
    warned: list[str] = []
    monkeypatch.setattr("hintcolor.build.log.warning", warned.append)
    cfg = compose(
        "train", ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=1"], tmp_path
    )
    trainer = build_trainer(cfg.trainer, [], [])
    assert warned == ["sync_batchnorm needs GPUs: disabled for this CPU run"]
    assert trainer.logger is None and trainer.max_epochs == cfg.trainer.max_epochs
