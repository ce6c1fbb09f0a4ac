"""Training and evaluation end to end, in-process and through the real command line."""

import csv
import json

import pytest
import torch
from conftest import compose, run_cli

from hintcolor.build import build_backbone, build_datamodule, build_module, build_trainer
from hintcolor.evaluation import evaluate
from hintcolor.models.registry import compared_backbones, quick_overrides
from hintcolor.training import train

FAST = [
    "debug=fast",
    "callbacks.progress_bar=null",
    "data.image_size=64",
    "data.num_workers=0",
    "data.train_repeats=2",
]


def _data(folders):
    return [f"data.train_dir={folders['train']}", f"data.val_dir={folders['val']}"]


@pytest.mark.parametrize("model", compared_backbones())
def test_each_backbone_trains_with_debug_fast(tmp_path, photo_folders, model):
    quick = quick_overrides(model)  # tiny widths: the wiring, not the network, is tested here
    cfg = compose("train", [f"model={model}", *FAST, *_data(photo_folders), *quick], tmp_path)
    metrics = train(cfg)
    assert 5 < metrics["val/psnr"] < 60 and metrics["val/psnr_best"] >= metrics["val/psnr"]
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert (tmp_path / "csv" / "metrics.csv").read_text().count("val/psnr") >= 1


@pytest.mark.parametrize(
    "overrides",
    [
        ["scheduler=step", "optimizer=adamw"],
        ["scheduler=plateau"],
        ["scheduler=none", "logger=none"],
    ],
    ids=["step-adamw", "plateau", "none-nologger"],
)
def test_optimiser_and_schedule_options(tmp_path, photo_folders, overrides):
    cfg = compose("train", [*FAST, *_data(photo_folders), *overrides], tmp_path)
    assert "val/psnr" in train(cfg)


def test_fit_then_test(tmp_path, photo_folders):
    overrides = ["test=true", f"data.test_dir={photo_folders['val']}"]
    metrics = train(compose("train", [*FAST, *_data(photo_folders), *overrides], tmp_path))
    assert 5 < metrics["test/psnr"] < 60 and 0 < metrics["test/ssim"] <= 1


def test_resume_continues_the_step_count(tmp_path, photo_folders):
    first = compose("train", [*FAST, *_data(photo_folders)], tmp_path / "a")
    train(first)
    ckpt = tmp_path / "a" / "checkpoints" / "last.ckpt"
    assert torch.load(ckpt, weights_only=True)["global_step"] == 3
    resumed = compose(
        "train",
        [*FAST, *_data(photo_folders), f"ckpt_path={ckpt}", "trainer.max_epochs=2"],
        tmp_path / "b",
    )
    train(resumed)
    state = torch.load(tmp_path / "b" / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["global_step"] == 6 and state["epoch"] == 1


def test_seed_makes_runs_reproducible(tmp_path, photo_folders):
    runs = []
    for name in ("a", "b"):
        cfg = compose(
            "train", [*FAST, *_data(photo_folders), "trainer.precision=32-true"], tmp_path / name
        )
        runs.append(train(cfg))
    assert runs[0]["val/psnr"] == pytest.approx(runs[1]["val/psnr"], abs=1e-4)


def test_eval_writes_table_with_references(tmp_path, photo_folders):
    cfg = compose("train", [*FAST, *_data(photo_folders)], tmp_path / "run")
    train(cfg)
    ckpt = tmp_path / "run" / "checkpoints" / "best.ckpt"
    eval_cfg = compose(
        "eval",
        [
            f"ckpt_path={ckpt}",
            "data=folder",
            f"data.test_dir={photo_folders['val']}",
            "image_size=64",
            "hint_counts=[0,5,20]",
            "data.num_workers=0",
        ],
        tmp_path / "eval",
    )
    result = evaluate(eval_cfg, tmp_path / "eval")
    rows = {(r["method"], r["k"]): r for r in result["rows"]}
    assert set(rows) == {
        (m, k) for m in ("model", "gray", "idw", "push_pull", "guided", "levin") for k in (0, 5, 20)
    }
    assert all(r["n_images"] == 2 for r in rows.values())
    # references behave as they must: gray ignores hints, IDW improves with them
    assert rows[("gray", 0)]["psnr"] == rows[("gray", 20)]["psnr"]
    assert rows[("idw", 0)]["psnr"] == pytest.approx(rows[("gray", 0)]["psnr"])
    assert rows[("idw", 20)]["psnr"] > rows[("idw", 0)]["psnr"]
    assert rows[("levin", 0)]["psnr"] == pytest.approx(rows[("gray", 0)]["psnr"])
    assert rows[("levin", 20)]["psnr"] > rows[("levin", 0)]["psnr"]
    assert rows[("guided", 20)]["psnr"] > rows[("guided", 0)]["psnr"]
    md = (tmp_path / "eval" / "psnr_at_k.md").read_text()
    assert "| gray |" in md and "| idw |" in md and "| model |" in md and "| levin |" in md
    assert "| guided |" in md
    assert json.loads((tmp_path / "eval" / "psnr_at_k.json").read_text())["images"] == 2
    assert (tmp_path / "eval" / "psnr_at_k.csv").read_text().startswith("method,k,psnr")
    assert (tmp_path / "eval" / "psnr_at_k.png").stat().st_size > 1000
    eval_cfg.limit = 1
    assert evaluate(eval_cfg, tmp_path / "eval1")["images"] == 1


_cli = run_cli


# Each case is a real CLI run (~8 s of start-up on 2 cores): `make test` keeps one check of a
# composed config and one composition error; `make test-full` runs them all
_SLOW = pytest.mark.slow


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["optimizer.lr=-0.1"], "optimizer.lr must be a positive number"),
        pytest.param(
            ["data.image_size=16"],
            "smaller than the resunet backbone's total downsampling factor (32)",
            marks=_SLOW,
        ),
        pytest.param(
            ["ckpt_path=/nope/best.ckpt"], "checkpoint /nope/best.ckpt does not exist", marks=_SLOW
        ),
        pytest.param(["data.train_dir=/nope/photos"], "/nope/photos does not exist", marks=_SLOW),
        (["model=nosuchmodel"], "nosuchmodel"),
        pytest.param(["hints=nosuchhints"], "nosuchhints", marks=_SLOW),
        pytest.param(["test=true"], "test=true needs test data", marks=_SLOW),
        pytest.param(
            ["data.val_dir=null"], "training needs data.train_dir and data.val_dir", marks=_SLOW
        ),
    ],
)
def test_bad_configuration_is_one_clear_error(tmp_path, args, message):
    proc = _cli("train.py", *args, f"hydra.run.dir={tmp_path}", cwd=tmp_path)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "checkpoints").exists()  # failed before any training


