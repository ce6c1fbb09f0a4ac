"""A setting out of range stops the run at start-up with one line naming the key."""

import pytest
from conftest import compose, run_cli

from hintcolor.config import ConfigError, check_train_config


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["trainer.max_epochs=0"], "trainer.max_epochs must be a positive integer"),
        (["optimizer.lr=abc"], "optimizer.lr must be a positive number, got 'abc'"),
        (["hints.p=2"], "hints.p must be in (0, 1]"),
        (["+hints@eval_hints=zhang17", "eval_hints.p=-1"], "eval_hints.p must be in (0, 1]"),
    ],
)
def test_cli_error_is_one_line_naming_the_key(tmp_path, args, message):
    proc = run_cli("train.py", *args, "logger=none", f"hydra.run.dir={tmp_path}", cwd=tmp_path)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == [proc.stderr.strip().splitlines()[-1]]  # one line, the last one
    assert message in errors[0]
    assert not (tmp_path / "checkpoints").exists()  # nothing trained


def test_cli_typo_names_the_closest_key(tmp_path):
    proc = run_cli("train.py", "optimizer.lrr=0.1", "logger=none", cwd=tmp_path)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: unknown key optimizer.lrr: did you mean optimizer.lr?")
    assert "To append to your config" not in proc.stderr  # Hydra's advice for a new key


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["trainer.max_epochs=-2"], r"trainer\.max_epochs must be a positive integer"),
        (["trainer.max_epochs=-1"], r"trainer\.max_epochs=-1 \(no epoch limit\) needs"),
        (["trainer.max_epochs=abc"], r"trainer\.max_epochs must be .*got 'abc'"),
        (["+trainer.max_steps=0"], r"trainer\.max_steps must be .*-1: no step limit\), got 0"),
        (["+trainer.max_steps=-5"], r"trainer\.max_steps must be .*-1: no step limit"),
        (["+trainer.limit_train_batches=0"], r"trainer\.limit_train_batches must be"),
        (["optimizer.lr=0"], r"optimizer\.lr must be a positive number, got 0"),
        (["optimizer.lr=nan"], r"optimizer\.lr must be a positive number"),
        (["optimizer.weight_decay=-1"], r"optimizer\.weight_decay must be a number >= 0"),
        (["data.batch_size=abc"], r"data\.batch_size must be a positive integer, got 'abc'"),
        (["data.max_pixels=0"], r"data\.max_pixels must be a positive integer"),
        (["hints=uniform", "hints.cell=0"], r"hints\.cell must be an integer >= 1, got 0"),
        (["hints=density", "hints.rates=[2]"], r"hints\.rates must be a non-empty list"),
    ],
)
def test_check_train_config_names_the_key(tmp_path, overrides, message):
    cfg = compose("train", overrides, tmp_path)
    with pytest.raises(ConfigError, match=message):
        check_train_config(cfg, backbone_stride=1)


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["trainer.max_epochs=-1", "trainer.max_time=00:00:01:00"],
        ["trainer.max_epochs=null", "+trainer.max_steps=100"],
        ["trainer.max_epochs=0", "train=false"],  # test-only runs do not train
        ["+trainer.limit_train_batches=0.5"],
    ],
)
def test_valid_limits_pass(tmp_path, overrides):
    check_train_config(compose("train", overrides, tmp_path), backbone_stride=1)
