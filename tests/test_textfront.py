"""Text front end: normalisation table, sentence chunking, cross-fade joining."""

import numpy as np
import pytest

from engine.textfront import crossfade_join, normalize_text, split_sentences, year_words

NUMBERS = [
    ("I have 3 cats and 21 dogs.", "I have three cats and twenty-one dogs."),
    ("It is -5 degrees.", "It is minus five degrees."),
    ("The temperature is \u22125 \u00b0C.", "The temperature is minus five degrees Celsius."),
    ("Pi is 3.14.", "Pi is three point one four."),
    ("1,234,567 people", "one million two hundred thirty-four thousand five hundred sixty-seven people"),
    ("the 1st and 22nd", "the first and twenty-second"),
    ("pages 5-10, scores 3-2", "pages five to ten, scores three to two"),
    ("1/2 cup, 3/4 mile, 2/3 of them, 24/7", "one half cup, three quarters mile, two thirds of them, twenty-four seven"),
    ("version 3.10.2 is out.", "version three point ten point two is out."),
    ("agent 007", "agent zero zero seven"),
    ("COVID-19 and mp3, 3x faster, 1920x1080", "COVID nineteen and mp three, three times faster, nineteen twenty by one thousand eighty"),
    ("Call (555) 123-4567.", "Call five five five, one two three, four five six seven."),
    ("a 1.5x speedup, 1,000,000,000,000,000,000 stars", "a one point five times speedup, one quintillion stars"),
    ("card 4111111111111111", "card four one one one one one one one one one one one one one one one"),
    ("He ran 100 m in 9.58 s and is 6 ft tall.", "He ran one hundred meters in nine point five eight seconds and is six feet tall."),
]
YEARS = [
    ("In 1999 we met.", "In nineteen ninety-nine we met."),
    ("Since 2005.", "Since two thousand five."),
    ("In 1900 and 1905.", "In nineteen hundred and nineteen oh five."),
    ("It was 2024.", "It was twenty twenty-four."),
    ("the 1980s and the '90s, in the 2010s", "the nineteen eighties and the nineties, in the twenty tens"),
    ("from 1990-1995", "from nineteen ninety to nineteen ninety-five"),
]
MONEY = [
    ("It costs $3.50.", "It costs three dollars and fifty cents."),
    ("£5, or €1,200 and $2.5M", "five pounds, or one thousand two hundred euros and two point five million dollars"),
    ("only $1 or $0.01 or $1,000.00", "only one dollar or one cent or one thousand dollars"),
    ("$3 billion", "three billion dollars"),
    ("-$5 and 5 USD and 50\u00a2", "minus five dollars and five dollars and fifty cents"),
    ("\u00a33.20 and \u00a30.01", "three pounds and twenty pence and one penny"),
    ("That costs 1.5 million dollars, up 3.5%.", "That costs one point five million dollars, up three point five percent."),
]
TIMES_DATES = [
    ("Meet at 3:30 pm.", "Meet at three thirty p m."),
    ("Meet at 3:30 p.m. Then go.", "Meet at three thirty p m. Then go."),
    ("Meet at 3 p.m. sharp", "Meet at three p m sharp"),
    ("At 14:05 sharp", "At fourteen oh five sharp"),
    ("at 7:00", "at seven o'clock"),
    ("open 9:00-17:00", "open nine o'clock to seventeen hundred"),
    ("On 2024-03-01.", "On March first, twenty twenty-four."),
    ("Jan. 5", "January fifth"),
    ("On March 3, 2024.", "On March third, twenty twenty-four."),
    ("on 5 May 2023", "on the fifth of May, twenty twenty-three"),
    ("due 12/25/2024", "due December twenty-fifth, twenty twenty-four"),
]
ABBREVIATIONS = [
    ("Dr. Smith lives on Main St. near St. Paul.", "Doctor Smith lives on Main Street near Saint Paul."),
    ("Drive down Mulholland Dr.", "Drive down Mulholland Drive."),
    ("Mr. and Mrs. Jones met Prof. Lee at 10am.", "Mister and Missus Jones met Professor Lee at ten a m."),
    ("fruit, e.g. apples, etc.", "fruit, for example apples, et cetera."),
    ("I like apples, etc. Then we go.", "I like apples, et cetera. Then we go."),
    ("cats vs. dogs", "cats versus dogs"),
    ("No. 5, and I said no.", "number five, and I said no."),
    ("We live in the U.S.A. now", "We live in the U S A now"),
]
SYMBOLS = [
    ("50% of 5 km & 10 kg", "fifty percent of five kilometers and ten kilograms"),
    ("1 km and 1.5 kg and 90\u00b0", "one kilometer and one point five kilograms and ninety degrees"),
    ("2 + 2 = 4", "two plus two equals four"),
    ("mail me@example.org #1", "mail me at example dot org number one"),
    ("Write to john.doe_99@mail.example.co.uk now.", "Write to john dot doe underscore nine nine at mail dot example dot co dot uk now."),
    ("Visit https://www.example.com/docs. Thanks.", "Visit W W W dot example dot com slash docs. Thanks."),
    ("It's C# and C++ and AT&T.", "It's C sharp and C plus plus and AT and T."),
    ("and/or he/she", "and or he or she"),
]
MARKUP = [
    ("**Bold** and *italic* text \U0001f600 with `code`", "Bold and italic text with code"),
    ("Intro\n# Heading\n- item one\n- item two\n\nNext paragraph", "Intro. Heading. item one. item two. Next paragraph"),
    ("A \u2014 dash, \u201cquoted\u201d", 'A, dash, "quoted"'),
    ("Here are 3 tips:\n1. Drink water.\n2. Sleep 8 hours\n3. Walk", "Here are three tips: Drink water. Sleep eight hours. Walk."),
]
ALL = NUMBERS + YEARS + MONEY + TIMES_DATES + ABBREVIATIONS + SYMBOLS + MARKUP


