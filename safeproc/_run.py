"""``python -m safeproc run``: a program, exactly as ``python`` runs it, installed.

``python -m safeproc run [--cleanup SPEC] [--report] script.py [args...]``
and ``python -m safeproc run [--cleanup SPEC] [--report] -m module [args...]``
call :func:`safeproc.install` (``--report``: with ``report=True``, and a
summary of the children's reports at exit, see :mod:`safeproc._run_report`)
and then do what the interpreter does for ``python script.py`` /
``python -m module``:

- ``sys.argv`` is ``["script.py", *args]`` (``[<module file>, *args]``);
- ``sys.path[0]`` is the script's directory (the current one for ``-m``),
  unless ``-I``/``-P`` keep it out;
- the code runs in a fresh module that *stays* ``sys.modules["__main__"]``
  (``runpy.run_path`` would restore the launcher's afterwards), with the
  dunders the interpreter gives it, so spawned children import it as their
  ``__mp_main__`` and atexit handlers see it;
- an uncaught exception is printed without the launcher's frames, so the
  traceback is the plain one; exit codes (``SystemExit``, 1, ``SIGINT``)
  come from the interpreter itself.
"""

from __future__ import annotations

import builtins
import importlib.machinery
import os
import runpy
import sys
import types

from safeproc import _install, _policy
from safeproc._install import install
from safeproc._policy import CleanupPolicy

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

__all__ = ["USAGE", "parse_cleanup", "run_command"]

PROG = "python -m safeproc run"
USAGE = (
    f"usage: {PROG} [-h] [--cleanup FIELD=VALUE[,...]] [--report] "
    "(script.py | -m module) [args ...]"
)

_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def _field_table() -> list[tuple[str, str, str]]:
    """(field, allowed values, default) of every :class:`CleanupPolicy` field.

    Read from the policy's own validation tables, so the help cannot drift
    from what the constructor accepts.
    """
    defaults = CleanupPolicy().as_dict()
    rows = []
    for name in CleanupPolicy.FIELDS:
        default = defaults[name]
        if name in _policy._BOOL_FIELDS:
            allowed, shown = "true or false", str(default).lower()
        elif name in _policy._CHOICES:
            allowed, shown = ", ".join(_policy._CHOICES[name]), str(default)
        else:  # timeout
            allowed, shown = "seconds (> 0) or none", "none" if default is None else f"{default:g}"
        rows.append((name, allowed, shown))
    return rows


def help_text() -> str:
    """Return the text of ``python -m safeproc run --help``."""
    fields = "\n".join(
        f"  {name:<12}{allowed:<34}default: {default}" for name, allowed, default in _field_table()
    )
    return f"""{USAGE}

Run a Python program exactly as "python script.py args" or "python -m module
args" would (same sys.argv, sys.path, __main__, traceback and exit status),
with safeproc.install() done first: every child that multiprocessing or
multiprocess starts in it exits as if it were its own program.

options:
  -h, --help            show this help message and exit
  --cleanup FIELD=VALUE[,...]
                        the cleanup policy of the program's children, as
                        comma-separated pairs (repeatable), for example
                        --cleanup timeout=5,stdio=flush; the fields are below
  --report              at the program's exit, print to stderr what each
                        child cleaned up: atexit handlers, finalizers, objects
                        collected, log handlers and files flushed, errors, the
                        slowest step (turns on report=true)
  -m module             run a library module as a script (ends the options)

cleanup fields (see safeproc.CleanupPolicy):
{fields}
  Booleans also take yes/no, on/off and 1/0.

Options go before the script or -m module: everything after belongs to the
program. Interpreter options (-X dev, -W error) go before "-m safeproc".
"""


class UsageError(Exception):
    """A bad command line: reported as argparse does, exit status 2."""


