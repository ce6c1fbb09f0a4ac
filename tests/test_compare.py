"""src/compare.py on real run dirs written the way train.py, CSVLogger and eval.py write them."""

from __future__ import annotations

import csv
import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image

from hintcolor.comparison import (
    find_run_dirs,
    label_runs,
    load_run,
    read_metrics,
    resolve_checkpoint,
)

ROOT = Path(__file__).resolve().parents[1]
# CSVLogger's header (columns sorted) and its sparse rows, as in logs/train/runs/*/csv/
HEADER = "epoch,lr-Adam,step,train/loss,val/loss,val/psnr,val/psnr_best,val/ssim"


def write_run(
    run_dir: Path,
    lr: float,
    hints_p: float,
    val_psnr: list[float] | None,
    progress_bar: bool = True,
    **optuna,
) -> Path:
    """A run dir: .hydra/config.yaml (+ overrides), csv/metrics.csv, checkpoints/best.ckpt."""
    config = {
        "task_name": "train",
        "seed": 42,
        "optimized_metric": "val/psnr_best",
        "data": {"image_size": 128, "train_dir": "${paths.data_dir}/train"},
        "hints": {"p": hints_p, "patch_sizes": [1, 2, 3]},
        "model": {"name": "resunet", "backbone": {"widths": [16, 32]}},
        "optimizer": {"_target_": "torch.optim.Adam", "lr": lr},
        "scheduler": {"T_max": "${trainer.max_epochs}"},
        "trainer": {"max_epochs": 4},
        "callbacks": {
            "model_checkpoint": {"dirpath": "${paths.output_dir}/checkpoints"},
            "progress_bar": {"_target_": "RichProgressBar"} if progress_bar else None,
        },
        "paths": {"output_dir": str(run_dir), "data_dir": "${paths.root_dir}/data"},
    }
    if optuna:
        config["optuna"] = optuna
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    overrides = [f"optimizer.lr={lr}", f"hints.p={hints_p}"]
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (run_dir / "checkpoints").mkdir()
    (run_dir / "checkpoints" / "best.ckpt").write_bytes(b"not a real checkpoint")
    if val_psnr is not None:
        (run_dir / "csv").mkdir()
        lines = [HEADER, f",{lr},0,,,,,"]
        best = 0.0
        for epoch, psnr in enumerate(val_psnr):
            step = 10 * epoch + 9
            best = max(best, psnr)
            lines.append(f"{epoch},,{step},0.{epoch + 1}5,,,,")
            lines.append(f"{epoch},,{step},,0.08,{psnr},{best},0.8{epoch}")
        (run_dir / "csv" / "metrics.csv").write_text("\n".join(lines) + "\n")
    return run_dir


def write_eval(eval_dir: Path, checkpoint: Path, model_psnr: dict[int, float]) -> Path:
    rows = [{"method": "model", "k": k, "psnr": p, "ssim": 0.9} for k, p in model_psnr.items()]
    rows += [{"method": "gray", "k": k, "psnr": 22.0, "ssim": 0.9} for k in model_psnr]
    rows += [{"method": "idw", "k": k, "psnr": 22.0 + k / 50, "ssim": 0.9} for k in model_psnr]
    result = {"checkpoint": str(checkpoint), "model": "resunet", "split": "val", "images": 4}
    eval_dir.mkdir(parents=True)
    (eval_dir / "psnr_at_k.json").write_text(json.dumps({**result, "rows": rows}))
    return eval_dir / "psnr_at_k.json"


