"""The command-line contract (unio/cli.py, issue #10 defects 7 and 9): every console entry answers a user
mistake with ONE line and a non-zero exit code, never a traceback; a bug keeps its traceback; `+field=`
cannot add a field to a typed config; `--help` lists only the groups a main uses.

The subprocess tests (all but two are `slow`: each one imports torch) read pyproject's [project.scripts] at collection time, so an entry added later is
covered by the misspelled-override case at once, and fails `test_every_entry_declares_its_cases` until
it says (in `CASES`) how to point it at a missing data folder and a missing tokenizer, or why not.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import hydra
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, MissingMandatoryValue, ValidationError

import unio.cli
from tests.conftest import CONF_DIR, REPO_ROOT

ENTRIES: dict[str, str] = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
PRIMARY = sorted(p.stem for p in CONF_DIR.glob("*.yaml"))
MISSING_DIR = "{tmp}/missing"  # formatted per test: a folder that does not exist

# entry -> case -> the overrides that make it (with {tmp} and {tiny_tokenizer} filled in), or a str: why
# the case does not apply to this entry.
CASES: dict[str, dict[str, list[str] | str]] = {
    "unio-demo": {
        "missing_data": "runs on built-in data only: no data folder to point at",
        "missing_tokenizer": "trains its own text tokenizer and uses coordinate bins: loads no tokenizer",
    },
    "unio-pretokenize": {
        "missing_data": [
            "data=coco",
            f"data_root={MISSING_DIR}",
            "tokenizers.image.tiny_seed=0",
            "tokenizers.mask.tiny_seed=0",
        ],
        "missing_tokenizer": [f"tokenizers.image.path={MISSING_DIR}/tokenizer"],
    },
    "unio-train-tokenizer": {
        "missing_data": [f"data_root={MISSING_DIR}", "tokenizer=image/image_tiny_test"],
        "missing_tokenizer": "trains a tokenizer from scratch: loads none",
    },
    "unio-eval-tokenizer": {
        "missing_data": ["tokenizer_path={tiny_tokenizer}", f"data_root={MISSING_DIR}"],
        "missing_tokenizer": [f"tokenizer_path={MISSING_DIR}/tokenizer"],
    },
    "unio-eval": {
        "missing_data": [f"checkpoint={MISSING_DIR}/run"],
        "missing_tokenizer": "loads the tokenizers saved inside the checkpoint: none is configured",
    },
    "unio-predict": {
        "missing_data": [f"checkpoint={MISSING_DIR}/run", f"inputs={MISSING_DIR}", "task=caption"],
        "missing_tokenizer": "loads the tokenizers saved inside the checkpoint: none is configured",
    },
    "unio-probes": {
        "missing_data": "draws its own images: no data folder to point at",
        "missing_tokenizer": "builds its own text tokenizer and tiny VQ tokenizer: loads none",
    },
    "unio-train": {
        "missing_data": ["data=coco", f"data_root={MISSING_DIR}"],
        "missing_tokenizer": [
            f"tokenizers.image.path={MISSING_DIR}/tokenizer",
            "tokenizers.image.tiny_seed=null",
        ],
    },
}
# Each subprocess imports torch & co. (3-10 s on a loaded 2-core machine): only unio-demo's cheapest
# checks stay in the fast tier; the in-process tests below cover unio/cli.py's logic quickly.
FAST = {("unio-demo", "misspelled")}


def _clean_env() -> dict[str, str]:
    """The user's default environment: no traceback switch (tests/conftest.py sets HYDRA_FULL_ERROR)."""
    env = {k: v for k, v in os.environ.items() if k not in unio.cli.VERBOSE_ENV}
    return {**env, "WANDB_MODE": "disabled", "PYTHONPATH": str(REPO_ROOT)}


