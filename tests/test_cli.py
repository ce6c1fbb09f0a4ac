"""What every entry point shares (hintcolor/cli.py): the repository root from any directory,
a mistyped key named with the closest valid one, and a missing scale extra named in one line."""

import os
import subprocess
import sys

import pytest
from conftest import ROOT

import hintcolor.cli
from hintcolor.cli import check_override_keys, check_scale_extra


@pytest.mark.parametrize(
    ("config", "args", "message"),
    [
        ("train", ["optimizer.lrr=0.1"], "unknown key optimizer.lrr: did you mean optimizer.lr?"),
        ("train", ["modle=unet"], "unknown key modle: did you mean model?"),
        # a key of another hint law than the one chosen
        ("train", ["hints.cell=3"], "unknown key hints.cell"),
        ("eval", ["hint_countz=[1,2]"], "unknown key hint_countz: did you mean hint_counts?"),
        ("app", ["pot=8000"], "unknown key pot: did you mean port?"),
    ],
)
def test_unknown_key_names_the_closest(config, args, message):
    with pytest.raises(SystemExit) as stopped:
        check_override_keys(config, args)
    text = str(stopped.value.code)
    assert text.startswith("error: ") and "\n" not in text and message in text
    assert f"+{args[0]} adds it as a new key" in text  # when a new key is what was meant


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["model=unet", "model.backbone.base_width=8", "trainer.max_epochs=3"],
        ["hints=uniform", "hints.cell=3"],  # exists once the group is chosen
        ["+trainer.max_steps=3", "++seed=1", "~trainer.deterministic", "tags=[a,b]", "tags.0=c"],
        ["-m", "optimizer.lr=0.1,0.2", "hparams_search=optuna", "hydra.sweeper.n_trials=2"],
        ["experiment=release", "data.split_seed=1", "hydra.run.dir=/tmp/x", "--cfg", "job"],
        ["-cn", "eval", "hint_counts=[1]"],  # another config: left to Hydra
        ["model=unet,resunet", "model.backbone.nope=1"],  # a group sweep: each job differs
    ],
)
def test_valid_command_lines_pass(args):
    check_override_keys("train", args)


@pytest.mark.parametrize(
    ("config", "args", "missing"),
    [
        ("train", ["data=streaming", "data.train_shards=/s"], "litdata"),
        ("train", ["-m", "hparams_search=optuna", "hydra/launcher=slurm"], "submitit"),
        ("train", ["-m", "hydra/launcher=submitit_local", "data=folder,streaming"], "litdata"),
        ("shard", ["data=folder", "output_dir=/s"], "litdata"),
    ],
)
def test_a_missing_scale_extra_is_one_line(config, args, missing, monkeypatch):
    # as on a machine where `make train` installed the project without the scale extra
    monkeypatch.setattr(hintcolor.cli, "find_spec", lambda name: None)
    with pytest.raises(SystemExit) as stopped:
        check_scale_extra(config, args)
    text = str(stopped.value.code)
    assert text.startswith(f"error: {missing}") and "\n" not in text and "scale extra" in text


def test_shard_entry_point_without_litdata_is_one_line(tmp_path):
    # None in sys.modules: find_spec says "not installed" and an import fails, as without it
    code = (
        "import runpy, sys; sys.modules['litdata'] = None; "
        f"sys.argv = ['shard.py', 'output_dir={tmp_path}']; "
        f"runpy.run_path({str(ROOT / 'src' / 'shard.py')!r}, run_name='__main__')"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines() == [
        "error: litdata not installed: this command needs the scale extra "
        "(make install-scale installs it; docs/scale-out.md)"
    ]


def test_commands_without_the_scale_extra_do_not_need_it(monkeypatch):
    monkeypatch.setattr(hintcolor.cli, "find_spec", lambda name: None)
    check_scale_extra("train", ["data=folder", "hydra/launcher=basic", "experiment=imagenet_ddp"])
    check_scale_extra("eval", ["ckpt_path=x.ckpt"])


def test_entry_point_finds_the_repository_from_anywhere(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "HINTCOLOR_ROOT"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "src" / "export.py"), "--cfg", "job", "--resolve"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"root_dir: {ROOT}\n" in proc.stdout
