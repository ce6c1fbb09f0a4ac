"""Every command in README.md runs as written.

The README's ```bash blocks are read as commands (``\\`` continuations joined, comments
dropped). Fast: every ``make`` command expands (``make -n``) and every ``python src/<entry>.py``
command's overrides compose into its entry point's config, so a renamed key, group or option
fails here. Slow (``make test-full``): every ``python src/...`` command runs, in README order, in
a scratch folder that links the repository's ``src``, ``conf``, ``data`` and ``models``
(``HINTCOLOR_ROOT`` points there, so runs write to its ``logs/``), each in this process as
``python src/<entry>.py`` would run it: training commands with ``debug=fast task_name=train``
added, after ``make train``'s own recipe has run the same way.

Placeholders are filled in: ``logs/train/runs/<date>`` is that ``make train`` run,
``logs/train/multiruns/<date>`` the newest sweep, ``/photos`` a folder of Kodak photos
(``train/``, ``val/``, ``test/``), ``photo.jpg`` one of them and ``hints.json`` the README's
JSON example. A command whose comment starts with ``long:`` is composed but not run.
"""

from __future__ import annotations

import json
import logging
import re
import runpy
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import KODAK, ROOT, compose

README = ROOT / "README.md"
HYDRA_ENTRY_POINTS = {"train.py", "eval.py", "colorize.py", "export.py", "app.py"}
ENTRY_POINTS = HYDRA_ENTRY_POINTS | {"compare.py"}
# Appended to every training command (the convention: a few batches, same run folders).
FAST_TRAINING = ["debug=fast", "task_name=train"]
MAX_LONG = 3  # commands the tests only compose: keep the README's examples cheap to check


@dataclass(frozen=True)
class Command:
    text: str  # as written, continuations joined
    argv: list[str]
    long: bool

    @property
    def entry(self) -> str | None:
        """``train.py`` for ``python src/train.py ...``; None for other commands."""
        if self.argv[0] == "python" and len(self.argv) > 1 and self.argv[1].startswith("src/"):
            return self.argv[1].removeprefix("src/")
        return None

    def __str__(self) -> str:
        return self.text


def readme_commands() -> list[Command]:
    """The commands of the README's ```bash blocks, in order."""
    blocks = re.findall(r"^```bash\n(.*?)^```", README.read_text(), flags=re.S | re.M)
    commands = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            argv = shlex.split(line, comments=True)
            if argv:
                text = " ".join(line.split())
                commands.append(Command(text, argv, bool(re.search(r"#\s*long:", line))))
    return commands


def readme_json_example() -> list:
    """The hints file example (the README's first ```json block)."""
    block = re.search(r"^```json\n(.*?)^```", README.read_text(), flags=re.S | re.M)
    assert block, "README.md has no ```json hints example"
    return json.loads(block.group(1))


COMMANDS = readme_commands()
MAKE = [c for c in COMMANDS if c.argv[0] == "make"]
PYTHON = [c for c in COMMANDS if c.entry]


def fill(arg: str, photos: Path, run: str, sweep: str) -> str:
    """One argument with the README's placeholders replaced by real paths."""
    arg = arg.replace("logs/train/runs/<date>", run).replace("logs/train/multiruns/<date>", sweep)
    arg = arg.replace("<run-id>", "readme-test")
    arg = re.sub(r"(?<![\w.])/photos", str(photos), arg)
    assert "<" not in arg, f"unknown placeholder in {arg!r}: teach tests/test_readme.py to fill it"
    return arg


def without_hydra_flags(args: list[str]) -> list[str]:
    """The overrides of a Hydra command line: ``-m``, ``--help``, ``--cfg job`` ... dropped."""
    overrides, skip_next = [], False
    for arg in args:
        if skip_next:
            skip_next = False
        elif arg in ("--cfg", "-c", "--package", "-p", "--info", "-i"):
            skip_next = True
        elif not arg.startswith("-"):
            overrides.append(arg)
    return overrides


# ---- fast -------------------------------------------------------------------------------------


def test_readme_has_only_commands_the_tests_know():
    assert len(PYTHON) >= 15 and MAKE, "the README's bash blocks were not found"
    unknown = [str(c) for c in COMMANDS if c not in MAKE and c not in PYTHON]
    assert not unknown, f"README commands tests/test_readme.py cannot check: {unknown}"
    assert {c.entry for c in PYTHON} <= ENTRY_POINTS
    assert all(c.entry in HYDRA_ENTRY_POINTS for c in PYTHON if c.long), "long: Hydra commands only"
    long = [str(c) for c in COMMANDS if c.long]
    assert len(long) <= MAX_LONG, f"too many README commands are only composed: {long}"


