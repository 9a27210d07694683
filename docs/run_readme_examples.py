"""Run the README's Python examples (the docs session calls this).

Each fenced ``python`` block of README.md is written to a file and run as a
program in a fresh interpreter, under every start method, with both
backends' start method set first. The seed program (the block that
defines ``Foo``) must print exactly ``call foo`` then ``del``; every block
must exit 0 with nothing on stderr.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
METHODS = ("fork", "forkserver", "spawn")

RUNNER = """\
import runpy, sys
import multiprocess, multiprocessing
path, method = sys.argv[1], sys.argv[2]
multiprocessing.set_start_method(method)
multiprocess.set_start_method(method)
runpy.run_path(path, init_globals={"work": lambda: None}, run_name="__main__")
"""


def main() -> int:
    """Run every block; return the number of failures."""
    blocks = re.findall(
        r"^```python\n(.*?)^```", README.read_text(), flags=re.MULTILINE | re.DOTALL
    )
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        for number, block in enumerate(blocks, 1):
            path = Path(tmp) / f"readme_example_{number}.py"
            path.write_text(block)
            expected = "call foo\ndel\n" if "class Foo" in block else None
            for method in METHODS:
                run = subprocess.run(  # noqa: S603 - our interpreter, our file
                    [sys.executable, "-c", RUNNER, str(path), method],
                    cwd=tmp,
                    capture_output=True,
                    text=True,
                    timeout=120,
                    check=False,
                )
                ok = run.returncode == 0 and not run.stderr
                if expected is not None:
                    ok = ok and run.stdout == expected
                status = "ok" if ok else "FAILED"
                sys.stdout.write(f"README example {number} ({method}): {status}\n")
                if not ok:
                    failures += 1
                    sys.stdout.write(f"exit code {run.returncode}\n--- stdout\n{run.stdout}")
                    sys.stdout.write(f"--- stderr\n{run.stderr}")
    if not blocks:
        sys.stdout.write("README.md has no python examples\n")
        return 1
    return failures


if __name__ == "__main__":
    sys.exit(1 if main() else 0)