def test_eval_requires_existing_checkpoint(tmp_path):
    proc = _cli("eval.py", "ckpt_path=/nope.ckpt", f"hydra.run.dir={tmp_path}", cwd=tmp_path)
    assert proc.returncode != 0 and "checkpoint /nope.ckpt does not exist" in proc.stderr


@pytest.mark.slow
def test_cli_train_then_eval(tmp_path, photo_folders):
    run = tmp_path / "run"
    proc = _cli("train.py", *FAST, *_data(photo_folders), f"hydra.run.dir={run}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "best checkpoint:" in proc.stderr + proc.stdout
    proc = _cli(
        "eval.py",
        f"ckpt_path={run}/checkpoints/best.ckpt",
        "data=folder",
        f"data.test_dir={photo_folders['val']}",
        "image_size=64",
        "hint_counts=[0,10]",
        f"hydra.run.dir={tmp_path / 'eval'}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "idw" in proc.stdout and (tmp_path / "eval" / "psnr_at_k.md").exists()


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path, photo_folders):
    run = tmp_path / "ddp"
    proc = _cli(
        "train.py",
        *FAST,
        *_data(photo_folders),
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.precision=32-true",
        "data.train_repeats=4",
        f"hydra.run.dir={run}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = run / "checkpoints" / "last.ckpt"
    assert torch.load(ckpt, weights_only=True)["global_step"] == 3
    rows = list(csv.DictReader((run / "csv" / "metrics.csv").open()))
    ddp_psnr = [float(r["val/psnr"]) for r in rows if r.get("val/psnr")][-1]
    # Each process validated one of the two val photos; the logged value must be the mean
    # over both, i.e. what one process computes on the whole val set with the same weights.
    cfg = compose(
        "train", [*FAST, *_data(photo_folders), "trainer.precision=32-true"], tmp_path / "one"
    )
    module = build_module(cfg, build_backbone(cfg))
    datamodule = build_datamodule(cfg.data, cfg.hints)
    trainer = build_trainer(cfg.trainer, [], [])
    (single,) = trainer.validate(module, datamodule=datamodule, ckpt_path=str(ckpt))
    assert single["val/psnr"] == pytest.approx(ddp_psnr, abs=1e-3)