def parse_cleanup(specs: Sequence[str]) -> CleanupPolicy:
    """Build a policy from ``FIELD=VALUE[,FIELD=VALUE...]`` strings.

    :raises ValueError: a pair is malformed or a value is not allowed,
        naming the field and the allowed values.
    :raises TypeError: a field is unknown (from :class:`CleanupPolicy`).
    """
    values: dict[str, Any] = {}
    for spec in specs:
        for item in filter(None, (part.strip() for part in spec.split(","))):
            name, sep, text = item.partition("=")
            name = name.strip()
            if not sep or not name:
                msg = f"--cleanup expects FIELD=VALUE pairs, got {item!r}"
                raise ValueError(msg)
            values[name] = _field_value(name, text.strip())
    return CleanupPolicy(**values)


def _field_value(name: str, text: str) -> object:
    lowered = text.lower()
    if name in _policy._BOOL_FIELDS:
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        msg = f"CleanupPolicy.{name} must be true or false (yes/no, on/off, 1/0); got {text!r}"
        raise ValueError(msg)
    if name == "timeout":
        if lowered == "none":
            return None
        try:
            return float(text)
        except ValueError:
            msg = f"CleanupPolicy.timeout must be a number of seconds or none; got {text!r}"
            raise ValueError(msg) from None
    return text  # stdio, sigterm (validated by CleanupPolicy), or unknown


class _CommandLine:
    """What ``run`` was given: its options, and the program's command line."""

    __slots__ = ("module", "program_argv", "report", "specs")

    def __init__(self) -> None:
        self.specs: list[str] = []
        self.report = False
        self.module: str | None = None
        self.program_argv: list[str] = []


def _parse(argv: Sequence[str]) -> _CommandLine:
    """Split the command line into run's options and the program's.

    Options end at the script, at ``-m module`` or at ``--``: everything
    after them is the program's, as with ``python``.
    """
    parsed = _CommandLine()
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg in ("-h", "--help"):
            sys.stdout.write(help_text())
            raise SystemExit(0)
        if arg == "--cleanup" or arg.startswith("--cleanup="):
            parsed.specs.append(_option_value(arg, "--cleanup", args))
        elif arg == "--report":
            parsed.report = True
        elif arg.startswith("-m"):
            parsed.module = _option_value(arg, "-m", args)
            parsed.program_argv = args
            return parsed
        elif arg == "--":
            break
        elif arg.startswith("-") and arg != "-":
            msg = f"unrecognized option {arg!r} (options go before the script or -m)"
            raise UsageError(msg)
        else:
            parsed.program_argv = [arg, *args]
            return parsed
    if not args:
        msg = "a script or -m module is required"
        raise UsageError(msg)
    parsed.program_argv = args
    return parsed


def _option_value(arg: str, option: str, rest: list[str]) -> str:
    """Return the value of *option* given as *arg*: attached, or next in *rest*."""
    if arg != option:
        return arg[len(option) :].removeprefix("=") if option != "-m" else arg[2:]
    if not rest:
        msg = f"argument {option}: expected one argument"
        raise UsageError(msg)
    return rest.pop(0)


def run_command(argv: Sequence[str]) -> int:
    """Run ``python -m safeproc run`` with *argv* (what follows ``run``)."""
    try:
        parsed = _parse(argv)
    except UsageError as exc:
        return _usage_error(str(exc))
    try:
        policy = parse_cleanup(parsed.specs) if parsed.specs else None
    except (ValueError, TypeError) as exc:
        return _usage_error(f"argument --cleanup: {exc}")
    if parsed.report or (policy is not None and policy.report):
        from safeproc._run_report import collect_reports  # noqa: PLC0415 - --report only

        policy = (policy or CleanupPolicy()).replace(report=True)
        _install.report_dir = collect_reports()
    install(policy)
    if parsed.module is not None:
        return run_module(parsed.module, parsed.program_argv)
    return run_script(parsed.program_argv)


def _usage_error(message: str) -> int:
    """Report a bad command line as argparse does: run's usage, the error, status 2."""
    sys.stderr.write(f"{USAGE}\n{PROG}: error: {message}\n")
    return 2


def run_module(module: str, args: Sequence[str]) -> int:
    """Run *module* as ``python -m module args...`` does; return 0."""
    sys.argv[:] = ["-m", *args]
    _fresh_main()
    _call_hiding_launcher(runpy._run_module_as_main, module, True)  # type: ignore[attr-defined]
    return 0


