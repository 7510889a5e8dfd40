"""extract command and the codes folder format: resumable, bad files reported, batches by frames."""

import pickle
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from engine.audio import load_audio
from engine.train.codes_data import CodesDataset, LengthBucketSampler, ShardWriter, collate_codes, read_index, read_meta
from engine.train.extract import batch_by_frames, extract, list_items
from tests.audio_helpers import voiced


def make_corpus(root):
    (root / "spk1").mkdir(parents=True)
    lines = []
    for i in range(4):
        path = root / "spk1" / f"a{i}.wav"
        sf.write(path, voiced(0.3 + 0.2 * i, seed=i), 16000)
        lines.append(f"spk1/a{i}.wav\ttext number {i}")
    (root / "broken.wav").write_bytes(b"RIFFjunkjunk")
    lines.append("broken.wav\tnothing")
    (root / "list.tsv").write_text("\n".join(lines) + "\n")
    return root / "list.tsv"


def run_extract(src, out, *extra):
    """The real command in a fresh interpreter."""
    return subprocess.run([sys.executable, "-m", "engine", "extract", "--wavs", str(src), "--out", str(out), "--profile", "tiny",
                           "--shard-size", "2", "--quiet", *extra], capture_output=True, text=True, timeout=300)


def run_extract_here(capsys, src, out, *extra) -> str:
    """The same command's main() in this process (faster); returns what it printed."""
    from engine.cli.extract import main

    assert main(["--wavs", str(src), "--out", str(out), "--profile", "tiny", "--shard-size", "2", "--quiet", *extra]) == 0
    return capsys.readouterr().out


def test_extract_resumable_and_reports_bad_files(tmp_path, tiny_codec, capsys):
    listing = make_corpus(tmp_path / "corpus")
    out = tmp_path / "codes"
    first = run_extract(listing, out)
    assert first.returncode == 0, first.stderr
    assert "4 encoded, 0 already done, 1 failed" in first.stdout
    failed = (out / "failed.tsv").read_text().splitlines()
    assert len(failed) == 2 and failed[1].startswith(str(tmp_path / "corpus" / "broken.wav")) and "could not read" in failed[1]
    index = read_index(out)
    assert len(index) == 4 and {e.text for e in index} == {f"text number {i}" for i in range(4)}
    assert read_meta(out)["codec"] == "tiny" and read_meta(out)["utterances"] == 4
    assert len(list(out.glob("shard-*.npz"))) == 2
    # batched codes: the semantic layer agrees with a solo encoding (the encoder's bidirectional LSTM
    # sees the batch padding, so fine layers may differ); --batch-frames 0 encodes one file at a time
    direct = tiny_codec.encode(load_audio(tmp_path / "corpus" / "spk1" / "a2.wav")).codes
    ds = CodesDataset(out)
    i = next(k for k, e in enumerate(ds.entries) if e.id == "spk1__a2")
    assert (ds[i][0] == direct[0]).float().mean() >= 0.9
    run_extract_here(capsys, listing, tmp_path / "exact", "--batch-frames", "0")
    ds = CodesDataset(tmp_path / "exact")
    i = next(k for k, e in enumerate(ds.entries) if e.id == "spk1__a2")
    assert torch.equal(ds[i], direct)
    assert "0 encoded, 4 already done, 1 failed" in run_extract_here(capsys, listing, out)
    assert len(read_index(out)) == 4  # nothing duplicated
    assert len((out / "failed.tsv").read_text().splitlines()) == 2  # rewritten, not appended


