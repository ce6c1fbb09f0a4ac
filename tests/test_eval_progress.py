"""src/eval.py reports its progress with an ETA, also when its output is not a terminal."""

import io
import logging
import sys
from collections import defaultdict

import pytest
import torch
from conftest import ROOT, compose
from omegaconf import OmegaConf

from hintcolor import evaluation
from hintcolor.data.hints import FixedHints
from hintcolor.evaluation import EvalProgress
from hintcolor.metrics import METRICS, Metric


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("evaluated ")]


def test_plain_lines_every_ten_percent_with_eta(caplog):
    clock = _Clock()
    with caplog.at_level(logging.INFO), EvalProgress(200, terminal=False, clock=clock) as p:
        for _ in range(50):  # 4 images per second
            clock.now += 1.0
            p.advance(4)
    lines = _lines(caplog)
    assert len(lines) == 10
    assert lines[0] == "evaluated 20/200 images (10 %), 0:00:05 elapsed, ETA 0:00:45"
    assert lines[-1] == "evaluated 200/200 images (100 %), 0:00:50 elapsed, ETA 0:00:00"


def test_plain_line_every_30_seconds_when_progress_is_slow(caplog):
    clock = _Clock()
    with caplog.at_level(logging.INFO), EvalProgress(1000, terminal=False, clock=clock) as p:
        for _ in range(10):  # 1 image every 12 s: 10 images, 120 s, 1 %
            clock.now += 12.0
            p.advance(1)
    lines = _lines(caplog)
    assert len(lines) == 3  # at 36, 72 and 108 s
    assert lines[0].startswith("evaluated 3/1000 images (0 %), 0:00:36 elapsed, ETA 3:19:24")


def test_terminal_gets_a_live_bar_not_log_lines(caplog):
    with caplog.at_level(logging.INFO), EvalProgress(10, terminal=True) as p:
        p.advance(10)
    assert _lines(caplog) == []
    assert p._bar is not None and p._bar.tasks[0].completed == 10


class _ZeroColour(torch.nn.Module):
    """A stand-in model (predicts gray): the test is about the loop, not the network."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x[:, 1:3])


def test_eval_run_not_on_a_terminal_logs_progress(tmp_path, photo_folders, monkeypatch, caplog):
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"stand-in")  # load_backbone is replaced below
    train_cfg = OmegaConf.create({"model": {"name": "zero"}, "channels_last": False})
    monkeypatch.setattr(evaluation, "load_backbone", lambda path: (_ZeroColour(), train_cfg))
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # output to a file, as in a batch job
    overrides = [
        f"ckpt_path={ckpt}",
        "data=folder",
        f"data.test_dir={photo_folders['val']}",
        "data.num_workers=0",
        "image_size=64",
        "hint_counts=[0,5]",
        "batch_size=1",
        "logger=none",
    ]
    cfg = compose("eval", overrides, tmp_path / "eval")
    with caplog.at_level(logging.INFO):
        result = evaluation.evaluate(cfg, tmp_path / "eval")
    assert result["images"] == 2
    lines = _lines(caplog)
    assert [line.split(",")[0] for line in lines] == [
        "evaluated 1/2 images (50 %)",
        "evaluated 2/2 images (100 %)",
    ]
    assert lines[-1].endswith("ETA 0:00:00")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("hints.patch_size=0", r"^hints.patch_size must be an integer >= 1"),
        ("hints.location=corner", r"^hints.location must be .gaussian. or .uniform."),
        ("hint_counts=[0,-1]", r"^hint_counts must be an integer >= 0"),
    ],
)
def test_bad_eval_hint_setting_names_the_key(tmp_path, override, message):
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"stand-in")
    cfg = compose("eval", [f"ckpt_path={ckpt}", override], tmp_path)
    with pytest.raises(evaluation.ConfigError, match=message):
        evaluation.evaluate(cfg, tmp_path)


def test_eval_hints_are_the_fixed_hint_law(tmp_path):
    fixed = OmegaConf.load(ROOT / "conf" / "hints" / "fixed.yaml")
    assert compose("eval", [], tmp_path).hints == fixed


def test_references_are_configurable_and_checked() -> None:
    from omegaconf import OmegaConf

    from hintcolor.config import ConfigError
    from hintcolor.evaluation import REFERENCES, _references

    assert _references(OmegaConf.create({})) == REFERENCES
    assert "levin" in REFERENCES
    assert _references(OmegaConf.create({"references": ["idw"]})) == ("idw",)
    with pytest.raises(ConfigError, match="references"):
        _references(OmegaConf.create({"references": ["idw", "zhang"]}))


def test_every_metric_of_the_table_is_scored_and_reported(monkeypatch) -> None:
    """A metric added to hintcolor.metrics.METRICS reaches the rows and tables, no other edit."""
    mae = Metric("mae", "MAE", lambda s, pred: (pred - s.target).abs().flatten(1).mean(1), 3)
    monkeypatch.setattr(evaluation, "METRICS", (*METRICS, mae))
    protocol = evaluation.Protocol({k: FixedHints(k=k) for k in (0, 5)}, ("gray", "idw"), 2.0, 4)
    network = evaluation.Network(_ZeroColour(), torch.device("cpu"), "32-true", False)
    rgb = torch.randint(0, 256, (2, 3, 24, 24), dtype=torch.uint8, generator=torch.Generator())
    scores = defaultdict(lambda: defaultdict(list))
    evaluation._score_batch(rgb, torch.arange(2), network, protocol, scores)
    rows = evaluation.summarize(scores, protocol)
    assert [(r["method"], r["k"]) for r in rows] == [
        (method, k) for method in ("model", "gray", "idw") for k in (0, 5)
    ]
    assert list(rows[0]) == ["method", "k", "psnr", "psnr_std", "ssim", "mae", "n_images"]
    model, gray = rows[1], rows[3]  # at k=5: the stand-in predicts gray
    assert model["mae"] == pytest.approx(gray["mae"]) and model["mae"] > 0
    assert model["n_images"] == 2 and rows[2] == {**rows[3], "k": 0}  # gray: scored once
    table = evaluation.markdown_table(rows, mae)
    assert table.startswith("| MAE | k=0 | k=5 |") and f"| gray | {gray['mae']:.3f} |" in table
