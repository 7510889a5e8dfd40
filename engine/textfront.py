"""English text front end for TTS: normalisation to speakable words, sentence chunking, joining.

Number words come from ``num2words``; sentence boundaries from ``pysbd``. The rules that decide
*what* a token means (year, money, time, ordinal...) are ours.
"""

from __future__ import annotations

import re

import numpy as np

ABBREVIATIONS = {
    "Dr.": "Doctor", "Mr.": "Mister", "Mrs.": "Missus", "Ms.": "Miz", "Prof.": "Professor", "St.": "Saint",
    "Jr.": "Junior", "Sr.": "Senior", "Mt.": "Mount", "Ave.": "Avenue", "Rd.": "Road", "Co.": "Company",
    "Inc.": "Incorporated", "Ltd.": "Limited", "Corp.": "Corporation", "Dept.": "Department",
    "e.g.": "for example", "i.e.": "that is", "etc.": "et cetera", "vs.": "versus", "approx.": "approximately",
    "No.": "number", "Jan.": "January", "Feb.": "February", "Mar.": "March", "Apr.": "April", "Jun.": "June",
    "Jul.": "July", "Aug.": "August", "Sep.": "September", "Sept.": "September", "Oct.": "October",
    "Nov.": "November", "Dec.": "December",
}
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"]
CURRENCIES = {"$": ("dollar", "dollars", "cent", "cents"), "£": ("pound", "pounds", "penny", "pence"),
              "€": ("euro", "euros", "cent", "cents"), "¥": ("yen", "yen", "sen", "sen")}
SCALES = {"k": "thousand", "K": "thousand", "m": "million", "M": "million", "bn": "billion", "B": "billion", "b": "billion", "T": "trillion"}
UNITS = {"km": "kilometers", "kg": "kilograms", "cm": "centimeters", "mm": "millimeters", "m": "meters", "g": "grams",
         "mg": "milligrams", "l": "liters", "ml": "milliliters", "h": "hours", "min": "minutes", "s": "seconds",
         "mph": "miles per hour", "km/h": "kilometers per hour", "GB": "gigabytes", "MB": "megabytes", "kb": "kilobytes",
         "°C": "degrees Celsius", "°F": "degrees Fahrenheit", "ft": "feet", "lb": "pounds", "lbs": "pounds", "oz": "ounces"}
SYMBOLS = {"&": " and ", "%": " percent", "+": " plus ", "=": " equals ", "@": " at ", "#": " number ", "°": " degrees ",
           "×": " times ", "/": " slash ", "~": " about ", "<": " less than ", ">": " greater than "}


def _words(n: int | float, to: str = "cardinal") -> str:
    from num2words import num2words

    # American style: no "and" inside numbers ("one hundred twenty", "two thousand five")
    return num2words(n, to=to).replace(",", "").replace(" and ", " ")


def year_words(year: int) -> str:
    """1999 -> nineteen ninety-nine; 2005 -> two thousand five; 1900 -> nineteen hundred."""
    if 2000 <= year <= 2009 or year < 1000:
        return _words(year)
    hi, lo = divmod(year, 100)
    if lo == 0:
        return f"{_words(hi)} hundred"
    return f"{_words(hi)} {'oh ' + _words(lo) if lo < 10 else _words(lo)}"


def _money(match: re.Match) -> str:
    symbol, amount, scale = match.group(1), match.group(2).replace(",", ""), match.group(3)
    one, many, sub_one, sub_many = CURRENCIES[symbol]
    if scale:
        return f"{_number_text(amount)} {SCALES[scale]} {many}"
    whole, _, frac = amount.partition(".")
    units = int(whole or 0)
    parts = [f"{_words(units)} {one if units == 1 else many}"] if units or not frac else []
    if frac:
        cents = int((frac + "0")[:2])
        if cents:
            parts.append(f"{_words(cents)} {sub_one if cents == 1 else sub_many}")
    return " and ".join(parts) if parts else f"zero {many}"


def _number_text(text: str) -> str:
    text = text.replace(",", "")
    if "." in text:
        whole, frac = text.split(".", 1)
        head = _words(int(whole)) if whole else "zero"
        return f"{head} point {' '.join(_words(int(d)) for d in frac)}"
    return _words(int(text))


def _time(match: re.Match) -> str:
    hour, minute = int(match.group(1)), int(match.group(2))
    suffix = f"{match.group(3)}m".lower() if match.group(3) else ""
    if hour > 24 or minute > 59:
        return match.group(0)
    if minute == 0:
        mins = "o'clock" if not suffix else ""
    elif minute < 10:
        mins = f"oh {_words(minute)}"
    else:
        mins = _words(minute)
    out = f"{_words(hour)} {mins}".strip()
    return f"{out} {' '.join(suffix.upper())}" if suffix else out


def _iso_date(match: re.Match) -> str:
    y, m, d = int(match.group(1)), int(match.group(2)), int(match.group(3))
    if not (1 <= m <= 12 and 1 <= d <= 31):
        return match.group(0)
    return f"{MONTHS[m - 1]} {_words(d, 'ordinal')}, {year_words(y)}"


