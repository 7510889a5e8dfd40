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


def test_bench_stream_prints_both_variants():
    run = subprocess.run([sys.executable, "-m", "engine", "bench", "stream", "--profile", "tiny", "--reply-seconds", "2", "--repeats", "1"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    rows = [line.split() for line in run.stdout.splitlines() if line.startswith(("independent", "streamed"))]
    assert [r[0] for r in rows] == ["independent", "streamed"]
    assert all(float(v) > 0 for r in rows for v in (r[1], r[-1]))
    assert float(rows[1][2]) == 0.72 and float(rows[0][2]) == 1.0  # first piece: 50 - 10 lookahead - 4 holdback frames
