"""The CLI's start-up: `nb201-harness --help` must answer in under 1 s (issue 17), so nothing heavy is imported
before the arguments are parsed. Measured in a fresh interpreter, as a user runs it."""
import subprocess
import sys
import time


def _help() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "harness.cli", "run", "--help"], capture_output=True, check=True)
    return time.perf_counter() - start


def test_cli_help_starts_fast(benchmark):
    seconds = benchmark.pedantic(_help, rounds=3, iterations=1)
    assert min(benchmark.stats.stats.data if benchmark.stats else [seconds]) < 1.0
