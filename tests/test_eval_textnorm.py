import pytest

from engine.eval.textnorm import WerStats, normalize_for_wer, wer_stats, word_error_rate


@pytest.mark.parametrize("raw, expected", [
    ("Hello, World!", "hello world"),
    ("It cost $3.50.", "it cost three dollars and fifty cents"),
    ("I have 2 cats", "i have two cats"),
    ("Dr. Smith's colour", "doctor smith's color"),
    ("  um, well... [music] okay  ", "well okay"),
    ("Twenty-one", "twenty one"),
    ("", ""),
])
def test_normalize_for_wer(raw, expected):
    assert normalize_for_wer(raw) == expected


def test_formatting_is_not_an_error():
    assert word_error_rate("I paid $20 on the 3rd.", "i paid twenty dollars on the third") == 0.0
    assert word_error_rate("Mr. Brown's colour is grey", "Mister Brown's color is gray.") == 0.0


def test_edit_counts():
    s = wer_stats("the cat sat on the mat", "the big cat sat on mat")
    assert (s.substitutions, s.deletions, s.insertions, s.reference_words) == (0, 1, 1, 6)
    assert s.wer == pytest.approx(2 / 6)
    assert wer_stats("the cat sat", "the dog sat").substitutions == 1
    assert word_error_rate("one two three", "") == 1.0  # nothing recognised: all deleted
    assert word_error_rate("", "") == 0.0 and word_error_rate("", "hello") == 1.0
    assert word_error_rate("a b", "x y z w") == 2.0  # insertions can push WER above 1


def test_corpus_wer_sums_counts():
    total = wer_stats("a b c d", "a b c d") + wer_stats("e f", "")
    assert total.reference_words == 6 and total.errors == 2 and total.wer == pytest.approx(2 / 6)
    assert WerStats().wer == 0.0
