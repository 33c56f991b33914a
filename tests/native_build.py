"""Build a small native check program and run it (tests that guard C++/CUDA host logic without
the package's own build): one place for the compile, the exit codes and what a failure shows."""

import subprocess


def build_and_run(command, exe):
    """Compiles with `command` (the full compiler command line, writing `exe`), runs `exe` and
    returns its stdout; a failed build or run fails the test with the tail of its output."""
    build = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-4000:]
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-4000:]
    return run.stdout
