"""Conformance: the backends' own test suites, plain and under safeproc.install().

``python conformance/run.py all [--suites ...] [--methods ...] [--out DIR]``
runs, for each suite (CPython's ``test._test_multiprocessing``, and
``multiprocess.tests``) and start method, the "processes" variant twice in
fresh interpreters: plain, and with :func:`safeproc.install` called first.
It compares the sets of passing tests. A test that passes plain and fails
installed is re-run alone (plain and installed, up to three times) to tell a
flaky test from a real difference; a real one fails the run. Each run's
outcomes go to ``DIR/<python>-<suite>-<method>-<mode>.json`` and a summary
table is printed (the rows of ``docs/conformance.rst``).

``python conformance/run.py one --suite S --method M [--install] --out F
[--only TEST_ID ...]`` is one such run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path
from typing import Any, TextIO

HERE = Path(__file__).resolve().parent
SUITES = ("cpython", "multiprocess")
METHODS = ("fork", "forkserver", "spawn")
PASSED = ("pass", "xfail")
#: Seconds one whole suite run may take before it counts as hung.
RUN_TIMEOUT = 1800
RETRIES = 3


class RecordingResult(unittest.TextTestResult):
    """A text result that also records each test's outcome by id."""

    def __init__(self, stream: TextIO, descriptions: bool, verbosity: int) -> None:  # noqa: FBT001
        """Start with no outcomes."""
        super().__init__(stream, descriptions, verbosity)  # type: ignore[arg-type]
        self.outcomes: dict[str, str] = {}

    def addSuccess(self, test: unittest.TestCase) -> None:  # noqa: N802 - unittest API
        """Record a pass."""
        super().addSuccess(test)
        self.outcomes.setdefault(test.id(), "pass")

    def addFailure(self, test: unittest.TestCase, err: Any) -> None:  # noqa: N802, ANN401
        """Record a failure."""
        super().addFailure(test, err)
        self.outcomes[test.id()] = "fail"

    def addError(self, test: unittest.TestCase, err: Any) -> None:  # noqa: N802, ANN401
        """Record an error (setUpModule/setUpClass errors have their own ids)."""
        super().addError(test, err)
        self.outcomes[test.id()] = "error"

    def addSkip(self, test: unittest.TestCase, reason: str) -> None:  # noqa: N802
        """Record a skip."""
        super().addSkip(test, reason)
        self.outcomes[test.id()] = "skip"

    def addExpectedFailure(self, test: unittest.TestCase, err: Any) -> None:  # noqa: N802, ANN401
        """Record an expected failure (counts as passing)."""
        super().addExpectedFailure(test, err)
        self.outcomes[test.id()] = "xfail"

    def addUnexpectedSuccess(self, test: unittest.TestCase) -> None:  # noqa: N802
        """Record an unexpected success (counts as failing)."""
        super().addUnexpectedSuccess(test)
        self.outcomes[test.id()] = "fail"

    def addSubTest(self, test: Any, subtest: Any, err: Any) -> None:  # noqa: N802, ANN401
        """Fail the whole test when a subtest fails."""
        super().addSubTest(test, subtest, err)
        if err is not None:
            self.outcomes[test.id()] = "fail"


def run_one(args: argparse.Namespace) -> int:
    """Run one suite variant in this interpreter; write its outcomes."""
    if args.install:
        import safeproc  # noqa: PLC0415 - only in the installed runs

        safeproc.install()
    sys.path.insert(0, str(HERE))
    import conformance_suite as suite  # noqa: PLC0415 - reads the environment run_all sets

    loader = unittest.TestLoader()
    tests = loader.loadTestsFromNames(args.only) if args.only else loader.loadTestsFromModule(suite)
    runner = unittest.TextTestRunner(stream=sys.stderr, verbosity=1, resultclass=RecordingResult)
    started = time.monotonic()
    result = runner.run(tests)
    if not isinstance(result, RecordingResult):  # pragma: no cover - resultclass above
        raise TypeError(result)
    if args.install:
        # The suite must not have undone the patch it is meant to exercise.
        import multiprocessing.process  # noqa: PLC0415

        bootstrap = multiprocessing.process.BaseProcess._bootstrap  # type: ignore[attr-defined]
        if not getattr(bootstrap, "_safeproc_install_wrapper", False):
            print("!! safeproc.install() was undone during the run", file=sys.stderr)
            return 1
    record = {
        "python": platform.python_version(),
        "suite": suite.SUITE,
        "method": suite.METHOD,
        "installed": bool(args.install),
        "seconds": round(time.monotonic() - started, 1),
        "outcomes": result.outcomes,
    }
    Path(args.out).write_text(json.dumps(record, indent=1, sort_keys=True))
    return 0


def _run_variant(
    suite: str, method: str, *, install: bool, out: Path, only: list[str] | None = None
) -> dict[str, Any]:
    env = dict(os.environ)
    env["SAFEPROC_CONFORMANCE_SUITE"] = suite
    env["SAFEPROC_CONFORMANCE_METHOD"] = method
    env["PYTHONFAULTHANDLER"] = "1"
    if suite == "multiprocess" and not _has_subtests():
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(HERE / "compat"), env.get("PYTHONPATH")])
        )
    command = [sys.executable, str(Path(__file__).resolve()), "one", "--out", str(out)]
    if install:
        command.append("--install")
    if only:
        command += ["--only", *only]
    out.unlink(missing_ok=True)
    try:
        subprocess.run(
            command,
            env=env,
            timeout=RUN_TIMEOUT,
            check=False,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL if only else None,
            stderr=subprocess.DEVNULL if only else None,
        )
    except subprocess.TimeoutExpired:
        print(f"!! {suite}/{method} install={install} hung for {RUN_TIMEOUT}s", flush=True)
    if not out.exists():
        return {"outcomes": {}, "seconds": None, "crashed": True}
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def _has_subtests() -> bool:
    from test import support  # noqa: PLC0415 - only for the multiprocess suite

    return hasattr(support, "subTests")


