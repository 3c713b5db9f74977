"""The command-line contract every unio Hydra main follows: a user mistake prints ONE line, a bug prints
its traceback.

Adopt it in a script with one line under the Hydra main::

    @hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="pretokenize")
    def hydra_main(cfg): ...

    main = unio.cli.entry(hydra_main)  # console entry point (pyproject [project.scripts])

    if __name__ == "__main__":
        main()

What `entry` does around Hydra, in this order:

1. **Errors.** Hydra's own reporter (`hydra._internal.utils.run_and_report`) prints a trimmed traceback
   and exits 1 for every exception; `entry` sets `HYDRA_FULL_ERROR=1` for the run so Hydra re-raises
   instead, then sorts the exception by type (`is_user_error`):
   - user mistakes -> one line ``<prog>: error: <what is wrong> [-- <how to fix it>]`` on stderr, exit
     code 2: config composition and override errors (misspelled or mistyped override, unknown group
     option, ``+field=`` on a typed config), missing mandatory values, ``FileNotFoundError``,
     ``NotADirectoryError``, ``IsADirectoryError``, ``PermissionError``, ``FileExistsError``,
     ``ValueError`` (unio raises it, with a message naming file/field/value, for bad data and bad
     config values; omegaconf's ``ValidationError`` is one), and ``ModuleNotFoundError`` for an
     optional extra (`EXTRAS`: e.g. ``transformers`` -> ``pip install -e '.[bench]'``);
   - Ctrl-C -> ``<prog>: interrupted``, exit code 130;
   - anything else is a programming error (``TypeError``, ``AttributeError``, ``KeyError``,
     ``IndexError``, ``AssertionError``, ``RuntimeError``, ...): the full Python traceback, exit code 1.
   ``UNIO_VERBOSE=1`` or ``HYDRA_FULL_ERROR=1`` in the environment, or ``--verbose`` on the command
   line, shows the full traceback for user mistakes too. `HINTS` adds a fix to known messages (e.g.
   a missing tokenizer -> how to train one, or ``tiny_seed=0`` for a smoke run).
2. **Typed configs stay closed.** Hydra lets ``+key=value`` add a key even inside a structured
   (dataclass) config, where the script then silently ignores it. `entry` registers a Hydra callback
   (`RefuseAddedFields`, added to ``hydra.callbacks`` by an override) that refuses, before the
   run starts (nothing written yet), every ``+`` override that added a field a dataclass does not declare, listing the
   fields it does declare. ``+`` into a free-form dict (e.g. ``+data.shapes.tasks.caption={}``) and
   ``+group=option`` stay allowed.
3. **Help.** ``--help`` lists only the config groups the main's defaults list uses (from
   ``hydra.runtime.choices``, with the current choice), the script's docstring and the composed config
   (``hydra/help=unio``, unless the command line picks another ``hydra/help``), instead of every group
   under conf/.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.errors import CompactHydraException, InstantiationException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

USER_ERROR_EXIT = 2
VERBOSE_ENV = ("UNIO_VERBOSE", "HYDRA_FULL_ERROR")
VERBOSE_FLAG = "--verbose"
CALLBACK_KEY = "unio_refuse_added_fields"  # its key under hydra.callbacks (added to, never replacing, others)

# Optional dependencies (pyproject [project.optional-dependencies]): top-level module -> extra.
EXTRAS = {"transformers": "bench", "easy_vqa": "dev"}

# (regex on the one-line message, how to fix it). Keep each hint short: it is appended to the line.
HINTS: list[tuple[str, str]] = [
    (
        r"not a saved tokenizer directory",
        "point it at the tokenizer/ folder written by `unio-train-tokenizer` "
        "(<train.out_dir>/tokenizer), or use tiny_seed=0 instead of a path for a smoke run",
    ),
    (
        r"(folder|directory) not found|No such file or directory",
        "check the path (conf/data and conf/tokenizer_data build paths from data_root: set data_root=... "
        "or the UNIO_DATA environment variable)",
    ),
]

_USER_ERROR_TYPES: tuple[type[BaseException], ...] = (
    FileNotFoundError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
    FileExistsError,
    ValueError,  # includes omegaconf's ValidationError and InterpolationResolutionError
    MissingMandatoryValue,
)
# Lines of omegaconf/Hydra messages that only repeat context already in the first line.
_NOISE = re.compile(r"^\s*(full_key:|reference_type=|object_type=|To append to your config use)")


# ------------------------------------------------------------------------------ classification
def is_user_error(exc: BaseException) -> bool:
    """True for mistakes in the command line, the config or the input data (see module docstring)."""
    if isinstance(exc, InstantiationException):
        return False  # a `_target_` that fails to build is code, not a user mistake
    if isinstance(exc, (CompactHydraException, *_USER_ERROR_TYPES)):
        return True
    return isinstance(exc, ModuleNotFoundError) and _root_module(exc) in EXTRAS


def _root_module(exc: ModuleNotFoundError) -> str:
    return (exc.name or "").split(".")[0]


def one_line(text: str) -> str:
    """Collapse a multi-line message into one line: drop omegaconf's context lines, join the rest with
    '; ', and a list under a 'header:' line with ', '."""
    parts: list[str] = []
    in_list = False
    for raw in str(text).splitlines():
        line = raw.strip()
        if line.startswith("Config search path"):
            break  # Hydra's search path listing: always the same, never the problem
        if not line or _NOISE.match(raw):
            continue
        if parts and parts[-1].endswith(":"):
            parts[-1] += " " + line
            in_list = raw[:1].isspace() or in_list
        elif in_list and raw[:1].isspace():
            parts[-1] += ", " + line
        else:
            parts.append(line)
            in_list = False
    return "; ".join(parts)


def describe(exc: BaseException) -> str:
    """The one-line message for a user error, with a fix from `EXTRAS`/`HINTS` when one is known."""
    if isinstance(exc, ModuleNotFoundError):
        extra = EXTRAS[_root_module(exc)]
        return f"missing optional dependency {exc.name!r}: install the {extra} extra: pip install -e '.[{extra}]'"
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        message = f"{exc.strerror}: {exc.filename}"  # from open() & co: "No such file or directory: x"
    else:
        message = one_line(str(exc))
    cause = exc.__cause__
    if isinstance(exc, CompactHydraException) and isinstance(cause, OmegaConfBaseException):
        message = f"{message.rstrip('.')}: {_describe_config_error(cause)}"
    if not message:
        message = type(exc).__name__
    for pattern, hint in HINTS:
        if re.search(pattern, message):
            message += f" -- {hint}"
            break
    return message


def _describe_config_error(exc: OmegaConfBaseException) -> str:
    """omegaconf's error, plus the fields the node does have when a key is unknown."""
    message = one_line(exc.msg if getattr(exc, "msg", None) else str(exc))
    key = getattr(exc, "key", None)
    parent = getattr(exc, "parent_node", None)
    if isinstance(exc, KeyError | AttributeError) and isinstance(parent, DictConfig):
        known = _known_fields(parent)
        if key is not None and known:
            message += _known_suffix(str(key), known)
    return message


