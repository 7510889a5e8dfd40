import numpy as np
import pytest

from engine.textfront import crossfade_join, normalize_text, split_sentences

CASES = [
    # numbers
    ("I have 3 cats and 21 dogs.", "I have three cats and twenty-one dogs."),
    ("It is -5 degrees.", "It is minus five degrees."),
    ("Pi is 3.14.", "Pi is three point one four."),
    ("1,234,567 people", "one million two hundred thirty-four thousand five hundred sixty-seven people"),
    ("the 1st and 22nd", "the first and twenty-second"),
    # years
    ("In 1999 we met.", "In nineteen ninety-nine we met."),
    ("Since 2005.", "Since two thousand five."),
    ("In 1900 and 1905.", "In nineteen hundred and nineteen oh five."),
    ("the 1980s", "the nineteen eighties"),
    ("It was 2024.", "It was twenty twenty-four."),
    # money
    ("It costs $3.50.", "It costs three dollars and fifty cents."),
    ("£5, or €1,200 and $2.5M", "five pounds, or one thousand two hundred euros and two point five million dollars"),
    ("only $1 or $0.01", "only one dollar or one cent"),
    # times and dates
    ("Meet at 3:30 pm.", "Meet at three thirty P M."),
    ("At 14:05 sharp", "At fourteen oh five sharp"),
    ("at 7:00", "at seven o'clock"),
    ("On 2024-03-01.", "On March first, twenty twenty-four."),
    ("Jan. 5", "January five"),
    # abbreviations
    ("Dr. Smith lives on Main St. near St. Paul.", "Doctor Smith lives on Main Street near Saint Paul."),
    ("fruit, e.g. apples, etc.", "fruit, for example apples, et cetera"),
    ("cats vs. dogs", "cats versus dogs"),
    # symbols and units
    ("50% of 5 km & 10 kg", "fifty percent of five kilometers and ten kilograms"),
    ("2 + 2 = 4", "two plus two equals four"),
    ("mail me@example.org #1", "mail me at example dot org number one"),
]


@pytest.mark.parametrize("text,expected", CASES)
def test_normalize(text, expected):
    assert normalize_text(text) == expected


def test_split_sentences_respects_limit():
    text = "Hello there. This is a test! " + "And here is a very long sentence, with clauses, that goes on and on, " * 4
    chunks = split_sentences(text, max_chars=60)
    assert chunks[0] == "Hello there." and chunks[1] == "This is a test!"
    assert all(len(c) <= 60 for c in chunks)
    assert " ".join(chunks).split() == text.split()
    assert split_sentences("   ") == []


def test_crossfade_join_length_and_continuity():
    sr = 16000
    a = np.ones(8000, dtype=np.float32)
    b = np.ones(4000, dtype=np.float32)
    out = crossfade_join([a, b], sample_rate=sr, fade_ms=30)
    fade = int(0.03 * sr)
    assert out.shape == (8000 + 4000 - fade,)
    # equal-power fade of two equal constant signals: no hole in the middle (stays >= 1)
    assert out.min() >= 0.999 and out.max() <= np.sqrt(2) + 1e-6
    with_pause = crossfade_join([a, b], sample_rate=sr, fade_ms=30, pause_ms=100)
    assert with_pause.shape == (8000 + 1600 + 4000 - fade,)
    assert crossfade_join([]).size == 0
    tiny = crossfade_join([np.ones(10, np.float32), np.ones(10, np.float32)], fade_ms=30)
    assert tiny.shape == (15,)  # fade limited to half a chunk
