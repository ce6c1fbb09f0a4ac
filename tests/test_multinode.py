"""Multi-node DDP for real: two torchrun "nodes" of one CPU process each on this machine,
meeting through a c10d rendezvous and training over gloo, as a cluster launches src/train.py
(one torchrun per node; docs/scale-out.md); and the one run folder that all the processes of
a job share."""

from __future__ import annotations

import contextlib
import csv
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import torch
from conftest import ROOT, compose
from hydra import compose as hydra_compose
from hydra import initialize_config_dir

from hintcolor.build import build_backbone, build_datamodule, build_module, build_trainer

NODES = 2
TIMEOUT_S = 300
# A few steps of a tiny run (as tests/test_train.py's DDP test): 6 photos x 4 repeats over
# 2 processes = 12 crops each, 3 batches of 4; each process validates one of the 2 val photos
TINY = [
    "debug=fast",
    "callbacks.progress_bar=null",
    "data.image_size=64",
    "data.num_workers=0",
    "data.train_repeats=4",
    "trainer.precision=32-true",
]
MULTINODE = [
    "trainer=ddp",
    "trainer.accelerator=cpu",
    "trainer.devices=1",
    f"trainer.num_nodes={NODES}",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_node(
    args: list[str], endpoint: str, run_id: str, host: bool, log: Path
) -> subprocess.Popen:
    """One node's ``torchrun ... src/train.py args`` (its stdout and stderr to ``log``)."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nnodes={NODES}",
        "--nproc-per-node=1",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint={endpoint}",
        f"--rdzv-id={run_id}",
        # both "nodes" are this machine (127.0.0.1): say which one hosts the rendezvous store
        # (on a cluster torchrun infers it from the host name); c10d numbers the nodes
        f"--rdzv-conf=is_host={int(host)}",
        "--local-addr=127.0.0.1",
        "--max-restarts=0",
        str(ROOT / "src" / "train.py"),
        *args,
    ]
    env = {**os.environ, "HINTCOLOR_ROOT": str(ROOT), "OMP_NUM_THREADS": "1"}
    with log.open("w") as out:
        return subprocess.Popen(
            command, cwd=log.parent, env=env, stdout=out, stderr=subprocess.STDOUT
        )


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (torchrun starts its workers in sessions of their own, so
    killing its process group would leave them running)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        below = children.get(todo.pop(), [])
        found += below
        todo += below
    return found


def stop(nodes: list[subprocess.Popen]) -> None:
    """SIGKILL every node still running and every process it started: no orphans."""
    for node in nodes:
        if node.poll() is None:
            for pid in [*descendants(node.pid), node.pid]:
                with contextlib.suppress(ProcessLookupError):  # ended meanwhile
                    os.kill(pid, signal.SIGKILL)
            node.wait()


def run_nodes(args: list[str], workdir: Path) -> list[tuple[int, str]]:
    """Launch the two nodes, wait for both (at most TIMEOUT_S together); (exit code, output)
    of each. On a timeout or a failure the other node is killed with all its processes."""
    endpoint, run_id = f"127.0.0.1:{free_port()}", uuid.uuid4().hex[:12]
    logs = [workdir / f"node{i}.log" for i in range(NODES)]
    nodes = [start_node(args, endpoint, run_id, i == 0, log) for i, log in enumerate(logs)]
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while any(n.poll() is None for n in nodes) and time.monotonic() < deadline:
            if any(n.poll() not in (None, 0) for n in nodes):
                break  # one node failed: the other would wait for it until its own timeout
            time.sleep(0.5)
    finally:
        stop(nodes)
    return [(n.returncode, log.read_text()) for n, log in zip(nodes, logs, strict=True)]


@pytest.mark.slow
def test_two_nodes_train_in_sync_and_write_one_checkpoint(tmp_path, photo_folders):
    run = tmp_path / "run"
    data = [f"data.train_dir={photo_folders['train']}", f"data.val_dir={photo_folders['val']}"]
    # one run folder shared by both nodes, as on a cluster's shared filesystem
    shared = [f"hydra.run.dir={run}", f"paths.log_dir={tmp_path / 'logs'}"]
    results = run_nodes([*TINY, *data, *MULTINODE, *shared], tmp_path)
    for i, (code, output) in enumerate(results):
        assert code == 0, f"node {i} exited with {code}:\n{output[-3000:]}"
    both = "".join(output for _, output in results)
    assert "MEMBER: 1/2" in both and "MEMBER: 2/2" in both  # one world of two processes

    # global rank 0 alone writes: one checkpoint of each kind, one metrics file, one W&B run
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.ckpt")) == [
        "run/checkpoints/best.ckpt",
        "run/checkpoints/last.ckpt",
    ]
    assert not list(run.rglob("*.partial"))
    assert len(list(tmp_path.rglob("metrics.csv"))) == 1
    assert len(list((run / "wandb").glob("offline-run-*"))) == 1
    # Both nodes vetted at the same time into one cache on one disk: its lock made one wait
    # for the other and read its verdicts, so each of the 8 photos was decoded once
    lines = (tmp_path / "logs" / ".cache" / "vetting.jsonl").read_text().splitlines()
    assert len(lines) == 8

    ckpt = run / "checkpoints" / "last.ckpt"
    assert torch.load(ckpt, weights_only=True)["global_step"] == 3
    rows = list(csv.DictReader((run / "csv" / "metrics.csv").open()))
    logged = [float(r["val/psnr"]) for r in rows if r.get("val/psnr")][-1]
    # Each node validated one of the two photos: the logged value is the mean over both
    # nodes, what one process computes on the whole validation set with the same weights.
    cfg = compose("train", [*TINY, *data], tmp_path / "one")
    module = build_module(cfg, build_backbone(cfg))
    datamodule = build_datamodule(cfg.data, cfg.hints)
    trainer = build_trainer(cfg.trainer, [], [])
    (single,) = trainer.validate(module, datamodule=datamodule, ckpt_path=str(ckpt))
    assert single["val/psnr"] == pytest.approx(logged, abs=1e-3)


@pytest.mark.parametrize(
    ("launcher", "folder"),
    [
        ({"TORCHELASTIC_RUN_ID": "imagenet-001"}, "imagenet_imagenet-001"),
        ({"SLURM_JOB_ID": "4242"}, "imagenet_4242"),
        ({"TORCHELASTIC_RUN_ID": "imagenet-001", "SLURM_JOB_ID": "4242"}, "imagenet_imagenet-001"),
    ],
    ids=["torchrun", "srun", "torchrun-in-slurm"],
)
def test_imagenet_recipe_runs_in_the_jobs_folder(tmp_path, monkeypatch, launcher, folder):
    """Processes started a second apart would each get a folder named by their start time:
    experiment=imagenet_ddp names it after the job, the same on every node."""
    for key in ("TORCHELASTIC_RUN_ID", "SLURM_JOB_ID"):
        monkeypatch.delenv(key, raising=False)
    for key, value in launcher.items():
        monkeypatch.setenv(key, value)
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = hydra_compose(
            "train",
            [f"paths.log_dir={tmp_path}", "experiment=imagenet_ddp"],
            return_hydra_config=True,
        )
    assert cfg.hydra.run.dir == f"{tmp_path}/train/runs/{folder}"