def _plain_number(match: re.Match) -> str:
    text = match.group(0)
    digits = text.replace(",", "")
    if re.fullmatch(r"\d{4}", digits) and 1100 <= int(digits) <= 2099 and "," not in text:
        return year_words(int(digits))  # a bare four-digit number in this range reads as a year
    return _number_text(digits)


def normalize_text(text: str) -> str:
    """Expand numbers, years, money, times, dates, abbreviations, units and symbols into words."""
    t = " ".join(text.split())
    t = re.sub(r"https?://(\S+)", lambda m: m.group(1).replace(".", " dot ").replace("/", " slash "), t)
    t = re.sub(r"\b([\w.+-]+)@([\w-]+)\.(\w+)\b", r"\1 at \2 dot \3", t)
    t = re.sub(r"\b([A-Z][a-z]+) St\.", r"\1 Street", t)  # "Main St." is a street, "St. Paul" a saint
    for abbr, full in ABBREVIATIONS.items():
        t = re.sub(rf"(?<!\w){re.escape(abbr)}", full, t)
    t = re.sub(r"\b(\d{4})-(\d{2})-(\d{2})\b", _iso_date, t)
    t = re.sub(r"\b(\d{1,2}):(\d{2})(?:\s*([AaPp])\.?[Mm]\b)?", _time, t)
    t = re.sub(r"([$£€¥])\s?(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)(?:\s?(bn|[kKmMbBT])\b)?", _money, t)
    t = re.sub(r"\b(\d{4})s\b", lambda m: year_words(int(m.group(1)))[:-1] + "ies" if year_words(int(m.group(1))).endswith("y") else year_words(int(m.group(1))) + "s", t)
    t = re.sub(r"\b(\d+)(st|nd|rd|th)\b", lambda m: _words(int(m.group(1)), "ordinal"), t)
    t = re.sub(r"(\d[\d,]*(?:\.\d+)?)\s?%", lambda m: f"{_number_text(m.group(1))} percent", t)
    unit_alt = "|".join(sorted(map(re.escape, UNITS), key=len, reverse=True))
    t = re.sub(rf"(\d[\d,]*(?:\.\d+)?)\s?({unit_alt})(?![\w/])", lambda m: f"{_number_text(m.group(1))} {UNITS[m.group(2)]}", t)
    t = re.sub(r"(?<![\w.])-(\d)", r"minus \1", t)
    t = re.sub(r"\d[\d,]*\.\d+|\d{1,3}(?:,\d{3})+|\d+", _plain_number, t)
    for sym, word in SYMBOLS.items():
        t = t.replace(sym, word)
    return " ".join(t.split()).replace(" ,", ",").replace(" .", ".")


def split_sentences(text: str, max_chars: int = 250) -> list[str]:
    """Sentences (pysbd), with over-long ones split at commas/semicolons, then at spaces."""
    import pysbd

    text = text.strip()
    if not text:
        return []
    sentences = [s.strip() for s in pysbd.Segmenter(language="en", clean=False).segment(text) if s.strip()]
    chunks: list[str] = []
    for sentence in sentences:
        pieces = [sentence] if len(sentence) <= max_chars else re.split(r"(?<=[,;:])\s+", sentence)
        for piece in pieces:
            while len(piece) > max_chars:
                cut = piece.rfind(" ", 0, max_chars)
                cut = cut if cut > 0 else max_chars
                chunks.append(piece[:cut].strip())
                piece = piece[cut:].strip()
            if piece:
                if chunks and len(chunks[-1]) + len(piece) + 1 <= max_chars and not re.search(r"[.!?]$", chunks[-1]):
                    chunks[-1] = f"{chunks[-1]} {piece}"
                else:
                    chunks.append(piece)
    return chunks


def crossfade_join(chunks: list[np.ndarray], sample_rate: int = 16000, fade_ms: float = 30.0, pause_ms: float = 0.0) -> np.ndarray:
    """Join audio chunks with equal-power cross-fades of ``fade_ms`` (optionally a pause between).

    Output length = sum(lengths) - (n - 1) * fade (+ pauses); a fade never exceeds half a chunk."""
    chunks = [np.asarray(c, dtype=np.float32) for c in chunks if len(c)]
    if not chunks:
        return np.zeros(0, dtype=np.float32)
    out = chunks[0]
    pause = np.zeros(int(sample_rate * pause_ms / 1000), dtype=np.float32)
    for nxt in chunks[1:]:
        if pause.size:
            out = np.concatenate([out, pause])
        n = min(int(sample_rate * fade_ms / 1000), len(out) // 2, len(nxt) // 2)
        if n == 0:
            out = np.concatenate([out, nxt])
            continue
        ramp = np.linspace(0.0, np.pi / 2, n, dtype=np.float32)
        mixed = out[-n:] * np.cos(ramp) + nxt[:n] * np.sin(ramp)
        out = np.concatenate([out[:-n], mixed, nxt[n:]])
    return out