def run_script(argv: Sequence[str]) -> int:
    """Run ``argv[0]`` as ``python argv[0] argv[1:]...`` does; return its status."""
    path = argv[0]
    sys.argv[:] = list(argv)
    isolated = sys.flags.isolated or getattr(sys.flags, "safe_path", False)
    if os.path.isdir(path) or _is_zipfile(path):
        # A directory or zip archive with a __main__.py: runpy, as python does.
        # python puts the archive itself first on sys.path, even under -I.
        if isolated:
            sys.path.insert(0, os.path.abspath(path))
        else:
            sys.path[0] = os.path.abspath(path)
        _fresh_main()
        _call_hiding_launcher(runpy._run_module_as_main, "__main__", False)  # type: ignore[attr-defined]
        return 0
    full_path = os.path.abspath(path)
    try:
        with open(full_path, "rb") as f:
            source = f.read()
    except OSError as exc:
        program = (getattr(sys, "orig_argv", None) or [sys.executable])[0]
        sys.stderr.write(
            f"{program}: can't open file {full_path!r}: [Errno {exc.errno}] {exc.strerror}\n"
        )
        return 2
    if not isolated:
        sys.path[0] = os.path.dirname(os.path.realpath(full_path))
    main = _fresh_main()
    main.__file__ = full_path
    if sys.version_info < (3, 15):
        main.__cached__ = None  # type: ignore[attr-defined]  # gone in 3.15
    main.__loader__ = importlib.machinery.SourceFileLoader("__main__", full_path)
    _call_hiding_launcher(_exec_main, source, full_path, main.__dict__)
    return 0


def _is_zipfile(path: str) -> bool:
    import zipfile  # noqa: PLC0415 - only for this rare case

    return os.path.isfile(path) and zipfile.is_zipfile(path)


def _fresh_main() -> types.ModuleType:
    """Make a new module ``sys.modules["__main__"]``, as at interpreter start."""
    main = types.ModuleType("__main__")
    if sys.version_info < (3, 14):
        # 3.14 (PEP 649) no longer gives __main__ an empty __annotations__.
        main.__annotations__ = {}
    main.__builtins__ = builtins  # type: ignore[attr-defined]
    sys.modules["__main__"] = main
    return main


def _exec_main(source: bytes, filename: str, namespace: dict[str, Any]) -> None:
    code = compile(source, filename, "exec", dont_inherit=True)
    exec(code, namespace)  # noqa: S102 - running the user's program is the point


def _call_hiding_launcher(function: Callable[..., object], *args: object) -> None:
    """Call *function*; if an exception escapes, print it without our frames."""
    try:
        function(*args)
    except SystemExit:
        raise
    except BaseException:
        sys.excepthook = _HideLauncherFrames(sys.excepthook)
        raise


class _HideLauncherFrames:
    """An excepthook that drops the frames from the interpreter to the program.

    ``python script.py`` shows the program's frames only; ``python -m module``
    also the two runpy frames that ``_run_module_as_main`` adds, which are the
    ones the program runs under here too.
    """

    def __init__(self, hook: Callable[..., object]) -> None:
        self.hook = hook

    def __call__(
        self,
        exc_type: type[BaseException],
        exc: BaseException,
        tb: types.TracebackType | None,
    ) -> None:
        program_tb = _program_frames(tb)
        if exc is not None and program_tb is not tb:
            exc.__traceback__ = program_tb
        sys.excepthook = self.hook
        self.hook(exc_type, exc, program_tb)


def _program_frames(tb: types.TracebackType | None) -> types.TracebackType | None:
    launcher = (_call_hiding_launcher.__code__, _exec_main.__code__)
    entry = tb
    while entry is not None and entry.tb_frame.f_code is not launcher[0]:
        entry = entry.tb_next
    if entry is None:
        return tb
    entry = entry.tb_next
    while entry is not None and entry.tb_frame.f_code in launcher:
        entry = entry.tb_next
    return entry