def _known_fields(node: DictConfig) -> list[str]:
    kind = OmegaConf.get_type(node)
    if kind is not None and dataclasses.is_dataclass(kind):
        return [f.name for f in dataclasses.fields(kind)]
    return [str(k) for k in node]


def _known_suffix(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
    guess = f"did you mean {close[0]!r}? " if close else ""
    return f"; {guess}known fields: {', '.join(known)}"


# ------------------------------------------------------------------------------ typed configs
def refuse_added_fields(cfg: DictConfig) -> None:
    """Raise ValueError if a ``+key=value`` override of ``cfg.hydra.overrides.task`` added a key to a
    structured (dataclass) node that does not declare it. Call on a config composed with
    ``return_hydra_config=True``; Hydra calls it through `RefuseAddedFields` before each job."""
    for override in cfg.hydra.overrides.task:
        override = str(override)
        if not override.startswith("+") or override.startswith("++") or "=" not in override:
            continue
        key = override[1:].split("=", 1)[0]
        if "/" in key or "@" in key:
            continue  # +group=option, +group@package=option: config groups, not fields
        parent_key, _, name = key.rpartition(".")
        parent = OmegaConf.select(cfg, parent_key, throw_on_missing=False) if parent_key else cfg
        if not isinstance(parent, DictConfig) or name not in parent:
            continue  # a +group=option whose package is elsewhere, or a group with a dotted name
        kind = OmegaConf.get_type(parent)
        if kind is None or not dataclasses.is_dataclass(kind):
            continue  # a free-form dict: adding keys is what `+` is for
        fields = [f.name for f in dataclasses.fields(kind)]
        if name not in fields:
            where = parent_key or "the config"
            raise ValueError(
                f"override {override!r}: {where} ({kind.__name__}) has no field {name!r}; '+' cannot add "
                f"fields to a typed config{_known_suffix(name, fields)}"
            )


class AddedFieldRefused(SystemExit):
    """Raised from the Hydra callback. Hydra's callback runner swallows every `Exception` (it only
    warns), so the refusal travels as a SystemExit: `entry` prints it as a user error (exit code 2);
    without `entry`, Python prints the message and exits 1."""


class RefuseAddedFields(Callback):
    """Hydra callback (``hydra.callbacks``): `refuse_added_fields` before the run (so nothing is
    written) and before each job (multirun)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config)

    @staticmethod
    def _check(config: DictConfig) -> None:
        try:
            refuse_added_fields(config)
        except ValueError as exc:
            raise AddedFieldRefused(str(exc)) from None


# ------------------------------------------------------------------------------ help
_DOC: dict[str, str] = {}  # set by `entry`: the script's docstring, shown by --help


def _group_options(loader: Any, group: str) -> list[str]:
    from hydra.core.object_type import ObjectType

    options = sorted(loader.get_group_options(group, ObjectType.CONFIG))
    for sub in sorted(loader.get_group_options(group, ObjectType.GROUP)):
        options += [f"{sub}/{o}" for o in _group_options(loader, f"{group}/{sub}")]
    return options


def help_text(*, _root_: DictConfig) -> str:
    """The ``--help`` template (OmegaConf resolver ``unio.help``): docstring, the groups this main's
    defaults list uses, then Hydra's ``$CONFIG``."""
    from hydra.core.global_hydra import GlobalHydra

    choices = _root_.hydra.runtime.choices
    groups = sorted(str(g) for g in choices if not str(g).startswith("hydra/"))
    lines = [_DOC.get("doc", "").strip().replace("$", "$$"), ""]
    if groups:
        loader = GlobalHydra.instance().config_loader()
        lines.append("== Config groups (group=option) ==")
        for group in groups:
            options = ", ".join(_group_options(loader, group))
            choice = choices[group] if choices[group] is not None else "none"
            lines.append(f"  {group}: {options}   (now: {choice})")
        lines.append("")
    lines += [
        "== Config (override any field: key=value; '+key=value' only adds keys to free-form dicts) ==",
        "$CONFIG",
        "A mistake in the command line, the config or the data prints one line and exits with code 2;",
        "set UNIO_VERBOSE=1 (or HYDRA_FULL_ERROR=1, or pass --verbose) for the full traceback.",
        "Hydra's own options: --hydra-help",
    ]
    return "\n".join(lines)


def _register() -> None:
    if not OmegaConf.has_resolver("unio.help"):
        OmegaConf.register_new_resolver("unio.help", help_text)
    ConfigStore.instance().store(
        group="hydra/help",
        name="unio",
        node={"app_name": "${hydra.job.name}", "header": "", "footer": "", "template": "${unio.help:}"},
        package="hydra.help",
    )


_register()


# ------------------------------------------------------------------------------ entry
def _verbose(argv: list[str]) -> bool:
    env = any(os.environ.get(name, "").strip() not in ("", "0", "false", "False") for name in VERBOSE_ENV)
    return env or VERBOSE_FLAG in argv[1:]


class _HeldStderr:
    """sys.stderr during the run, holding back the line Hydra writes before re-raising a job's exception
    ("Error executing job with overrides: [...]"): dropped for a user error, which gets one line."""

    PREFIX = "Error executing job with overrides:"

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.held: list[str] = []

    def write(self, text: str) -> int:
        if text.startswith(self.PREFIX):
            self.held.append(text)
            return len(text)
        return self._stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextlib.contextmanager
def _hydra_reraises(argv: list[str]) -> Iterator[_HeldStderr]:
    """For the duration of the run: Hydra re-raises exceptions (HYDRA_FULL_ERROR=1), sys.argv adds
    `RefuseAddedFields` to hydra.callbacks and selects unio's help (unless the command line picks another
    hydra/help), and stderr holds back Hydra's job line."""
    saved_env, saved_argv, saved_stderr = os.environ.get("HYDRA_FULL_ERROR"), sys.argv, sys.stderr
    extra = [f"+hydra.callbacks.{CALLBACK_KEY}={{_target_:{__name__}.RefuseAddedFields}}"]
    if not any(a.startswith(("hydra/help=", "+hydra/help=")) for a in argv[1:]):
        extra.append("hydra/help=unio")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    sys.argv = [argv[0], *(a for a in argv[1:] if a != VERBOSE_FLAG), *extra]
    sys.stderr = held = _HeldStderr(saved_stderr)
    try:
        yield held
    finally:
        sys.argv, sys.stderr = saved_argv, saved_stderr
        if saved_env is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = saved_env


def entry(hydra_main: Callable[[], Any]) -> Callable[[], None]:
    """Wrap a ``@hydra.main``-decorated function into a console entry point (see module docstring)."""
    module = sys.modules.get(getattr(hydra_main, "__module__", ""), None)

    @functools.wraps(hydra_main)
    def main() -> None:
        argv = list(sys.argv)
        prog = Path(argv[0]).name if argv else "unio"
        verbose = _verbose(argv)
        _DOC["doc"] = (module.__doc__ or "") if module is not None else ""
        held = None
        try:
            with _hydra_reraises(argv) as held:
                hydra_main()
        except AddedFieldRefused as exc:
            print(f"{prog}: error: {exc.code}", file=sys.stderr)
            sys.exit(USER_ERROR_EXIT)
        except KeyboardInterrupt:
            if verbose:
                raise
            print(f"{prog}: interrupted", file=sys.stderr)
            sys.exit(130)
        except Exception as exc:
            if verbose or not is_user_error(exc):
                sys.stderr.write("".join(held.held if held else []))
                raise
            print(f"{prog}: error: {describe(exc)}", file=sys.stderr)
            sys.exit(USER_ERROR_EXIT)

    return main
