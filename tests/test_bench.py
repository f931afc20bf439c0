"""The benchmark still runs (it asserts nothing about speed)."""

import os
import re
import subprocess
import sys

import pytest

from .natlab import require_lab
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


def test_bench_flood_quick_run_prints_its_table_and_amplifies_nothing():
    # amplification is a byte count, not a timing: fair to assert; speeds are not asserted
    result = subprocess.run([sys.executable, "bench/flood_bench.py", "--seconds", "1", "--sources", "256"],
                            cwd=ROOT, env=env(), capture_output=True, timeout=120)
    out = result.stdout.decode()
    assert result.returncode == 0, (out + result.stderr.decode())[-3000:]
    assert "baseline (no flood)" in out and "during the flood" in out and "peak RSS" in out
    assert "relay log during the flood" in out
    sent = re.search(r"flooder sent (\d+) datagrams, (\d+) bytes", out)
    back = re.search(r"back to the flood's sources: (\d+) datagrams, (\d+) bytes", out)
    assert sent and back, out
    assert int(sent.group(1)) > 0
    assert int(back.group(2)) <= int(sent.group(2)), out
    assert float(re.search(r"amplification \(bytes back / bytes sent\): (\d+\.\d+)", out).group(1)) <= 1.0
    kinds = dict(re.findall(r"(\w+) (\d+\.\d+)", re.search(r"per kind .*", out).group(0)))
    assert set(kinds) >= {"stun", "relayed", "connect"} and float(kinds["relayed"]) == 0.0, out
    assert float(kinds["stun"]) <= 44 / 20, out      # within the STUN budget, never more than 2.2x


def test_bench_flood_bad_arguments_one_line_exit_2():
    result = subprocess.run([sys.executable, "bench/flood_bench.py", "--seconds", "0"],
                            cwd=ROOT, env=env(), capture_output=True, timeout=30)
    assert result.returncode == 2
    assert len(result.stderr.decode().strip().splitlines()) == 1


def test_bench_stream_quick_run_prints_its_table():
    result = subprocess.run([sys.executable, "bench/stream_bench.py", "--quick"],
                            cwd=ROOT, env=env(), capture_output=True, timeout=120)
    out = result.stdout.decode()
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert "64 KiB, 10 % loss" in out and "base MB/s" in out and "ratio" in out
    rows = [line for line in out.splitlines() if line.startswith(("chat", "64 KiB"))]
    assert len(rows) == 6 and all(line.split()[-3] == "0" for line in rows)   # none given up


def test_bench_chat_latency_quick_run_prints_its_table():
    result = subprocess.run([sys.executable, "bench/chat_latency_bench.py", "--quick", "--lines", "10"],
                            cwd=ROOT, env=env(), capture_output=True, timeout=120)
    out = result.stdout.decode()
    assert result.returncode == 0, (out + result.stderr.decode())[-2000:]
    rows = re.findall(r"^(stream1|DirectMessage), (\d+) % loss(?: \(baseline\))?\s+(\d+)\s+(\d+) ",
                      out, re.M)
    assert len(rows) in (2, 4) and "ratio stream1/baseline at 0 % loss" in out, out
    assert all(sent == "10" for _, _, sent, _ in rows), out
    assert all(shown == "10" for kind, _, _, shown in rows if kind == "stream1"), out   # none lost


@pytest.mark.natlab
@pytest.mark.timeout(300)
def test_bench_chat_latency_lab_run_prints_lab_and_loopback_rows():
    require_lab()
    result = subprocess.run([sys.executable, "bench/chat_latency_bench.py", "--lab", "--lines", "10"],
                            cwd=ROOT, env=env(), capture_output=True, timeout=280)
    out = result.stdout.decode()
    assert result.returncode == 0, (out + result.stderr.decode())[-2000:]
    rows = re.findall(r"^(lab|loopback) stream1, (\d+) % loss\s+(\d+)\s+(\d+) .*  (\w+), encrypted$",
                      out, re.M)
    assert sorted((place, loss) for place, loss, _, _, _ in rows) == [
        ("lab", "0"), ("lab", "10"), ("loopback", "0"), ("loopback", "10")], out
    assert all(sent == shown == "10" and path == "direct" for _, _, sent, shown, path in rows), out
    assert "ratio lab/loopback at 10 % loss" in out, out