def test_extract_resumes_after_interruption_and_reads_librispeech_folders(tmp_path, tiny_codec):
    root = tmp_path / "LibriSpeech" / "train-clean-100"
    chapter = root / "103" / "1240"
    chapter.mkdir(parents=True)
    for i in range(5):
        sf.write(chapter / f"103-1240-{i:04d}.flac", voiced(0.25 + 0.05 * i, seed=i), 16000)
    (chapter / "103-1240.trans.txt").write_text("".join(f"103-1240-{i:04d} WORDS OF LINE {i}\n" for i in range(5)))
    items = list_items(root)
    assert [it.speaker for it in items] == ["103"] * 5 and items[3].text == "WORDS OF LINE 3"

    out = tmp_path / "codes"
    first = extract(root, out, tiny_codec, batch_frames=60, shard_size=2, progress=False, workers=2)
    assert first == {"total": 5, "encoded": 5, "skipped_existing": 0, "failed": 0}
    # simulate a run killed while appending the index: the last shard's lines half written
    index = (out / "index.jsonl").read_text()
    lines = index.splitlines(keepends=True)
    (out / "index.jsonl").write_text("".join(lines[:3]) + lines[3][:20])
    assert len(read_index(out)) == 3  # the truncated line is ignored
    second = extract(root, out, tiny_codec, batch_frames=60, shard_size=2, progress=False, workers=0)
    assert second == {"total": 5, "encoded": 2, "skipped_existing": 3, "failed": 0}
    entries = read_index(out)
    assert sorted(e.id for e in entries) == sorted(it.id for it in items)
    ds = CodesDataset(out)
    assert all(ds[k].shape == (8, e.frames) for k, e in enumerate(ds.entries))
    # another codec's codes are refused in the same folder
    with pytest.raises(ValueError, match="'tiny' codec"):
        ShardWriter(out, "hubert_avg")


def test_batches_by_padded_frames():
    class It:  # stand-in item; only identity matters here
        pass

    wavs = [np.zeros(320 * n, np.float32) for n in (10, 10, 20, 30, 30, 100)]
    loaded = [(It(), w) for w in wavs]
    loaded.insert(2, (It(), ValueError("bad")))
    batches = list(batch_by_frames(loaded, batch_frames=60))
    sizes = [[len(w) // 320 if not isinstance(w, Exception) else -1 for _, w in b] for b in batches]
    # a failed file comes out at once, alone; padded size (longest x count) <= 60 unless alone
    assert sizes == [[-1], [10, 10, 20], [30, 30], [100]]


def test_bucket_sampler_respects_frame_budget_and_shards_across_processes():
    lengths = [10, 50, 52, 200, 31, 33, 90, 12, 48, 47, 11]
    sampler = LengthBucketSampler(lengths, max_frames=120, seed=1, bucket_width=20)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) == 1 or max(lengths[i] for i in b) * len(b) <= 120
    sampler.set_epoch(1)
    epoch1 = list(sampler)
    assert epoch1 == list(sampler)  # deterministic per epoch
    assert epoch1 != batches  # reshuffled
    # accelerate deals the (varying) batches out to processes: together they cover every item
    from accelerate.data_loader import BatchSamplerShard

    shards = [list(BatchSamplerShard(sampler, num_processes=2, process_index=r)) for r in range(2)]
    assert len(shards[0]) == len(shards[1])
    assert set(i for s in shards for b in s for i in b) == set(range(len(lengths)))
    batch = collate_codes([torch.ones(8, 3, dtype=torch.long), torch.ones(8, 5, dtype=torch.long)])
    assert batch["codes"].shape == (2, 8, 5) and batch["mask"].sum().item() == 8
    assert np.array_equal(batch["lengths"].numpy(), [3, 5])


def test_dataset_crops_caches_and_pickles(tmp_path):
    rng = np.random.default_rng(0)
    utts = [rng.integers(0, 1024, (8, n)).astype(np.int16) for n in (5, 40, 12)]
    with ShardWriter(tmp_path, "tiny", shard_size=2) as writer:
        for i, codes in enumerate(utts):
            writer.add(f"u{i}", codes)
    with pytest.raises(ValueError, match="already"):
        ShardWriter(tmp_path, "tiny").add("u0", utts[0])
    ds = CodesDataset(tmp_path, max_frames=16, random_crop=False, cache_shards=1)
    assert ds.lengths() == [5, 16, 12]
    assert torch.equal(ds[1], torch.from_numpy(utts[1][:, :16].astype(np.int64)))
    assert torch.equal(ds[2], torch.from_numpy(utts[2].astype(np.int64)))  # other shard; cache holds one
    assert len(ds._cache) == 1  # the other shard was closed
    clone = pickle.loads(pickle.dumps(ds))  # DataLoader workers under "spawn"
    assert torch.equal(clone[0], ds[0])
    # forked workers (the main process has shards open) read the same arrays
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)
    assert all(torch.equal(x, ds[k]) for k, x in enumerate(loader))
    random_ds = CodesDataset(tmp_path, ids=["u1"], max_frames=16)
    crop = random_ds[0]
    starts = [k for k in range(40 - 16 + 1) if np.array_equal(utts[1][:, k : k + 16], crop.numpy())]
    assert crop.shape == (8, 16) and starts  # a window of the original
