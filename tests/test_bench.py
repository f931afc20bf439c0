"""The benchmark still runs (it asserts nothing about speed)."""

import subprocess
import sys

from .procs import ROOT, env


def test_bench_relay_quick_run_prints_its_table():
    result = subprocess.run([sys.executable, "bench/relay_bench.py", "--quick", "--sizes", "1000"],
                            cwd=ROOT, env=env(), capture_output=True, timeout=120)
    out = result.stdout.decode()
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert "registrations/s" in out and "introductions" in out and "ratio" in out


def test_bench_forward_quick_run_prints_its_table():
    result = subprocess.run([sys.executable, "bench/forward_bench.py", "--quick"],
                            cwd=ROOT, env=env(), capture_output=True, timeout=120)
    out = result.stdout.decode()
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert "through the relay" in out and "direct (baseline)" in out and "relay/direct" in out
