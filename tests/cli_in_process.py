"""``synthbench ARGS`` run in the test's own process through typer's CliRunner.

For tests about what a command does rather than about its process: a fresh interpreter
importing torch costs seconds per call on a busy machine. The result reads like
`support.run_cli`'s (returncode, stdout, stderr), so a test can switch between the two. The
commands see the installation `support.activate` pointed this process at.
"""

from __future__ import annotations

import subprocess
import traceback

from typer.testing import CliRunner

from app.cli import cli


def invoke_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the command; an exception it raises ends it with status 1 and its traceback on
    stderr, as it would in its own process."""
    result = CliRunner().invoke(cli, list(args))
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        exc = result.exception
        stderr += "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return subprocess.CompletedProcess(
        ["synthbench", *args], result.exit_code, result.stdout, stderr
    )