def _passing(outcomes: dict[str, str]) -> set[str]:
    return {test for test, outcome in outcomes.items() if outcome in PASSED}


def _counts(outcomes: dict[str, str]) -> tuple[int, int, int, int]:
    """Return (tests, passed, skipped, failed), counted as unittest does."""
    values = list(outcomes.values())
    passed = sum(v in PASSED for v in values)
    skipped = values.count("skip")
    return len(values), passed, skipped, len(values) - passed - skipped


def _confirm(suite: str, method: str, test_id: str, scratch: Path) -> bool:
    """Tell whether *test_id* really passes plain and fails installed."""
    for _ in range(RETRIES):
        installed = _run_variant(suite, method, install=True, out=scratch, only=[test_id])
        if installed["outcomes"].get(test_id) in PASSED:
            return False
    plain = _run_variant(suite, method, install=False, out=scratch, only=[test_id])
    return plain["outcomes"].get(test_id) in PASSED


def run_all(args: argparse.Namespace) -> int:
    """Run every requested variant plain and installed; compare; summarise."""
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    version = platform.python_version()
    rows: list[str] = []
    regressions: list[str] = []
    for suite in args.suites:
        for method in args.methods:
            results = {}
            for install in (False, True):
                mode = "installed" if install else "plain"
                print(f"== Python {version} {suite} {method} {mode}", flush=True)
                out = out_dir / f"{version}-{suite}-{method}-{mode}.json"
                results[mode] = _run_variant(suite, method, install=install, out=out)
            plain, installed = results["plain"]["outcomes"], results["installed"]["outcomes"]
            lost = sorted(_passing(plain) - _passing(installed))
            gained = sorted(_passing(installed) - _passing(plain))
            confirmed = [t for t in lost if _confirm(suite, method, t, out_dir / "retry.json")]
            flaky = sorted(set(lost) - set(confirmed))
            regressions += [f"{suite}/{method}: {t}" for t in confirmed]
            for mode in ("plain", "installed"):
                if results[mode].get("crashed") or not results[mode]["outcomes"]:
                    regressions.append(f"{suite}/{method}: the {mode} run crashed or hung")
            for mode, outcomes in (("plain", plain), ("installed", installed)):
                run, passed, skipped, failed = _counts(outcomes)
                seconds = results[mode].get("seconds")
                rows.append(
                    f"{version}\t{suite}\t{method}\t{mode}\t{run}\t{passed}\t{skipped}"
                    f"\t{failed}\t{seconds}"
                )
            print(
                f"== {suite} {method}: lost {len(lost)} (confirmed {len(confirmed)},"
                f" flaky {flaky}), gained {gained}",
                flush=True,
            )
    (out_dir / "retry.json").unlink(missing_ok=True)
    print("\npython\tsuite\tmethod\tmode\ttests\tpassed\tskipped\tfailed\tseconds")
    print("\n".join(rows))
    if regressions:
        print("\nPassing plain, failing under safeproc.install() (or no result):")
        print("\n".join(regressions))
        return 1
    print("\nSame passing tests with and without safeproc.install().")
    return 0


def rst_table(args: argparse.Namespace) -> int:
    """Print the results found under the given directories as a reST table."""
    cells: dict[tuple[str, str, str], dict[str, dict[str, Any]]] = {}
    for directory in args.dirs:
        for path in sorted(Path(directory).glob("*-*-*-*.json")):
            data = json.loads(path.read_text())
            key = (data["python"], data["suite"], data["method"])
            cells.setdefault(key, {})["installed" if data["installed"] else "plain"] = data

    def order(key: tuple[str, str, str]) -> tuple[Any, ...]:
        version = tuple(int(x) for x in key[0].split("."))
        return (version, SUITES.index(key[1]), METHODS.index(key[2]))

    header = ["Python", "suite", "method", "tests", "passed plain", "passed installed"]
    header += ["skipped", "seconds plain / installed"]
    rows = [header]
    for key in sorted(cells, key=order):
        empty: dict[str, Any] = {"outcomes": {}, "seconds": None}
        plain = cells[key].get("plain", empty)
        installed = cells[key].get("installed", empty)
        run, passed, skipped, _ = _counts(plain["outcomes"])
        run_i, passed_i, skipped_i, _ = _counts(installed["outcomes"])
        rows.append(
            [
                *key,
                str(run) if run == run_i else f"{run} / {run_i}",
                str(passed),
                str(passed_i),
                str(skipped) if skipped == skipped_i else f"{skipped} / {skipped_i}",
                f"{plain['seconds']} / {installed['seconds']}",
            ]
        )
    lines = [".. list-table::", "   :header-rows: 1", ""]
    for row in rows:
        lines.append(f"   * - {row[0]}")
        lines.extend(f"     - {cell}" for cell in row[1:])
    print("\n".join(lines))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("one", help="one run, in this interpreter")
    one.add_argument("--install", action="store_true")
    one.add_argument("--out", required=True)
    one.add_argument("--only", nargs="+")
    every = commands.add_parser("all", help="every variant, plain and installed, compared")
    every.add_argument("--suites", nargs="+", choices=SUITES, default=list(SUITES))
    every.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    every.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "safeproc-conformance"))
    table = commands.add_parser("table", help="results as a reST table (docs/conformance.rst)")
    table.add_argument("dirs", nargs="+")
    args = parser.parse_args(argv)
    if args.command == "one":
        return run_one(args)
    if args.command == "table":
        return rst_table(args)
    return run_all(args)


if __name__ == "__main__":
    sys.exit(main())