@pytest.mark.parametrize("text,expected", ALL, ids=[c[0][:40] for c in ALL])
def test_normalize(text, expected):
    assert normalize_text(text) == expected


def test_normalize_output_is_speakable():
    """No digits or the symbols we rewrite survive, whatever the mix."""
    text = "On 2024-03-01 at 14:05, Dr. Who paid $1,234.56 (+5%) for 3 kg & 2 km #7 @ 50\u00b0F; see www.x.org."
    out = normalize_text(text)
    assert not any(ch.isdigit() for ch in out), out
    assert not set("$%&@#+=\u00b0") & set(out), out
    assert normalize_text("") == "" and normalize_text("   \n ") == ""


@pytest.mark.parametrize("year,words", [(1066, "ten sixty-six"), (1800, "eighteen hundred"), (2000, "two thousand"),
                                        (2009, "two thousand nine"), (2010, "twenty ten"), (1901, "nineteen oh one")])
def test_year_words(year, words):
    assert year_words(year) == words


def test_split_sentences_respects_limit_and_keeps_words():
    text = "Hello there. This is a test! " + "And here is a very long sentence, with clauses, that goes on and on, " * 4
    chunks = split_sentences(text, max_chars=60)
    assert chunks[:2] == ["Hello there.", "This is a test!"]
    assert all(len(c) <= 60 for c in chunks) and len(chunks) > 3
    assert " ".join(chunks).split() == text.split()
    assert split_sentences("   ") == []


def test_split_after_normalisation_keeps_sentence_boundaries():
    text = normalize_text("I like apples, etc. Meet me at 3 p.m. Dr. Smith will come.")
    assert split_sentences(text) == ["I like apples, et cetera.", "Meet me at three p m.", "Doctor Smith will come."]


