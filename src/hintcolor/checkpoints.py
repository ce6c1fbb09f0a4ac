"""Checkpoint files: written atomically, read back without executing anything they say.

Writing: :class:`AtomicCheckpointIO` writes beside the target and renames, so a kill or a full
disk leaves the previous checkpoint intact and no partial file behind.

Reading: a checkpoint is a file from a stranger. ``torch.load(weights_only=True)`` keeps its
pickle from running code, but the run's config stored in it names ``_target_``s that Hydra
would import and call: ``{_target_: builtins.exec, ...}`` would run on load. So the stored
config is checked before anything is built: every ``_target_`` in it must be one the project's own
configs use, interpolations (which call resolvers) are refused, and the nodes that are built
(``model.backbone``, ``hint_prior``, ``color_head``) must name ``nn.Module`` classes of this
package.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins.io import TorchCheckpointIO
from omegaconf import DictConfig, OmegaConf
from torch import nn

from hintcolor.build import build_backbone
from hintcolor.config import ConfigError, check_ckpt_path
from hintcolor.models.color_head import ColorDistributionHead

# The library classes (and the one function) the project's configs (conf/**) name; other
# hintcolor.* targets must be classes of this package. tests/test_checkpoints.py keeps this
# list in sync with conf/.
NAMED_TARGETS = frozenset(
    {
        "hintcolor.tracking.wandb_logger",
        "albumentations.Affine",
        "albumentations.CenterCrop",
        "albumentations.ColorJitter",
        "albumentations.Compose",
        "albumentations.HorizontalFlip",
        "albumentations.RandomResizedCrop",
        "albumentations.SmallestMaxSize",
        "lightning.Trainer",
        "lightning.pytorch.callbacks.LearningRateMonitor",
        "lightning.pytorch.callbacks.ModelCheckpoint",
        "lightning.pytorch.callbacks.RichModelSummary",
        "lightning.pytorch.callbacks.RichProgressBar",
        "lightning.pytorch.loggers.CSVLogger",
        "lightning.pytorch.loggers.TensorBoardLogger",
        "torch.optim.Adam",
        "torch.optim.AdamW",
        "torch.optim.lr_scheduler.CosineAnnealingLR",
        "torch.optim.lr_scheduler.ReduceLROnPlateau",
        "torch.optim.lr_scheduler.StepLR",
    }
)
# Packages whose modules the project's own targets live in (imported to check a target).
OWN_PACKAGE = "hintcolor."
# What may be built from a checkpoint: nn.Module classes defined in these modules.
BUILDABLE_MODULES = (
    "hintcolor.models.backbones",
    "hintcolor.models.hint_prior",
    "hintcolor.models.color_head",
)
# Nodes of the stored config that build_backbone instantiates; all but the backbone optional
# (checkpoints from before the colour head have no color_head).
BUILT_NODES = {"model.backbone": False, "hint_prior": True, "color_head": True}


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (disk full, permissions); the previous one is intact."""


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO, made atomic on any local filesystem.

    Lightning serialises to memory and lets fsspec move a temporary file from TMPDIR, which is
    a copy - not atomic - when the run folder is on another filesystem (scratch, network,
    /dev/shm): a kill left a 0-byte ``last.ckpt``, a full disk a truncated one, and every kill
    an orphan in TMPDIR. Here the file is written in the target's own directory, fsynced and
    renamed over the target (atomic within a filesystem), then the directory is fsynced so the
    rename survives a power cut. On failure the partial file is removed and
    :class:`CheckpointWriteError` says which path and why. Remote URLs (s3://...) keep
    Lightning's own path.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        local = isinstance(get_filesystem(path), LocalFileSystem)
        if storage_options is not None or not local:
            return super().save_checkpoint(checkpoint, path, storage_options)
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        for stale in target.parent.glob(f".{target.name}.*.partial"):  # left by a kill -9
            stale.unlink(missing_ok=True)
        # Serialised in memory first (as Lightning does), so a failure below is the disk's.
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        try:
            with open(partial, "wb") as f:
                f.write(buffer.getbuffer())
                f.flush()
                os.fsync(f.fileno())
            os.replace(partial, target)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            reason = exc.strerror or str(exc)
            raise CheckpointWriteError(
                exc.errno,
                f"could not write checkpoint {target}: {reason} (the previous one is "
                "intact; free space or set paths.log_dir elsewhere, then resume from it)",
            ) from None
        except BaseException:  # interrupted mid-write: no partial file stays behind
            partial.unlink(missing_ok=True)
            raise
        with contextlib.suppress(OSError):  # not every filesystem can fsync a directory
            fd = os.open(target.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


class UnsafeCheckpointError(ConfigError):
    """A checkpoint whose stored config would run something other than the project's code."""


def _walk(node: Any, path: str = "") -> Iterator[tuple[str, str, Any]]:
    """(dotted key, key, value) of every entry of nested dicts/lists."""
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in items:
        where = f"{path}.{key}" if path else str(key)
        yield where, str(key), value
        if isinstance(value, dict | list):
            yield from _walk(value, where)


def _own_class(target: str) -> type | None:
    """The class ``target`` names if it is defined in a hintcolor module, else None.

    Only modules under ``hintcolor.`` are imported (the string is checked first), and the
    object must be a class defined there: ``hintcolor.x.os.system`` is refused.
    """
    module_name, _, name = target.rpartition(".")
    if not module_name.startswith(OWN_PACKAGE) or not name.isidentifier():
        return None
    try:
        obj = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError):
        return None
    defined_in = getattr(obj, "__module__", "") or ""
    return obj if inspect.isclass(obj) and defined_in.startswith(OWN_PACKAGE) else None


def check_stored_config(config: Any, source: str) -> None:
    """Refuse, in one line naming the key, a stored config that could run foreign code."""
    if not isinstance(config, dict):
        raise UnsafeCheckpointError(f"{source}: its stored config is not a mapping")
    for where, key, value in _walk(config):
        if isinstance(value, str) and "${" in value:
            raise UnsafeCheckpointError(
                f"{source}: refused: its stored config has an interpolation at {where} "
                f"({value[:60]!r}); checkpoints of this project store resolved values"
            )
        if key != "_target_":
            continue
        if not isinstance(value, str) or not (
            value in NAMED_TARGETS or _own_class(value) is not None
        ):
            raise UnsafeCheckpointError(
                f"{source}: refused: its stored config names _target_ {value!r} at {where}, "
                "which is not one of this project's classes"
            )
    stored = OmegaConf.create(config)
    for key, optional in BUILT_NODES.items():
        node = OmegaConf.select(stored, key)
        if not node and optional:  # absent, or an empty group option (hint_prior=none)
            continue
        target = node.get("_target_") if isinstance(node, DictConfig) else None
        cls = _own_class(target) if isinstance(target, str) else None
        if (
            cls is None
            or not issubclass(cls, nn.Module)
            or not cls.__module__.startswith(BUILDABLE_MODULES)
        ):
            raise UnsafeCheckpointError(
                f"{source}: refused: {key} must name a backbone, hint prior or colour head of "
                f"this project, got {target!r}"
            )
        # Hydra would build nested targets too (recursive instantiation): none may hide there.
        nested = [
            w for w, k, _ in _walk(OmegaConf.to_container(node)) if k == "_target_" and "." in w
        ]
        if nested:
            raise UnsafeCheckpointError(
                f"{source}: refused: a nested _target_ at {key}.{nested[0]}"
            )


def read_checkpoint(ckpt_path: str | Path, check_config: bool = True) -> dict[str, Any]:
    """The checkpoint's contents, read without unpickling code, its stored config checked.

    Raises a one-line :class:`ConfigError` for a missing file, a file that is not a
    checkpoint (text, a pickle with code, a truncated file) or an unsafe stored config.
    ``check_config=False`` where nothing is built from the stored config (resuming training
    builds from the current config), so a run with callbacks of the user's own resumes.
    """
    check_ckpt_path(str(ckpt_path), required=True)
    try:
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle/zip errors of many kinds: one clear message
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{ckpt_path} is not a readable checkpoint ({reason[:200]})") from None
    if not isinstance(ckpt, dict) or "hintcolor_config" not in ckpt:
        raise ConfigError(f"{ckpt_path} is not a hintcolor checkpoint (no hintcolor_config)")
    if not isinstance(ckpt.get("state_dict"), dict):
        raise ConfigError(f"{ckpt_path} is not a hintcolor checkpoint (no state_dict)")
    if check_config:
        check_stored_config(ckpt["hintcolor_config"], str(ckpt_path))
    return ckpt


def check_weights_fit(
    model: nn.Module, state: dict[str, Any], source: str, prefix: str = ""
) -> None:
    """One line when ``state`` does not fit ``model`` (another backbone, other widths).

    Weights the model has and the file lacks are left to the model's own loading, which may
    fill them for files of an older version (``PushPullResidual.gain``).
    """
    expected = {prefix + k: tuple(v.shape) for k, v in model.state_dict().items()}
    given = {k: tuple(v.shape) for k, v in state.items() if hasattr(v, "shape")}
    unexpected = sorted(k for k in given.keys() - expected.keys() if k.startswith(prefix))
    wrong = sorted(k for k in expected.keys() & given.keys() if expected[k] != given[k])
    if unexpected or wrong:
        detail = f"{len(unexpected)} unexpected, {len(wrong)} of another shape"
        raise ConfigError(
            f"{source} holds weights of another model ({detail}, e.g. {(unexpected or wrong)[0]}); "
            "use the model= it was trained with"
        )


def load_backbone(ckpt_path: str | Path) -> tuple[nn.Module, DictConfig]:
    """Rebuild the trained backbone (with its hint prior) from a checkpoint alone.

    The run's resolved config is stored in every checkpoint, so nothing else is needed.
    Returns (backbone in eval mode, training config). Anything wrong with the file - missing,
    not a checkpoint, a config that names foreign code - raises a one-line ConfigError.
    """
    ckpt = read_checkpoint(ckpt_path)
    train_cfg = OmegaConf.create(ckpt["hintcolor_config"])
    try:
        backbone = build_backbone(train_cfg)
    except Exception as exc:  # arguments the class refuses: still one line
        raise ConfigError(f"{ckpt_path}: its model cannot be built: {exc}") from None
    load_weights(backbone, backbone_state(ckpt), str(ckpt_path))
    return backbone.eval(), train_cfg


def backbone_state(ckpt: dict[str, Any]) -> dict[str, Any]:
    """The backbone's tensors of a checkpoint, named as in the backbone."""
    prefix = "backbone."
    return {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}


def load_weights(model: nn.Module, state: dict[str, Any], source: str) -> None:
    """``model.load_state_dict(state)``, any mismatch as one line naming ``source``."""
    check_weights_fit(model, state, source)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:  # weights missing from the file
        first = str(exc).splitlines()[1].strip() if "\n" in str(exc) else str(exc)
        raise ConfigError(f"{source} does not fit its model: {first[:200]}") from None


def load_network_weights(model: nn.Module, ckpt_path: str | Path) -> str:
    """Fill ``model`` (as :func:`hintcolor.build.build_backbone` makes it) with a checkpoint's
    weights (``init_from``); returns what was loaded, in words.

    The file is read as any checkpoint here (``weights_only``); nothing is built from its
    stored config, so it is not checked. A checkpoint without a colour head loaded into a model
    with one fills the network under the head and leaves the head as initialised: the way to
    train a head on top of a trained model.
    """
    state = backbone_state(read_checkpoint(ckpt_path, check_config=False))
    target, what = model, "the whole model"
    has_head = any(k.startswith("network.") for k in state)
    if isinstance(model, ColorDistributionHead) and not has_head:
        target, what = model.network, "the network under the new colour head"
    load_weights(target, state, f"init_from={ckpt_path}")
    return f"init_from {ckpt_path}: {len(state)} tensors into {what}"


def checkpoint_to_use(ckpt_path: str | None, shipped: str | Path) -> tuple[Path, str]:
    """``ckpt_path``, or the model shipped in the repository when none is given; and the
    line that tells the user which model runs. A missing file is a one-line ConfigError."""
    if ckpt_path:
        check_ckpt_path(str(ckpt_path), required=True)
        return Path(ckpt_path), f"model: {ckpt_path}"
    shipped = Path(shipped)
    if not shipped.is_file():
        raise ConfigError(
            f"no ckpt_path given and the shipped model {shipped} is missing (`make model` "
            "rebuilds it); give ckpt_path=logs/.../checkpoints/best.ckpt"
        )
    card = shipped.parent / "README.md"
    return shipped, (
        f"model: the shipped model {shipped} (model card: {card}); ckpt_path=... for your own"
    )