def read_markdown_table(path: Path) -> list[dict[str, str]]:
    lines = [line for line in path.read_text().splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    return [dict(zip(header, row, strict=True)) for row in rows]


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Three runs of a sweep (one crashed: empty metrics.csv), three evals, one CLI call."""
    tmp = tmp_path_factory.mktemp("compare")
    sweep = tmp / "sweep"
    run_a = write_run(sweep / "run_a", lr=1e-3, hints_p=0.05, val_psnr=[17.0, 19.5, 19.125])
    run_b = write_run(
        sweep / "run_b",
        lr=3e-3,
        hints_p=0.10,
        val_psnr=[18.0, 18.5, 20.25, 20.0],
        progress_bar=False,
    )
    run_c = write_run(sweep / "run_c", lr=1e-4, hints_p=0.20, val_psnr=[])
    (run_c / "csv" / "metrics.csv").write_text("")  # crashed before logging anything

    evals = tmp / "evals"
    older = write_eval(evals / "old", run_a / "checkpoints" / "best.ckpt", {0: 10.0, 10: 11.0})
    os.utime(older, (1_000_000, 1_000_000))
    write_eval(evals / "new", run_a / "checkpoints" / "best.ckpt", {0: 21.5, 10: 24.75, 100: 28.0})
    broken = evals / "broken"  # its JSON is cut short; its .hydra still names the checkpoint
    write_run(broken, lr=0.0, hints_p=0.0, val_psnr=None)
    (broken / ".hydra" / "config.yaml").write_text(
        yaml.safe_dump({"task_name": "eval", "ckpt_path": str(run_b / "checkpoints/best.ckpt")})
    )
    (broken / "psnr_at_k.json").write_text('{"checkpoint": ')

    out = tmp / "out"
    cmd = [sys.executable, "src/compare.py", str(sweep), "--out", str(out), "--evals", str(evals)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    table = {row["run"]: row for row in read_markdown_table(out / "comparison.md")}
    return {"out": out, "stdout": proc.stdout, "table": table, "order": list(table)}


def test_table_sorted_by_best_psnr_with_best_epoch(compared: dict) -> None:
    assert compared["order"] == ["run_b", "run_a", "run_c"]
    run_a, run_b = compared["table"]["run_a"], compared["table"]["run_b"]
    assert (run_b["best val/psnr"], run_b["best epoch"], run_b["last val/psnr"]) == (
        "20.25",
        "2",
        "20.00",
    )
    assert (run_a["best val/psnr"], run_a["best epoch"], run_a["epochs"]) == ("19.50", "1", "3")
    assert run_a["last val/ssim"] == "0.8200"
    assert "| run_b |" in compared["stdout"]  # the table is printed too
    assert str(compared["out"] / "val_psnr.png") in compared["stdout"]


def test_crashed_run_is_listed_with_a_note(compared: dict) -> None:
    run_c = compared["table"]["run_c"]
    assert run_c["best val/psnr"] == ""
    assert run_c["note"] == "no metrics"


def test_only_differing_hyperparameters_become_columns(compared: dict) -> None:
    columns = list(compared["table"]["run_a"])
    assert "hints.p" in columns  # swept
    assert "data.image_size" not in columns  # the same everywhere
    assert "hints.patch_sizes" not in columns
    # differ between runs, but are where things were written, not hyperparameters
    assert not [c for c in columns if c.startswith(("paths.", "callbacks."))]
    assert [compared["table"][r]["lr"] for r in compared["order"]] == ["0.003", "0.001", "0.0001"]
    assert compared["table"]["run_b"]["hints.p"] == "0.1"


def test_psnr_at_k_attached_to_its_run_newest_eval(compared: dict) -> None:
    run_a, run_b = compared["table"]["run_a"], compared["table"]["run_b"]
    assert (run_a["PSNR@0"], run_a["PSNR@10"], run_a["PSNR@100"]) == ("21.50", "24.75", "28.00")
    assert run_a["PSNR@1"] == ""  # not evaluated at k=1
    assert "2 evals, newest used" in run_a["note"]
    assert run_b["PSNR@10"] == ""
    assert "unreadable eval" in run_b["note"]


def test_outputs_are_readable_files(compared: dict) -> None:
    out = compared["out"]
    for name in ("val_psnr.png", "psnr_at_k.png"):
        assert (out / name).stat().st_size > 0
        with Image.open(out / name) as image:
            assert image.format == "PNG" and image.width > 100
    with open(out / "comparison.csv", newline="") as f:
        csv_rows = list(csv.DictReader(f))
    assert [r["run"] for r in csv_rows] == compared["order"]
    assert float(csv_rows[0]["best val/psnr"]) == 20.25
    summary = json.loads((out / "comparison.json").read_text())
    assert [r["run"] for r in summary["runs"]] == compared["order"]
    assert summary["runs"][1]["PSNR@10"] == 24.75


def run_cli(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["compare.py", *args])
    with pytest.raises(SystemExit) as exc:
        runpy.run_path(str(ROOT / "src" / "compare.py"), run_name="__main__")
    return exc.value.code


def test_missing_path_exits_2_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    missing = tmp_path / "no_such_sweep"
    assert run_cli(monkeypatch, str(missing), "--out", str(tmp_path / "out")) == 2
    assert str(missing) in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_dir_without_runs_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    assert run_cli(monkeypatch, str(tmp_path / "empty"), "--out", str(tmp_path / "out")) == 2
    assert "no run dirs" in capsys.readouterr().err


def test_read_metrics_keeps_sparse_val_rows(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", lr=1e-3, hints_p=0.05, val_psnr=[17.0, 18.0])
    curves, epochs = read_metrics(run / "csv" / "metrics.csv")
    assert curves["val/psnr"] == [(0, 17.0), (1, 18.0)]
    assert curves["train/loss"] == [(0, 0.15), (1, 0.25)]
    assert epochs == 2
    with open(run / "csv" / "metrics.csv", "a") as f:  # resumed: epoch 1 validated again
        f.write("1,,19,,0.07,18.5,18.5,0.9\n")
    assert read_metrics(run / "csv" / "metrics.csv")[0]["val/psnr"] == [(0, 17.0), (1, 18.5)]

    (run / "csv" / "metrics.csv").write_bytes(b"\xff\xfe\x00garbage\x00")
    with pytest.raises(ValueError):
        read_metrics(run / "csv" / "metrics.csv")
    assert load_run(run).notes == ["unreadable metrics"]


def test_sweep_trials_labelled_and_valued_from_trials_csv(tmp_path: Path) -> None:
    """Sweeps log no CSV (logger=none); the study's trials.csv still holds each value."""
    study = tmp_path / "optuna" / "my-study"
    for n in (0, 3):
        write_run(study / f"trial_{n:03d}", 1e-3, 0.05, None, study_name="my-study", trial_number=n)
    (study / "trials.csv").write_text(
        "number,state,value,duration_s,optimizer.lr\n0,COMPLETE,19.5,20.0,0.001\n"
    )
    write_run(tmp_path / "train" / "runs" / "2026-01-01_00-00-00", 1e-3, 0.05, [15.0])
    runs = [load_run(d) for d in find_run_dirs([tmp_path])]
    label_runs(runs)
    by_label = {r.label: r for r in runs}
    assert set(by_label) == {
        "my-study/trial_000",
        "my-study/trial_003",
        "train/runs/2026-01-01_00-00-00",
    }
    assert by_label["my-study/trial_000"].best == (19.5, None)
    assert "trials.csv (COMPLETE)" in by_label["my-study/trial_000"].notes[0]
    assert by_label["my-study/trial_003"].best is None
    assert by_label["my-study/trial_003"].notes == ["no metrics"]


def test_checkpoint_paths_resolve_against_repo_root(tmp_path: Path) -> None:
    ckpt = tmp_path / "logs" / "train" / "runs" / "r1" / "checkpoints" / "best.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.touch()
    assert resolve_checkpoint("logs/train/runs/r1/checkpoints/best.ckpt", tmp_path) == ckpt
    assert resolve_checkpoint(str(ckpt), Path("/elsewhere")) == ckpt


def test_a_metric_of_the_table_gets_its_column(tmp_path: Path, monkeypatch) -> None:
    """A metric added to hintcolor.metrics.METRICS gets a 'last val/<name>' column."""
    from hintcolor import comparison
    from hintcolor.metrics import METRICS, Metric

    mae = Metric("mae", "MAE", lambda scorer, pred: pred, digits=3)
    monkeypatch.setattr(comparison, "METRICS", (*METRICS, mae))
    run = load_run(write_run(tmp_path / "run", lr=1e-3, hints_p=0.05, val_psnr=[17.0, 18.0]))
    run.val["mae"] = [(0, 0.05), (1, 0.04321)]
    row = comparison.run_row(run, [])
    last = [row[f"last val/{name}"] for name in ("psnr", "ssim", "mae")]
    assert last == [18.0, 0.81, 0.04321]
    assert [comparison.format_cell(c, row[c]) for c in ("last val/ssim", "last val/mae")] == [
        "0.8100",
        "0.043",
    ]
    assert comparison.format_cell("PSNR@10", 24.756) == "24.76"


def test_the_comparison_starts_without_torch() -> None:
    """It reads files and the metrics table only: no seconds-long torch import at start-up."""
    code = "import sys, hintcolor.comparison; print('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "False"