def test_split_long_word_merge_short_and_stray_punctuation():
    word = "x" * 25
    chunks = split_sentences(f"{word} ok", max_chars=10)
    assert all(len(c) <= 10 for c in chunks) and "".join(chunks).replace(" ", "") == word + "ok"
    merged = split_sentences("Hi. Yes. This is a longer sentence here.", max_chars=100, min_chars=10)
    assert merged == ["Hi. Yes. This is a longer sentence here."]
    assert split_sentences("Hi. Yes.", max_chars=100) == ["Hi.", "Yes."]
    assert all(any(ch.isalnum() for ch in c) for c in split_sentences("Wait... ! Really?! ...", max_chars=50))
    with pytest.raises(ValueError):
        split_sentences("text", max_chars=0)


def test_crossfade_join_length_and_loudness():
    sr = 16000
    a, b = np.ones(8000, np.float32), np.ones(4000, np.float32)
    fade = int(0.03 * sr)
    out = crossfade_join([a, b], sample_rate=sr, fade_ms=30)
    assert out.shape == (8000 + 4000 - fade,) and out.dtype == np.float32
    # equal power on identical signals: no dip (>= 1) and at most +3 dB in the middle
    assert out.min() >= 0.999 and out.max() <= np.sqrt(2) + 1e-6 and out.max() > 1.3
    lin = crossfade_join([a, b], sample_rate=sr, fade_ms=30, curve="linear")
    np.testing.assert_allclose(lin, 1.0, atol=1e-6)  # linear: amplitude kept exactly
    three = crossfade_join([a, b, a], sample_rate=sr, fade_ms=30)
    assert three.shape == (8000 + 4000 + 8000 - 2 * fade,)
    assert crossfade_join([]).size == 0 and crossfade_join([np.zeros(0)]).size == 0
    tiny = crossfade_join([np.ones(10, np.float32), np.ones(10, np.float32)], fade_ms=30)
    assert tiny.shape == (15,)  # fade limited to half a chunk
    with pytest.raises(ValueError):
        crossfade_join([a, b], curve="cubic")


def test_crossfade_join_is_continuous():
    """Joining two halves of one sine gives no click: the largest step stays near the sine's own."""
    sr, f = 16000, 220.0
    t = np.arange(sr) / sr
    sine = np.sin(2 * np.pi * f * t).astype(np.float32)
    first, second = 0.5 * sine[:8000] + 0.4, 0.5 * sine[8000:] - 0.4  # a step at the seam: a click if butted
    natural_step = np.abs(np.diff(0.5 * sine)).max()
    butted = np.concatenate([first, second])
    assert np.abs(np.diff(butted)).max() > 10 * natural_step
    joined = crossfade_join([first, second], sample_rate=sr, fade_ms=20)
    assert np.abs(np.diff(joined)).max() < 2 * natural_step


def test_crossfade_join_with_pause():
    sr = 16000
    a, b = np.ones(8000, np.float32), np.ones(4000, np.float32)
    out = crossfade_join([a, b], sample_rate=sr, fade_ms=30, pause_ms=100)
    assert out.shape == (8000 + 1600 + 4000,)
    assert np.all(out[8000:9600] == 0)  # the pause is silent
    fade = int(0.03 * sr)
    assert out[7999] < 0.1 and out[9600] < 0.1  # faded out before it, faded in after it
    np.testing.assert_allclose(out[: 8000 - fade], 1.0)
    np.testing.assert_allclose(out[9600 + fade :], 1.0)


def test_numbers_beyond_num2words_are_read_digit_by_digit():
    """Whisper sometimes writes a run of hundreds of zeros; normalising it must not raise."""
    from engine.textfront import number_words

    huge = "1," + ",".join(["000"] * 400)  # grouped: would be read as words, but no name exists
    words = number_words(huge).split()
    assert words[0] == "one" and words.count("zero") == 1200 and len(words) == 1201
    assert number_words("-" + huge).startswith("minus one zero")
    assert number_words("1,000") == "one thousand"
