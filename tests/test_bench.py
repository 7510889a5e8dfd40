import subprocess
import sys


def test_bench_perceptual_prints_table():
    run = subprocess.run([sys.executable, "-m", "engine", "bench", "perceptual", "--profile", "tiny", "--sizes", "tiny", "--nfe", "1,2",
                          "--target-seconds", "1", "--prompt-seconds", "0.5", "--repeats", "1"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    rows = [line.split() for line in run.stdout.splitlines() if line.startswith("tiny")]
    assert [r[2] for r in rows] == ["1", "2"]
    assert all(float(r[3]) > 0 and float(r[4]) > 0 for r in rows)


def test_bench_e2e_prints_all_tasks(tmp_path):
    run = subprocess.run([sys.executable, "-m", "engine", "bench", "e2e", "--profile", "tiny", "--voice", "flite-slt", "--repeats", "1",
                          "--text", "Hello there.", "--set", f"paths.voices_dir={tmp_path}"], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    rows = {line.split()[0]: line.split() for line in run.stdout.splitlines() if line.split() and line.split()[0] in ("tts", "convert", "chat")}
    assert set(rows) == {"tts", "convert", "chat"}
    assert all(float(r[2]) > 0 for r in rows.values())


def test_bench_e2e_conversion_of_a_fixed_length_source_with_its_stages(tmp_path):
    run = subprocess.run([sys.executable, "-m", "engine", "bench", "e2e", "--profile", "tiny", "--voice", "flite-slt", "--repeats", "1",
                          "--tasks", "convert", "--source-seconds", "2.5", "--set", f"paths.voices_dir={tmp_path}"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    rows = [line.split(maxsplit=6) for line in run.stdout.splitlines() if line.startswith("convert")]
    assert len(rows) == 1 and not any(line.startswith(("tts", "chat")) for line in run.stdout.splitlines())
    assert abs(float(rows[0][3]) - 2.5) < 0.05  # conversion keeps the source's length
    stages = dict(part.rsplit(" ", 1) for part in rows[0][6].split(", "))
    assert set(stages) == {"encode", "prompt", "perceptual", "decode"} and all(float(v) >= 0 for v in stages.values())
    assert sum(map(float, stages.values())) <= float(rows[0][2]) + 1e-3


def test_bench_stream_prints_both_variants():
    run = subprocess.run([sys.executable, "-m", "engine", "bench", "stream", "--profile", "tiny", "--reply-seconds", "2", "--repeats", "1"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    rows = [line.split() for line in run.stdout.splitlines() if line.startswith(("independent", "streamed"))]
    assert [r[0] for r in rows] == ["independent", "streamed"]
    assert all(float(v) > 0 for r in rows for v in (r[1], r[-1]))
    assert float(rows[1][2]) == 0.72 and float(rows[0][2]) == 1.0  # first piece: 50 - 10 lookahead - 4 holdback frames


def test_bench_semantic_compare_ends_with_the_ratio():
    run = subprocess.run([sys.executable, "-m", "engine", "bench", "semantic", "--profile", "tiny", "--compare", "--units", "12", "--repeats", "2",
                          "--threads", "1"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.strip().splitlines()
    assert "torch CPU threads: 1" in run.stdout and "decoder: static cache" in run.stdout
    last = lines[-1]
    assert last.startswith("ratio vs transformers generate: ") and last.endswith("x") and float(last.split()[-1][:-1]) > 0


def test_cpu_thread_policy(monkeypatch):
    from engine.threads import cpu_threads_for, usable_cores

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert cpu_threads_for(3) == 3
    assert cpu_threads_for(0) == max(1, min(usable_cores(), 8))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert cpu_threads_for(0) == 1
    import pytest

    with pytest.raises(ValueError, match="cpu_threads"):
        cpu_threads_for(-1)


def test_bench_perceptual_compare_with_a_checkout():
    """Side by side against a checkout (here the same one): both workers run, the outputs agree, a ratio is printed."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    run = subprocess.run([sys.executable, "-m", "engine", "bench", "perceptual", "--profile", "tiny", "--compare-with", str(root), "--arch", "32,2,2",
                          "--steps", "2", "--rounds", "2", "--target-seconds", "0.4", "--prompt-seconds", "0.2", "--threads", "1"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "1 threads" in run.stdout and "max |output difference| 0.00e+00" in run.stdout
    assert run.stdout.strip().splitlines()[-1].startswith("ratio vs ")
