"""`make bench` end to end on a tiny setting: every backbone in every table, sane values.

Timings are not asserted (machines are noisy); the benchmark itself is a script.
"""

import json
import subprocess
import sys

import pytest
from conftest import ROOT

from hintcolor.models.registry import compared_backbones

# End-to-end runs of the benchmark scripts: minutes on a 2-core machine without bf16.
pytestmark = pytest.mark.slow

# what `make bench` and `make bench-quality` measure by default
BACKBONES = compared_backbones()


def test_bench_script_runs_end_to_end(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- bench:begin -->\nold table\n<!-- bench:end -->\noutro\n")
    cmd = [sys.executable, str(ROOT / "scripts" / "bench.py"), "--quick", "--out", str(tmp_path)]
    cmd += ["--backbones", ",".join(BACKBONES), "--readme", str(readme)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "bench.json").read_text())
    assert [b["name"] for b in results["backbones"]] == BACKBONES
    machine = results["machine"]
    assert machine["matmul_gflops"]["fp32"] > 0.1 and machine["matmul_gflops"]["bf16"] > 0.1
    assert all(v > 0 for v in machine["lab_hints"].values())
    for b in results["backbones"]:
        flops = b["static"]["flops"]["64"]
        assert b["static"]["params"] > 1000
        assert flops["train"] > 2 * flops["forward"] > 0  # backward costs about 2 forwards
        assert b["train"]["framework_img_s"] > 0 and b["train"]["bare_img_s"] > 0
        assert 0 < b["ratio"] < 10 and 0 < b["efficiency"] < 5
        assert all(ms > 0 for k, ms in b["infer"].items() if k != "peak_rss_mb")
        assert b["train"]["peak_rss_mb"] > 50
    priors = [p["hint_prior"] for p in results["priors"]]
    assert priors == ["none", "push_pull", "guided"]
    assert all(p["framework_img_s"] > 0 for p in results["priors"])
    table = (tmp_path / "bench.md").read_text()
    assert "| guided |" in table
    for name in BACKBONES:
        assert table.count(f"| {name} |") == 2  # training and inference tables
    text = readme.read_text()
    assert "old table" not in text and text.startswith("intro") and text.endswith("outro\n")
    assert table.strip() in text


def test_quality_bench_trains_evaluates_and_reports_every_backbone(tmp_path):
    """`make bench-quality --quick`: every backbone row, the references, the bar line, the PNG;
    a second call reuses the finished runs instead of training again."""
    readme = tmp_path / "README.md"
    readme.write_text("<!-- bench-quality:begin -->\nold\n<!-- bench-quality:end -->\n")
    out = tmp_path / "quality"
    cmd = [sys.executable, str(ROOT / "scripts" / "bench_quality.py"), "--quick", "--out", str(out)]
    cmd += ["--backbones", ",".join(BACKBONES), "--test-dir", str(ROOT / "data/kodak24/val")]
    proc = subprocess.run(
        [*cmd, "--readme", str(readme)], capture_output=True, text=True, timeout=600, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((out / "quality.json").read_text())
    assert sorted(r["label"] for r in data["rows"]) == sorted(BACKBONES)
    for row in data["rows"]:
        assert set(row["psnr"]) == {"0", "1", "10"}
        assert all(5 < v < 60 for v in row["psnr"].values())
        assert row["train_min"] > 0 and row["seeds"] == [0]
    refs = data["references"]
    assert refs["gray"]["0"] == refs["gray"]["10"] and refs["idw"]["10"] > refs["gray"]["10"]
    table = (out / "quality.md").read_text()
    for row in [*BACKBONES, "gray (no learning)", "idw (no learning)", "SIGGRAPH'17 published"]:
        assert f"| {row}" in table
    assert "Best backbone:" in table and "old" not in readme.read_text()
    assert (out / "psnr_at_k.png").stat().st_size > 10_000

    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("reused") == len(BACKBONES)
    assert "training" not in again.stdout