def test_bench_file_quick_run_prints_its_table():
    result = subprocess.run([sys.executable, "bench/file_bench.py", "--quick"],
                            cwd=ROOT, env=env(), capture_output=True, timeout=240)
    out = result.stdout.decode()
    assert result.returncode == 0, (out + result.stderr.decode())[-2000:]
    rows = re.findall(r"^loopback\s+(peerpunch|encrypted UDP ceiling|TCP copy)\s+(\d+)%.*  (.*)$",
                      out, re.M)
    kinds = sorted({kind for kind, _, _ in rows})
    assert kinds == ["TCP copy", "encrypted UDP ceiling", "peerpunch"], out
    assert all("byte-identical" in note for kind, _, note in rows if kind != "encrypted UDP ceiling")
    assert "ratio loopback peerpunch at 0 % loss" in out and "magic-wormhole" in out, out


def test_bench_file_bad_arguments_one_line_exit_2():
    result = subprocess.run([sys.executable, "bench/file_bench.py", "--size", "0"],
                            cwd=ROOT, env=env(), capture_output=True, timeout=30)
    assert result.returncode == 2
    assert len(result.stderr.decode().strip().splitlines()) == 1


def test_bench_file_wormhole_venv_without_wormhole_one_line_exit_2(tmp_path):
    result = subprocess.run([sys.executable, "bench/file_bench.py", "--quick",
                             "--wormhole-venv", str(tmp_path)],
                            cwd=ROOT, env=env(), capture_output=True, timeout=30)
    assert result.returncode == 2
    err = result.stderr.decode().strip().splitlines()
    assert len(err) == 1 and "bin/wormhole" in err[0], err


def test_bench_file_quick_run_with_wormhole_prints_its_rows_and_ratios():
    # magic-wormhole is never a dependency: only where a virtualenv of it is named
    venv = os.environ.get("PEERPUNCH_WORMHOLE_VENV", "")
    if not os.access(os.path.join(venv, "bin", "wormhole"), os.X_OK):
        pytest.skip("no magic-wormhole virtualenv (set PEERPUNCH_WORMHOLE_VENV)")
    result = subprocess.run([sys.executable, "bench/file_bench.py", "--quick", "--loss", "0",
                             "--wormhole-venv", venv],
                            cwd=ROOT, env=env(), capture_output=True, timeout=240)
    out = result.stdout.decode()
    assert result.returncode == 0, (out + result.stderr.decode())[-2000:]
    rows = re.findall(r"^loopback\s+(magic-wormhole(?: command)?)\s+0%\s+[\d.]+\s+[\d.]+  (.*)$",
                      out, re.M)
    assert sorted(kind for kind, _ in rows) == ["magic-wormhole", "magic-wormhole command"], out
    assert "byte-identical" in dict(rows)["magic-wormhole"], out
    assert re.search(r"ratio loopback peerpunch at 0 % loss: .*x magic-wormhole \(offer to written\)",
                     out), out
    assert re.search(r"magic-wormhole rows: magic-wormhole \d", out), out


def test_bench_core_quick_run_prints_its_table():
    result = subprocess.run([sys.executable, "bench/core_bench.py", "--quick"],
                            cwd=ROOT, env=env(), capture_output=True, timeout=120)
    out = result.stdout.decode()
    assert result.returncode == 0, (out + result.stderr.decode())[-2000:]
    rows = [line.split() for line in out.splitlines() if line.startswith(("alice", "bob"))]
    assert [r[0] for r in rows] == ["alice", "bob"]
    assert all(float(r[-3]) > 0 and float(r[-2]) > 0 and r[-1].endswith("x") for r in rows)


def test_bench_core_bad_arguments_one_line_exit_2():
    result = subprocess.run([sys.executable, "bench/core_bench.py", "--rounds", "0"],
                            cwd=ROOT, env=env(), capture_output=True, timeout=60)
    assert result.returncode == 2 and result.stderr.decode().strip().splitlines()[-1].startswith(
        "core_bench.py: error:")