@pytest.mark.parametrize("cmd", MAKE, ids=str)
def test_make_command_expands(cmd):
    proc = subprocess.run(
        ["make", "-n", *cmd.argv[1:]], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip(), f"{cmd}: no recipe"


@pytest.mark.parametrize("cmd", [c for c in PYTHON if c.entry in HYDRA_ENTRY_POINTS], ids=str)
def test_python_command_composes(cmd, tmp_path):
    """The overrides as written (a sweep's first value) compose into the entry point's config."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    args = [fill(a, Path("/photos"), "logs/run", "logs/sweep") for a in cmd.argv[2:]]
    overrides = []
    for override in OverridesParser.create().parse_overrides(without_hydra_flags(args)):
        if override.is_sweep_override():
            first = next(override.sweep_string_iterator())
            overrides.append(f"{override.get_key_element()}={first}")
        else:
            overrides.append(override.input_line)
    name = cmd.entry.removesuffix(".py")
    cfg = compose(name, overrides, tmp_path)
    assert cfg.task_name in (name, "debug")  # debug=fast names its runs debug


# ---- slow: run them ---------------------------------------------------------------------------


def run(entry: str, args: list[str], root: Path) -> None:
    """``python src/<entry> args...`` in ``root`` as its repository root, in this process (a
    fresh interpreter per command would spend most of the test importing torch)."""
    from hydra.core.global_hydra import GlobalHydra

    handlers, level = logging.root.handlers[:], logging.root.level
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("HINTCOLOR_ROOT", str(root))
        mp.setenv("WANDB_MODE", "disabled")
        mp.setattr(sys, "argv", [f"src/{entry}", *args])
        try:
            runpy.run_path(str(root / "src" / entry), run_name="__main__")
        except SystemExit as exc:  # --help exits 0; an error exits with its message or 1
            assert exc.code in (0, None), f"python src/{entry} {' '.join(args)}: exit {exc.code}"
        finally:
            GlobalHydra.instance().clear()
            logging.root.handlers[:], logging.root.level = handlers, level


def with_training_overrides(args: list[str]) -> list[str]:
    """``args`` with FAST_TRAINING after its last override (Hydra reads the overrides as one
    group: not after ``--cfg job``), leaving out keys the command sets itself."""
    given = {a.split("=", 1)[0] for a in args}
    extra = [o for o in FAST_TRAINING if o.split("=", 1)[0] not in given]
    overrides = [i for i, a in enumerate(args) if "=" in a and not a.startswith("-")]
    at = overrides[-1] + 1 if overrides else len(args)
    return [*args[:at], *extra, *args[at:]]


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scratch repository root with photos, the README's hints file and a `make train` run."""
    root = tmp_path_factory.mktemp("readme")
    for name in ("src", "conf", "data", "models"):
        (root / name).symlink_to(ROOT / name)
    photos = sorted(KODAK.rglob("*.jpg"))
    for split, files in (("train", photos[:6]), ("val", photos[20:22]), ("test", photos[22:24])):
        (root / "photos" / split).mkdir(parents=True)
        for f in files:
            shutil.copy(f, root / "photos" / split / f.name)
    shutil.copy(photos[20], root / "photo.jpg")
    (root / "hints.json").write_text(json.dumps(readme_json_example()))

    recipe = subprocess.run(
        ["make", "-n", "train", f"ARGS={' '.join(FAST_TRAINING)}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    line = next(x for x in recipe.splitlines() if "src/train.py" in x).split()
    run("train.py", line[line.index("src/train.py") + 1 :], root)
    return root


def the_run(sandbox: Path, kind: str, newest: bool) -> str:
    runs = sorted((sandbox / "logs" / "train" / kind).glob("*"))
    return str(runs[-1 if newest else 0].relative_to(sandbox)) if runs else f"logs/train/{kind}/-"


@pytest.mark.slow
@pytest.mark.parametrize("cmd", [c for c in PYTHON if not c.long], ids=str)
def test_python_command_runs(cmd, sandbox):
    """Run in README order (the comparison of a sweep follows the sweep)."""
    make_train_run = the_run(sandbox, "runs", newest=False)
    newest_sweep = the_run(sandbox, "multiruns", newest=True)
    args = [fill(a, sandbox / "photos", make_train_run, newest_sweep) for a in cmd.argv[2:]]
    if cmd.entry == "train.py":
        args = with_training_overrides(args)
    run(cmd.entry, args, sandbox)
