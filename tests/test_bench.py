"""`make bench` end to end on a tiny setting: every backbone in every table, sane values.

Timings are not asserted (machines are noisy); the benchmark itself is a script.
"""

import json
import subprocess
import sys

from conftest import ROOT

BACKBONES = ["resunet", "unet", "siggraph17"]


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
    table = (tmp_path / "bench.md").read_text()
    for name in BACKBONES:
        assert table.count(f"| {name} |") == 2  # training and inference tables
    text = readme.read_text()
    assert "old table" not in text and text.startswith("intro") and text.endswith("outro\n")
    assert table.strip() in text
