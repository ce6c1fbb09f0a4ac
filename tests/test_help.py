"""``--help`` (conf/hydra/help/train.yaml, hintcolor/help_text.py): the training help fits one
screen and names every training group with its options; the other entry points still help."""

import pytest
import yaml
from conftest import ROOT, run_cli

from hintcolor.help_text import GROUP_COLUMN

SCREEN_LINES, SCREEN_COLUMNS = 45, 100


def _training_groups() -> list[str]:
    """The groups conf/train.yaml composes (not Hydra's own)."""
    defaults = yaml.safe_load((ROOT / "conf" / "train.yaml").read_text())["defaults"]
    return [
        key
        for entry in defaults
        if isinstance(entry, dict)
        for key in entry
        if not key.startswith(("hydra", "override"))
    ]


def _blocks(text: str) -> dict[str, str]:
    """Each group's line with its continuation lines, by group name."""
    blocks: dict[str, str] = {}
    name = None
    for line in text.splitlines():
        if line.startswith("  ") and not line[2].isspace() and len(line) > GROUP_COLUMN:
            name = line.split()[0]
            blocks[name] = line
        elif name and line.startswith(" " * GROUP_COLUMN):
            blocks[name] += " " + line.strip()
        else:
            name = None
    return blocks


@pytest.fixture(scope="module")
def train_help(tmp_path_factory) -> str:
    proc = run_cli("train.py", "model=unet", "--help", cwd=tmp_path_factory.mktemp("help"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_train_help_fits_one_screen(train_help):
    lines = train_help.rstrip("\n").splitlines()
    assert len(lines) <= SCREEN_LINES, train_help
    assert max(len(line) for line in lines) <= SCREEN_COLUMNS


def test_train_help_names_every_group_with_its_options(train_help):
    blocks = _blocks(train_help)
    for group in _training_groups():
        options = {p.stem for p in (ROOT / "conf" / group).glob("*.yaml")} - {"base"}
        listed = blocks[group].split(":", 1)[1].replace("*", "").split(",")
        assert {o.strip() for o in listed} == options, blocks[group]
    assert "unet*" in blocks["model"] and "resunet*" not in blocks["model"]  # the choice now
    assert "zhang17*" in blocks["hints"]  # the default of a group not overridden


def test_train_help_hides_what_is_not_a_training_option(train_help):
    assert "colorizer" not in train_help  # the page's and colorize.py's group
    assert "base" not in _blocks(train_help)["hparams_search"]  # what every study shares


def test_train_help_has_top_level_keys_and_examples(train_help):
    assert "seed=42" in train_help and "optimized_metric=val/psnr_best" in train_help
    examples = train_help.split("Examples:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert len(examples) == 3
    assert all(e.startswith("  python src/train.py ") for e in examples)


# the same wrapper serves every entry point: one with groups, one with a mandatory value
@pytest.mark.parametrize("script", ["eval.py", "colorize.py"])
def test_other_entry_points_keep_hydras_help(script, tmp_path):
    proc = run_cli(script, "--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "== Config ==" in proc.stdout and f"task_name: {script[:-3]}" in proc.stdout