def run_entry(name: str, args: list[str], cwd: Path, env: dict[str, str] | None = None):
    """Run console entry `name` as its console script would: `module:function` from pyproject, with
    sys.argv[0] set to the entry's name (works whether or not the entry is installed in .venv/bin)."""
    module, function = ENTRIES[name].split(":")
    code = f"import sys; sys.argv[0] = {name!r}; from {module} import {function}; {function}()"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        env=env or _clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_one_line_error(result, name: str, *words: str) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == unio.cli.USER_ERROR_EXIT, f"exit code {result.returncode}:\n{output[-3000:]}"
    assert "Traceback" not in output, output[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{result.stderr[-3000:]}"
    assert lines[0].startswith(f"{name}: error: "), lines[0]
    for word in words:
        assert word in lines[0], f"{word!r} not in: {lines[0]}"
    return lines[0]


def _params(*cases: str) -> list:
    params = []
    for name in sorted(ENTRIES):
        for case in cases:
            marks = [] if (name, case) in FAST else [pytest.mark.slow]
            values = (name, case) if len(cases) > 1 else (name,)
            params.append(pytest.param(*values, id="-".join(values), marks=marks))
    return params


@pytest.fixture(scope="module")
def tiny_tokenizer(tmp_path_factory) -> Path:
    from unio.tasks.bundle import tiny_grid_tokenizer
    from unio.tokenizers.saved import save_pretrained

    path = tmp_path_factory.mktemp("tok") / "tokenizer"
    save_pretrained(tiny_grid_tokenizer("image", 0), path)
    return path


# ------------------------------------------------------------------------------ every console entry
def test_every_entry_declares_its_cases():
    missing = sorted(set(ENTRIES) - set(CASES))
    assert not missing, (
        f"add {missing} to CASES in tests/test_cli.py (overrides, or why a case does not apply)"
    )


@pytest.mark.parametrize("name", _params("misspelled"))
def test_misspelled_override_is_one_line(name, tmp_path):
    result = run_entry(name, ["definitely_not_a_field=1"], tmp_path)
    line = assert_one_line_error(result, name, "definitely_not_a_field", "known fields:")
    assert not (tmp_path / "outputs").exists(), "a refused command line must not create an output folder"
    assert len(line) < 2000


@pytest.mark.parametrize(("name", "case"), _params("missing_data", "missing_tokenizer"))
def test_missing_path_is_one_line(name, case, tmp_path, request):
    spec = CASES.get(name, {}).get(case)
    if spec is None:
        pytest.fail(f"{name}: declare {case!r} in CASES")
    if isinstance(spec, str):
        pytest.skip(f"{name} {case}: {spec}")
    fill = {"tmp": str(tmp_path)}
    if any("{tiny_tokenizer}" in a for a in spec):
        fill["tiny_tokenizer"] = str(request.getfixturevalue("tiny_tokenizer"))
    args = [a.format(**fill) for a in spec]
    result = run_entry(name, args, tmp_path)
    line = assert_one_line_error(result, name, str(tmp_path / "missing"))
    if case == "missing_tokenizer":
        assert "tokenizer" in line


@pytest.mark.slow
@pytest.mark.parametrize("name", ["unio-demo", "unio-train-tokenizer"])
def test_help_lists_only_the_groups_of_the_main(name, tmp_path):
    result = run_entry(name, ["--help"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    groups = {
        line.split(":")[0].strip()
        for line in result.stdout.split("== Config groups", 1)[-1].split("== Config (", 1)[0].splitlines()
        if line.startswith("  ")
    }
    if name == "unio-demo":
        assert "== Config groups" not in result.stdout and groups == set()
    else:
        assert groups == {"tokenizer", "tokenizer_data", "experiment"}, result.stdout[:2000]
    assert "UNIO_VERBOSE=1" in result.stdout


def test_demo_coords_override_runs(tmp_path):
    """The README's example (defect 9): CoordConfig is frozen, the demo's schema must not be."""
    result = run_entry("unio-demo", ["coords.num_bins=500", "text.vocab_size=600", "train=false"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "demo ok" in result.stdout and "half a bin: 0.640 px" in result.stdout


@pytest.mark.slow
def test_programming_error_keeps_its_traceback(tmp_path):
    # A TypeError inside the job is a bug: the traceback stays, exit code 1.
    code = (
        "import sys; sys.argv[0] = 'unio-demo'; import scripts.demo as d;"
        "d.run_demo = lambda cfg: (_ for _ in ()).throw(TypeError('a bug')); d.main()"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=_clean_env(), capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "TypeError: a bug" in result.stderr


@pytest.mark.slow
def test_verbose_switch_shows_the_traceback(tmp_path):
    result = run_entry("unio-demo", ["definitely_not_a_field=1", "--verbose"], tmp_path)
    assert result.returncode != 0 and "Traceback" in result.stderr
    env = {**_clean_env(), "UNIO_VERBOSE": "1"}
    result = run_entry("unio-demo", ["definitely_not_a_field=1"], tmp_path, env=env)
    assert result.returncode != 0 and "Traceback" in result.stderr


# ------------------------------------------------------------------------------ in process: entry()
@dataclass
class _ToyConfig:
    value: int = 1
    inner: dict = field(default_factory=dict)


ConfigStore.instance().store(name="unio_cli_toy", node=_ToyConfig)
_RAISE: list[BaseException] = []


@hydra.main(version_base="1.3", config_path=None, config_name="unio_cli_toy")
def _toy_main(cfg) -> None:
    if _RAISE:
        raise _RAISE[0]


_toy = unio.cli.entry(_toy_main)


@pytest.fixture
def toy(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    for name in unio.cli.VERBOSE_ENV:
        monkeypatch.delenv(name, raising=False)
    _RAISE.clear()

    def run(*args: str, exc: BaseException | None = None) -> None:
        _RAISE[:] = [exc] if exc else []
        monkeypatch.setattr(sys, "argv", ["unio-toy", "hydra.run.dir=.", "hydra.output_subdir=null", *args])
        _toy()

    yield run
    GlobalHydra.instance().clear()


@pytest.mark.parametrize(
    "exc",
    [
        FileNotFoundError("image folder not found: /x"),
        ValueError("record 'a': box outside the image"),
        ModuleNotFoundError("No module named 'transformers'", name="transformers"),
    ],
    ids=["missing-file", "bad-data", "missing-extra"],
)
def test_entry_turns_user_errors_into_one_line(toy, capsys, exc):
    with pytest.raises(SystemExit) as exit_info:
        toy(exc=exc)
    assert exit_info.value.code == unio.cli.USER_ERROR_EXIT
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("unio-toy: error: ") and "Traceback" not in err
    if isinstance(exc, ModuleNotFoundError):
        assert "pip install -e '.[bench]'" in err


@pytest.mark.parametrize("exc", [TypeError("x"), KeyError("x"), AssertionError("x"), RuntimeError("x")])
def test_entry_lets_programming_errors_raise(toy, exc):
    with pytest.raises(type(exc)):
        toy(exc=exc)
    assert os.environ.get("HYDRA_FULL_ERROR") is None, "entry must restore the environment"


def test_entry_verbose_reraises_user_errors(toy, monkeypatch):
    monkeypatch.setenv("UNIO_VERBOSE", "1")
    with pytest.raises(FileNotFoundError):
        toy(exc=FileNotFoundError("nope"))


def test_entry_refuses_plus_field_and_allows_plus_into_dicts(toy, capsys):
    with pytest.raises(SystemExit) as exit_info:
        toy("+valeu=2")
    assert exit_info.value.code == unio.cli.USER_ERROR_EXIT
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "known fields: value, inner" in err and "did you mean 'value'" in err
    toy("+inner.anything=2")  # a free-form dict: `+` is what adds keys to it
    toy("value=3")


def test_entry_passes_ctrl_c_as_exit_130(toy, capsys):
    with pytest.raises(SystemExit) as exit_info:
        toy(exc=KeyboardInterrupt())
    assert exit_info.value.code == 130 and "interrupted" in capsys.readouterr().err


# ------------------------------------------------------------------------------ classification
@pytest.mark.parametrize(
    ("exc", "user"),
    [
        (FileNotFoundError("x"), True),
        (NotADirectoryError("x"), True),
        (IsADirectoryError("x"), True),
        (PermissionError("x"), True),
        (ValueError("x"), True),
        (ValidationError("x"), True),
        (MissingMandatoryValue("x"), True),
        (ConfigCompositionException("x"), True),
        (MissingConfigException("x", missing_cfg_file="x"), True),
        (ModuleNotFoundError("x", name="transformers"), True),
        (ModuleNotFoundError("x", name="unio.nope"), False),
        (TypeError("x"), False),
        (AttributeError("x"), False),
        (IndexError("x"), False),
        (KeyError("x"), False),
        (ConfigKeyError("x"), False),  # outside composition: code reading a key that is not there
        (AssertionError("x"), False),
        (RuntimeError("x"), False),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_is_user_error(exc, user):
    assert unio.cli.is_user_error(exc) is user


def test_one_line_drops_context_and_joins_lists():
    text = "In 'x': Could not find 'data/cocoo'\n\nAvailable options in 'data':\n\tcoco\n\tshapes\nConfig search path:\n\tprovider=hydra"
    assert (
        unio.cli.one_line(text)
        == "In 'x': Could not find 'data/cocoo'; Available options in 'data': coco, shapes"
    )
    omega = "Key 'a' not in 'B'\n    full_key: x.a\n    object_type=B"
    assert unio.cli.one_line(omega) == "Key 'a' not in 'B'"


def test_describe_adds_hints():
    line = unio.cli.describe(FileNotFoundError("not a saved tokenizer directory (missing config.json): /t"))
    assert "/t" in line and "unio-train-tokenizer" in line
    line = unio.cli.describe(FileNotFoundError(2, "No such file or directory", "/x/y.json"))
    assert line.startswith("No such file or directory: /x/y.json")


# ------------------------------------------------------------------------------ every primary config
def _compose(config_name: str, overrides: list[str]):
    if (REPO_ROOT / "scripts" / f"{config_name}.py").exists():
        importlib.import_module(f"scripts.{config_name}")  # registers the schema
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
        help_template = cfg.hydra.help.template if "hydra/help=unio" in overrides else None
    return cfg, help_template


@pytest.mark.parametrize("config_name", PRIMARY)
def test_plus_unknown_field_is_refused_with_known_fields(config_name):
    cfg, _ = _compose(config_name, ["+unknown_field=1"])
    fields = [str(k) for k in cfg if k not in ("hydra", "unknown_field")]
    with pytest.raises(ValueError, match="has no field 'unknown_field'") as info:
        unio.cli.refuse_added_fields(cfg)
    assert all(name in str(info.value) for name in fields), str(info.value)


@pytest.mark.parametrize("config_name", PRIMARY)
def test_help_template_lists_the_defaults_groups_only(config_name):
    cfg, text = _compose(config_name, ["hydra/help=unio"])
    used = {str(g) for g in cfg.hydra.runtime.choices if not str(g).startswith("hydra/")}
    listed = set()
    if "== Config groups" in text:
        section = text.split("== Config groups", 1)[1].split("== Config (", 1)[0]
        listed = {line.split(":")[0].strip() for line in section.splitlines() if line.startswith("  ")}
    assert listed == used
    assert "$CONFIG" in text and OmegaConf.is_config(cfg)
