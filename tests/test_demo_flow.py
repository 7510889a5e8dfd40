"""Demo voice part 2 plumbing: extraction from a demo corpus (held-out rows never reach training),
the prior's scale option, the held-out VC test set, and the chain comparison report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from demo_helpers import HELDOUT_VOICES, SENTENCES, save_tiny_mel_codec, write_demo_corpus
from engine.train.codes_data import read_index, read_meta
from engine.train.extract import list_corpus_items, read_corpus_rows, select_split

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_demo_corpus(tmp_path_factory.mktemp("demo_corpus") / "corpus")


@pytest.fixture(scope="module")
def mel_codec_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("demo_codec") / "codec"
    save_tiny_mel_codec(folder)
    return folder


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_train_split_keeps_heldout_voices_and_sentences_out(corpus):
    rows = read_corpus_rows(corpus)
    kept, dropped = select_split(rows, "train")
    assert dropped == 2  # the two mislabelled "train" rows
    assert {r["voice"] for r in kept} == {"tv_a", "tv_b"}
    assert {r["sentence_id"] for r in kept} == {"s0", "s1", "s2", "s3"}
    assert len(kept) == 8
    test, _ = select_split(rows, "test")
    assert all(r["split"] == "test" for r in test) and {r["voice"] for r in test} >= set(HELDOUT_VOICES)
    items = list_corpus_items(corpus / "manifest.jsonl", "train")
    assert [it.id for it in items] == [r["id"] for r in kept] and all(it.path.is_file() for it in items)
    with pytest.raises(ValueError, match="unknown split"):
        select_split(rows, "dev")


def test_extract_cli_from_manifest_with_the_demo_codec(corpus, mel_codec_dir, tmp_path, capsys, one_thread):
    from engine.cli.extract import main

    out = tmp_path / "codes"
    argv = ["--manifest", str(corpus), "--out", str(out), "--profile", "demo", "--set", f"codec.path={mel_codec_dir}",
            "--set", "codec.name=demo-tiny", "--quiet", "--workers", "0"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "8 train utterances" in printed and "8 encoded, 0 already done, 0 failed" in printed
    index = read_index(out)
    heldout_texts = {SENTENCES["s4"]}
    assert len(index) == 8 and read_meta(out)["codec"] == "demo-tiny"
    assert not {e.speaker for e in index} & set(HELDOUT_VOICES)
    assert not {e.text for e in index} & heldout_texts
    # the codes decode through the same codec: [8, T] within its codebook
    import numpy as np

    shard = np.load(out / index[0].shard)[index[0].key]
    assert shard.shape[0] == 8 and 0 <= shard.min() and shard.max() < 16
    # rerun: nothing to do; --split without --manifest is refused
    assert main(argv) == 0 and "0 encoded, 8 already done" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--wavs", str(corpus), "--out", str(tmp_path / "x"), "--split", "test"])
