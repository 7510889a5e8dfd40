"""English text front end for TTS: normalisation to speakable words, sentence chunking, joining.

``normalize_text`` rewrites what a speech model cannot read (digits, symbols, abbreviations,
URLs, markdown and emoji from chat replies) into plain English words; ``split_sentences`` cuts
the result into chunks the models handle; ``crossfade_join`` joins the audio of the chunks.

Number words come from ``num2words`` and sentence boundaries from ``pysbd``. The rules that
decide *what* a token is (year, money, time, date, ordinal, unit...) are ours: ``num2words``
only spells numbers, and a full normaliser (``nemo-text-processing``) needs pynini/OpenFst,
which does not install beside our pinned torch on these machines.

Output style: American (no "and" inside numbers), "a m"/"p m" for times (spaced lowercase
letters, which ``pysbd`` still splits after), an abbreviation that can end a sentence keeps
its period when it does (so sentence splitting still works after normalisation).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Callable, Union

import numpy as np

# --------------------------------------------------------------------------- tables
TITLES = {  # always followed by a name: expanded, period dropped
    "Mr.": "Mister", "Mrs.": "Missus", "Ms.": "Miz", "Prof.": "Professor", "Capt.": "Captain",
    "Gen.": "General", "Sen.": "Senator", "Rep.": "Representative", "Gov.": "Governor", "Lt.": "Lieutenant",
    "Sgt.": "Sergeant", "Col.": "Colonel", "Rev.": "Reverend", "Hon.": "Honorable", "Mt.": "Mount",
}
TERMINAL = {  # may end a sentence: the period stays when it does
    "etc.": "et cetera", "Inc.": "Incorporated", "Ltd.": "Limited", "Co.": "Company", "Corp.": "Corporation",
    "Jr.": "Junior", "Sr.": "Senior", "Dept.": "Department", "Ave.": "Avenue", "Rd.": "Road",
    "Blvd.": "Boulevard", "Ln.": "Lane", "Bros.": "Brothers", "et al.": "and others",
}
INLINE = {  # never end a sentence: expanded, period dropped
    "e.g.": "for example", "i.e.": "that is", "vs.": "versus", "vs": "versus", "approx.": "approximately",
    "cf.": "compare", "viz.": "namely", "w/o": "without", "w/": "with",
}
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
MONTH_ABBR = {"Jan.": "January", "Feb.": "February", "Mar.": "March", "Apr.": "April", "Jun.": "June",
              "Jul.": "July", "Aug.": "August", "Sep.": "September", "Sept.": "September", "Oct.": "October",
              "Nov.": "November", "Dec.": "December"}
CURRENCY_SYMBOLS = {"$": "USD", "US$": "USD", "£": "GBP", "€": "EUR", "¥": "JPY", "₹": "INR"}
CURRENCIES = {  # code: (one, many, sub-unit one, sub-unit many)
    "USD": ("dollar", "dollars", "cent", "cents"), "GBP": ("pound", "pounds", "penny", "pence"),
    "EUR": ("euro", "euros", "cent", "cents"), "JPY": ("yen", "yen", "", ""), "INR": ("rupee", "rupees", "paisa", "paise"),
}
SCALES = {"k": "thousand", "K": "thousand", "m": "million", "M": "million", "mn": "million", "bn": "billion",
          "B": "billion", "b": "billion", "T": "trillion", "tn": "trillion", "thousand": "thousand",
          "million": "million", "billion": "billion", "trillion": "trillion"}
UNITS = {  # symbol: (singular, plural)
    "km": ("kilometer", "kilometers"), "m": ("meter", "meters"), "cm": ("centimeter", "centimeters"),
    "mm": ("millimeter", "millimeters"), "mi": ("mile", "miles"), "ft": ("foot", "feet"), "kg": ("kilogram", "kilograms"),
    "g": ("gram", "grams"), "mg": ("milligram", "milligrams"), "lb": ("pound", "pounds"), "lbs": ("pound", "pounds"),
    "oz": ("ounce", "ounces"), "l": ("liter", "liters"), "L": ("liter", "liters"), "ml": ("milliliter", "milliliters"),
    "mL": ("milliliter", "milliliters"), "h": ("hour", "hours"), "hr": ("hour", "hours"), "hrs": ("hour", "hours"),
    "min": ("minute", "minutes"), "s": ("second", "seconds"), "sec": ("second", "seconds"), "ms": ("millisecond", "milliseconds"),
    "km/h": ("kilometer per hour", "kilometers per hour"), "kph": ("kilometer per hour", "kilometers per hour"),
    "mph": ("mile per hour", "miles per hour"), "m/s": ("meter per second", "meters per second"),
    "Hz": ("hertz", "hertz"), "kHz": ("kilohertz", "kilohertz"), "MHz": ("megahertz", "megahertz"), "GHz": ("gigahertz", "gigahertz"),
    "KB": ("kilobyte", "kilobytes"), "kB": ("kilobyte", "kilobytes"), "MB": ("megabyte", "megabytes"),
    "GB": ("gigabyte", "gigabytes"), "TB": ("terabyte", "terabytes"), "W": ("watt", "watts"), "kW": ("kilowatt", "kilowatts"),
    "V": ("volt", "volts"), "°C": ("degree Celsius", "degrees Celsius"), "°F": ("degree Fahrenheit", "degrees Fahrenheit"),
    "°": ("degree", "degrees"),
}
SYMBOLS = [("&", " and "), ("+", " plus "), ("=", " equals "), ("@", " at "), ("#", " number "), ("%", " percent "),
           ("°", " degrees "), ("×", " times "), ("÷", " divided by "), ("±", " plus or minus "), ("~", " about "),
           ("<", " less than "), (">", " greater than "), ("/", " slash "), ("\\", " backslash "), ("|", " "),
           ("*", " "), ("_", " "), ("^", " "), ("`", " "), ("©", " copyright "), ("®", " "), ("™", " ")]
UNICODE_PUNCT = {"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2026": "...", "\u2212": "-",
                 "\u2014": ", ", "\u00a0": " ", "\u2009": " ", "\u202f": " ", "\u00bd": " 1/2", "\u00bc": " 1/4",
                 "\u00be": " 3/4", "\u2153": " 1/3", "\u2154": " 2/3"}

_NUM = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"  # 1,234,567.89 | 1234.5
_SENTENCE_END = r"(?=\s*$|\s+[\"'(]?[A-Z])"  # what follows a period that ends a sentence


# --------------------------------------------------------------------------- number words
def _words(n: int, to: str = "cardinal", spell_long: bool = True) -> str:
    """num2words, American style: no "and" inside numbers, no commas. Integers of 16 digits or
    more (ids, card numbers) are read digit by digit unless ``spell_long`` is False."""
    from num2words import num2words

    if spell_long and abs(n) >= 10**15:
        return ("minus " if n < 0 else "") + spell_digits(str(abs(n)))
    try:
        return num2words(n, to=to).replace(",", "").replace(" and ", " ")
    except OverflowError:  # beyond num2words' largest name (ASR output can hold a run of hundreds of zeros)
        return ("minus " if n < 0 else "") + spell_digits(str(abs(n)))


def spell_digits(digits: str) -> str:
    """'0427' -> 'zero four two seven' (non-digits are dropped)."""
    return " ".join(_words(int(d)) for d in digits if d.isdigit())


def number_words(text: str) -> str:
    """'1,234.56' -> 'one thousand two hundred thirty-four point five six'; '-3' -> 'minus three'."""
    grouped = "," in text  # "1,000,000,000,000,000,000" is read as words, "4111111111111111" digit by digit
    text = text.replace(",", "").strip()
    sign = ""
    if text.startswith("-"):
        sign, text = "minus ", text[1:]
    whole, _, frac = text.partition(".")
    if len(whole) > 1 and whole.startswith("0") and not frac:
        return sign + spell_digits(whole)  # "007"
    head = _words(int(whole), spell_long=not grouped) if whole else "zero"
    return sign + (f"{head} point {spell_digits(frac)}" if frac else head)


def _is_one(text: str) -> bool:
    return text.replace(",", "") in ("1", "1.0", "1.00")


def year_words(year: int) -> str:
    """1999 -> nineteen ninety-nine; 2005 -> two thousand five; 1900 -> nineteen hundred; 1905 -> nineteen oh five."""
    if 2000 <= year <= 2009 or year < 1000 or year >= 10000:
        return _words(year)
    hi, lo = divmod(year, 100)
    if lo == 0:
        return f"{_words(hi)} hundred"
    return f"{_words(hi)} {'oh ' + _words(lo) if lo < 10 else _words(lo)}"


def _plural_words(words: str) -> str:
    """'nineteen eighty' -> 'nineteen eighties'; 'twenty ten' -> 'twenty tens'."""
    return words[:-1] + "ies" if words.endswith("y") else words + "s"


# --------------------------------------------------------------------------- rules
def _clean_markup(text: str) -> str:
    """Unicode punctuation, markdown and emoji (chat replies) -> plain text with sentence ends."""
    text = unicodedata.normalize("NFC", text)
    for src, dst in UNICODE_PUNCT.items():
        text = text.replace(src, dst)
    text = re.sub(r"(?<=\d)\s*\u2013\s*(?=\d)", "-", text)  # en dash in a range
    text = text.replace("\u2013", ", ")
    text = re.sub(r"```.*?```", " ", text, flags=re.S)  # code blocks are not read aloud
    text = re.sub(r"\[([^\]]+)\]\((?:https?://)?[^)]+\)", r"\1", text)  # [label](url) -> label
    lines = []
    for line in re.split(r"\n", text):
        stripped = line.strip()
        structured = re.match(r"^(#{1,6}\s+|[-*+•]\s+|\d+[.)]\s+)", stripped)
        stripped = re.sub(r"^(#{1,6}\s+|[-*+•]\s+|\d+[.)]\s+)", "", stripped)  # list numbers are not read
        stripped = re.sub(r"(\*\*|__|~~)(.+?)\1", r"\2", stripped)
        stripped = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?!\w)", r"\1", stripped)
        if structured and lines and lines[-1] and not re.search(r"[.!?:;,]$", lines[-1]):
            lines[-1] += "."  # so does the line before it
        if structured and stripped and not re.search(r"[.!?:;,]$", stripped):
            stripped += "."  # a heading or list item is read as its own sentence
        lines.append(stripped)
    text = "\n".join(lines)
    text = re.sub(r"(?<=[^\s.!?:;,])\s*\n\s*\n", ". ", text)  # paragraph break ends a sentence
    keep = {"°", "©", "®", "™"}
    return "".join(
        c for c in text
        if c in keep or not (unicodedata.category(c) in ("So", "Cs", "Co", "Cn") or c in "\u200d\ufe0f\ufe0e")
    )


def _spell_url_part(part: str) -> str:
    out = re.sub(r"\d+", lambda m: f" {spell_digits(m.group(0))} ", part)
    for sym, word in ((".", " dot "), ("/", " slash "), ("-", " dash "), ("_", " underscore "), ("@", " at "),
                      (":", " colon "), ("?", " question mark "), ("=", " equals "), ("&", " and "), ("~", " tilde "),
                      ("#", " hash "), ("+", " plus "), ("%", " percent ")):
        out = out.replace(sym, word)
    return " ".join(out.split())


def _url(match: re.Match) -> str:
    url = re.sub(r"^https?://", "", match.group(1)).rstrip("/")
    if url.lower().startswith("www."):
        url = "W W W." + url[4:]
    return _spell_url_part(url) + match.group(2)


def _email(match: re.Match) -> str:
    return f"{_spell_url_part(match.group(1))} at {_spell_url_part(match.group(2))}"


def _phone(match: re.Match) -> str:
    groups = [g for g in re.findall(r"\d+", match.group(0))]
    lead = "plus " if match.group(0).startswith("+") else ""
    return lead + ", ".join(spell_digits(g) for g in groups)


def _keep_period(match: re.Match, out: str) -> str:
    """Give back a consumed period when it ended the sentence (so sentence splitting still works)."""
    rest = match.string[match.end():]
    if match.group(0).endswith(".") and re.match(r"\s*$|\s+[\"'(]?[A-Z]", rest):
        return out + "."
    return out


def _abbreviations(t: str) -> str:
    # "Main St." is a street, "St. Paul" a saint; "Mulholland Dr." a drive, "Dr. Smith" a doctor
    for place in (r"\b([A-Z][a-z]+)", r"\b(\d+(?:st|nd|rd|th))"):
        t = re.sub(place + rf" St\.{_SENTENCE_END}", r"\1 Street.", t)
        t = re.sub(place + r" St\.(?!\s+[A-Z])", r"\1 Street", t)
    t = re.sub(r"\bSt\.", "Saint", t)
    t = re.sub(r"\bDr\.(?=\s+[A-Z])", "Doctor", t)
    t = re.sub(r"\b([A-Z][a-z]+) Dr\.(?=\s*$)", r"\1 Drive.", t)
    t = re.sub(r"\b([A-Z][a-z]+) Dr\.", r"\1 Drive", t)
    t = re.sub(r"\bDr\.", "Doctor", t)
    t = re.sub(r"\b[Nn]o\.\s?(?=\d)", "number ", t)
    t = re.sub(r"\b[Nn]os\.\s?(?=\d)", "numbers ", t)
    t = re.sub(r"\b(?:[A-Z]\.){2,}", lambda m: _keep_period(m, " ".join(m.group(0).replace(".", ""))), t)  # U.S.A.
    for table, terminal in ((TITLES, False), (MONTH_ABBR, False), (TERMINAL, True), (INLINE, False)):
        for abbr, full in table.items():
            pattern = rf"(?<![\w.]){re.escape(abbr)}"
            if abbr[-1].isalpha():
                pattern += r"(?!\w)"
            if terminal:
                t = re.sub(pattern + _SENTENCE_END, full + ".", t)
            t = re.sub(pattern, full, t)
    return t


def _iso_date(match: re.Match) -> str:
    y, m, d = (int(g) for g in match.groups())
    if not (1 <= m <= 12 and 1 <= d <= 31):
        return match.group(0)
    return f"{MONTHS[m - 1]} {_words(d, 'ordinal')}, {year_words(y)}"


def _us_date(match: re.Match) -> str:
    m, d, y = (int(g) for g in match.groups())
    if not (1 <= m <= 12 and 1 <= d <= 31):
        return match.group(0)
    if y < 100:
        y += 2000 if y < 50 else 1900
    return f"{MONTHS[m - 1]} {_words(d, 'ordinal')}, {year_words(y)}"


def _month_day(match: re.Match) -> str:
    month, day, year = match.group(1), int(match.group(2)), match.group(3)
    if not 1 <= day <= 31:
        return match.group(0)
    out = f"{month} {_words(day, 'ordinal')}"
    return f"{out}, {year_words(int(year))}" if year else out


def _day_month(match: re.Match) -> str:
    day, month, year = int(match.group(1)), match.group(2), match.group(3)
    if not 1 <= day <= 31:
        return match.group(0)
    out = f"the {_words(day, 'ordinal')} of {month}"
    return f"{out}, {year_words(int(year))}" if year else out


def _meridiem(m: str | None) -> str:
    return "" if not m else (" a m" if m[0].lower() == "a" else " p m")


def _time(match: re.Match) -> str:
    hour, minute, second, mer = int(match.group(1)), int(match.group(2)), match.group(3), match.group(4)
    if hour > 24 or minute > 59:
        return match.group(0)
    if minute == 0:
        mins = "" if mer else ("o'clock" if hour <= 12 else "hundred")
    elif minute < 10:
        mins = f"oh {_words(minute)}"
    else:
        mins = _words(minute)
    out = f"{_words(hour)} {mins}".strip()
    if second and int(second):
        out += f" and {_words(int(second))} second{'s' if int(second) != 1 else ''}"
    return _keep_period(match, out + _meridiem(mer))


def _hour_meridiem(match: re.Match) -> str:
    hour = int(match.group(1))
    if not 1 <= hour <= 12:
        return match.group(0)
    return _keep_period(match, _words(hour) + _meridiem(match.group(2)))


def _scale(match: re.Match) -> str | None:
    groups = match.groupdict()
    return groups.get("s1") or groups.get("s2") or groups.get("s3")


def _money(match: re.Match) -> str:
    symbol, amount, scale = match.group("symbol"), match.group("amount"), _scale(match)
    sign = "minus " if match.group("sign") else ""
    one, many, sub_one, sub_many = CURRENCIES[CURRENCY_SYMBOLS[symbol]]
    if scale:
        return f"{sign}{number_words(amount)} {SCALES[scale]} {many}"
    return sign + _money_amount(amount, one, many, sub_one, sub_many)


def _money_amount(amount: str, one: str, many: str, sub_one: str, sub_many: str) -> str:
    whole, _, frac = amount.replace(",", "").partition(".")
    units = int(whole or 0)
    if frac and (len(frac) > 2 or not sub_one):  # "$0.005", "¥3.5": read as a decimal
        return f"{number_words(amount)} {many}"
    cents = int((frac + "00")[:2]) if frac else 0
    parts = [f"{_words(units)} {one if units == 1 else many}"] if units or not cents else []
    if cents:
        parts.append(f"{_words(cents)} {sub_one if cents == 1 else sub_many}")
    return " and ".join(parts)


def _money_code(match: re.Match) -> str:
    amount, scale, code = match.group("amount"), _scale(match), match.group("code").upper()
    one, many, sub_one, sub_many = CURRENCIES[code]
    if scale:
        return f"{number_words(amount)} {SCALES[scale]} {many}"
    return _money_amount(amount, one, many, sub_one, sub_many)


def _decade(match: re.Match) -> str:
    digits = match.group(1) or match.group(2)
    if len(digits) == 2:
        return _plural_words(_words(int(digits)))
    return _plural_words(year_words(int(digits)))


def _unit(match: re.Match) -> str:
    amount, unit = match.group(1), match.group(2)
    singular, plural = UNITS[unit]
    return f"{number_words(amount)} {singular if _is_one(amount) else plural}"


def _fraction(match: re.Match) -> str:
    num, den = int(match.group(1)), int(match.group(2))
    if (num, den) == (24, 7):
        return "twenty-four seven"
    if den == 0 or den > 16 or num > 99:
        return f"{_words(num)} over {_words(den)}"
    if den == 1:
        return _words(num)
    name = {2: "half", 4: "quarter"}.get(den) or _words(den, "ordinal")
    if num != 1:
        name = "halves" if den == 2 else name + "s"
    return f"{'one' if num == 1 else _words(num)} {name}"


def _plain_number(match: re.Match) -> str:
    text = match.group(0)
    if re.fullmatch(r"\d+(?:\.\d+){2,}", text):  # version numbers: 3.10.2
        return " point ".join(_words(int(p)) for p in text.split("."))
    if re.fullmatch(r"\d{4}", text) and 1100 <= int(text) <= 2099:
        return year_words(int(text))  # a bare four-digit number in this range reads as a year
    return number_words(text)


# rules in order: each sees the output of the ones before
_MONTH_NAMES = "|".join(MONTHS)
_Rule = tuple[re.Pattern, Union[str, Callable[[re.Match], str]]]
_ADDRESSES: list[_Rule] = [  # before the abbreviations: addresses hold dots and capitals of their own
    (re.compile(r"\b((?:https?://|www\.)[^\s<>\"')\]]+?)([.,;:!?)]*(?:\s|$))", re.I), _url),
    (re.compile(r"\b([\w.+-]+)@([\w-]+(?:\.[\w-]+)+)\b"), _email),
]
_RULES: list[_Rule] = [
    (re.compile(r"(?<![\w-])(\+?\d{1,3}[ .-])?(?:\(\d{3}\)\s?|\d{3}[-. ])\d{3}[-.]\d{4}\b"), _phone),
    (re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b"), _iso_date),
    (re.compile(r"(?<![\d/])(\d{1,2})/(\d{1,2})/(\d{4}|\d{2})(?![\d/])"), _us_date),
    (re.compile(r"(?<=\d)-(?=\$?\d)"), " to "),  # ranges 5-10, 1990-1995
    (re.compile(r"(?<=[A-Za-z])-(?=\d)"), " "),  # COVID-19
    (re.compile(r"\b([A-G])#"), r"\1 sharp"),
    (re.compile(r"#\s?(?=\d)"), "number "),
    (re.compile(r"#(?=[A-Za-z])"), "hashtag "),
    (re.compile(rf"\b({_MONTH_NAMES})\.? (\d{{1,2}})(?:st|nd|rd|th)?\b(?![:\d])(?:,? (\d{{4}})\b)?"), _month_day),
    (re.compile(rf"\b(\d{{1,2}})(?:st|nd|rd|th)? (?:of )?({_MONTH_NAMES})\b(?:,? (\d{{4}})\b)?"), _day_month),
    (re.compile(r"\b(\d{1,2}):(\d{2})(?::(\d{2}))?(?:\s?([AaPp])\.?[Mm]\b\.?)?"), _time),
    (re.compile(r"\b(\d{1,2})\s?([AaPp])\.?[Mm]\b\.?"), _hour_meridiem),
    (re.compile(rf"(?P<sign>-)?(?P<symbol>US\$|[$£€¥₹])\s?(?P<amount>{_NUM})"
                rf"(?:\s?(?P<s1>mn|bn|tn)\b|(?P<s2>[kKmMbBT])\b|\s(?P<s3>thousand|million|billion|trillion)\b)?"), _money),
    (re.compile(rf"\b(?P<amount>{_NUM})(?:\s?(?P<s1>mn|bn|[kKMB])\b|\s(?P<s3>thousand|million|billion|trillion))?"
                r"\s?(?P<code>USD|EUR|GBP|usd|eur|gbp)\b"), _money_code),
    (re.compile(r"\b(\d{1,2})\s?¢"), lambda m: f"{_words(int(m.group(1)))} cent{'s' if m.group(1) != '1' else ''}"),
    (re.compile(r"\b(\d{3}0)'?s\b|(?:(?<=\b[Tt]he )|')([2-9]0)'?s\b"), _decade),
    (re.compile(r"\b(\d+)(?:st|nd|rd|th)\b"), lambda m: _words(int(m.group(1)), "ordinal")),
    (re.compile(rf"(-?(?:{_NUM}))\s?(?:%|per ?cent\b)"), lambda m: f"{number_words(m.group(1))} percent"),
    (re.compile(rf"(-?(?:{_NUM}))\s?({'|'.join(sorted(map(re.escape, UNITS), key=len, reverse=True))})(?![\w/°])"), _unit),
    (re.compile(r"\b(\d+(?:\.\d+)?)x\b"), lambda m: f"{number_words(m.group(1))} times"),
    (re.compile(r"(?<=\d)\s?x\s?(?=\d)"), " by "),  # 1920x1080
    (re.compile(r"(?<![\d/.])(\d+)/(\d+)(?![\d/])"), _fraction),
    (re.compile(r"(?<![\w.])-(?=\d)"), "minus "),
    (re.compile(r"(?<=[A-Za-z])(?=\d)|(?<=\d)(?=[A-Za-z])"), " "),  # mp3 -> mp 3
    (re.compile(r"\d+(?:\.\d+){2,}|" + _NUM), _plain_number),
    (re.compile(r"\band/or\b", re.I), "and or"),
    (re.compile(r"\b(he|she|his|her|him)/(she|he|her|his|him)\b", re.I), r"\1 or \2"),
]


def normalize_text(text: str) -> str:
    """Rewrite English text so that every token is a speakable word.

    Handles numbers (cardinals, ordinals, decimals, negatives, thousands separators, ranges,
    fractions, versions), years and decades, money ($ £ € ¥ ₹, ISO codes, k/M/bn scales),
    percentages, times (12 h and 24 h), dates (ISO, US, "Jan. 5", "5 March 2024"), titles and
    common abbreviations, units, phone numbers, URLs and e-mail addresses, symbols, and the
    markdown and emoji of chat replies."""
    t = _clean_markup(text)
    t = " ".join(t.split())
    for pattern, repl in _ADDRESSES:
        t = pattern.sub(repl, t)
    t = _abbreviations(t)
    for pattern, repl in _RULES:
        t = pattern.sub(repl, t)
    for sym, word in SYMBOLS:
        t = t.replace(sym, word)
    t = re.sub(r"\s-+\s", ", ", t)  # a dash between words is a pause
    t = re.sub(r",(?=[A-Za-z])", ", ", t)
    t = " ".join(t.split())
    t = re.sub(r"\s+([,.;:!?])", r"\1", t)
    t = re.sub(r",(?:\s*,)+", ",", t)
    t = re.sub(r"([,;:])(?=[.!?])", "", t)
    return t.strip()


# --------------------------------------------------------------------------- chunking
def split_sentences(text: str, max_chars: int = 250, min_chars: int = 0) -> list[str]:
    """Split text into chunks of at most ``max_chars``: sentences (pysbd); an over-long sentence
    is cut at , ; : (pieces regrouped up to the limit), then at spaces. Sentences shorter than
    ``min_chars`` are joined with the next one (fewer, more natural chunks); chunks without a
    letter or digit ("...", "!") are attached to their neighbour."""
    import pysbd

    if max_chars < 1:
        raise ValueError(f"max_chars must be at least 1, got {max_chars}")
    text = " ".join(text.split())
    if not text:
        return []
    sentences = [s.strip() for s in pysbd.Segmenter(language="en", clean=False).segment(text) if s.strip()]
    chunks: list[str] = []
    for sentence in sentences:
        if chunks and not re.search(r"\w", sentence):  # stray punctuation
            chunks[-1] = f"{chunks[-1]}{sentence}" if len(chunks[-1]) + len(sentence) <= max_chars else chunks[-1]
            continue
        if chunks and len(chunks[-1]) < min_chars and len(chunks[-1]) + 1 + len(sentence) <= max_chars:
            chunks[-1] = f"{chunks[-1]} {sentence}"
            continue
        if len(sentence) <= max_chars:
            chunks.append(sentence)
            continue
        pieces: list[str] = []
        for clause in re.split(r"(?<=[,;:])\s+", sentence):
            while len(clause) > max_chars:
                cut = clause.rfind(" ", 0, max_chars + 1)
                cut = cut if cut > 0 else max_chars
                pieces.append(clause[:cut].strip())
                clause = clause[cut:].strip()
            if clause:
                pieces.append(clause)
        group = pieces[0]
        for piece in pieces[1:]:
            if len(group) + 1 + len(piece) <= max_chars:
                group = f"{group} {piece}"
            else:
                chunks.append(group)
                group = piece
        chunks.append(group)
    return [c for c in chunks if c]


# --------------------------------------------------------------------------- audio joining
def fade_ramps(n: int, curve: str = "equal_power") -> tuple[np.ndarray, np.ndarray]:
    """Fade-out and fade-in gains [n] of a cross-fade (``curve``: "equal_power" or "linear")."""
    x = (np.arange(n, dtype=np.float64) + 0.5) / n  # strictly inside (0, 1): no sample is dropped
    if curve == "linear":
        return (1.0 - x).astype(np.float32), x.astype(np.float32)
    return np.cos(x * np.pi / 2).astype(np.float32), np.sin(x * np.pi / 2).astype(np.float32)


def crossfade_join(
    chunks: list[np.ndarray],
    sample_rate: int = 16000,
    fade_ms: float = 30.0,
    pause_ms: float = 0.0,
    curve: str = "equal_power",
) -> np.ndarray:
    """Join 1-D audio chunks into one float32 array.

    Without a pause, neighbours overlap by ``fade_ms`` with a cross-fade (``curve``:
    "equal_power" - cos/sin, keeps the loudness of uncorrelated signals such as two speech
    segments - or "linear", keeps the amplitude of identical signals): the output has
    ``sum(lengths) - (n - 1) * fade`` samples. With ``pause_ms`` > 0, each chunk fades out over
    ``fade_ms``, ``pause_ms`` of silence follows, and the next chunk fades in: the output has
    ``sum(lengths) + (n - 1) * pause`` samples. A fade never exceeds half of either chunk."""
    if curve not in ("equal_power", "linear"):
        raise ValueError(f"curve must be 'equal_power' or 'linear', got {curve!r}")
    parts = [np.asarray(c, dtype=np.float32).reshape(-1) for c in chunks]
    parts = [p for p in parts if p.size]
    if not parts:
        return np.zeros(0, dtype=np.float32)
    pause = max(int(round(sample_rate * pause_ms / 1000)), 0)
    if not pause:  # each chunk a segment of its own, cross-faded into the previous ones
        stream = CrossfadeStream(sample_rate, fade_ms, curve)
        return np.concatenate([stream.add(part, new_segment=True) for part in parts] + [stream.finish()])
    fade = max(int(round(sample_rate * fade_ms / 1000)), 0)
    out: list[np.ndarray] = []
    for i, part in enumerate(parts):
        part = part.copy()
        n = min(fade, part.size // 2)
        if n:
            fade_out, fade_in = fade_ramps(n, curve)
            if i > 0:
                part[:n] *= fade_in
            if i < len(parts) - 1:
                part[-n:] *= fade_out
        out.append(part)
        if i < len(parts) - 1:
            out.append(np.zeros(pause, dtype=np.float32))
    return np.concatenate(out)


class CrossfadeStream:
    """``crossfade_join`` without a pause, for audio that arrives piece by piece (``crossfade_join``
    itself runs on it, each chunk a segment).

    ``add(piece)`` continues the current segment seamlessly; ``add(piece, new_segment=True)``
    starts a segment that cross-fades with what came before. Each call returns the samples that
    are final; the newest ``fade_ms`` are held back until the next piece or ``finish()``. Joined
    this way, segments give exactly ``crossfade_join``'s output when each segment's first piece
    holds at least two fades of samples (the fade is capped by the first piece, not the segment)."""

    def __init__(self, sample_rate: int = 16000, fade_ms: float = 30.0, curve: str = "equal_power"):
        self.fade = max(int(round(sample_rate * fade_ms / 1000)), 0)
        self.curve = curve
        self.held = np.zeros(0, dtype=np.float32)  # newest samples, not final yet [<= fade]
        self.total = 0  # samples joined so far (handed out + held)

    def add(self, piece: np.ndarray, new_segment: bool = False) -> np.ndarray:
        piece = np.asarray(piece, dtype=np.float32).reshape(-1)
        if not piece.size:
            return np.zeros(0, dtype=np.float32)
        n = min(self.fade, self.total // 2, piece.size // 2) if new_segment else 0
        if n:
            fade_out, fade_in = fade_ramps(n, self.curve)
            joined = np.concatenate([self.held[:-n], self.held[-n:] * fade_out + piece[:n] * fade_in, piece[n:]])
        else:
            joined = np.concatenate([self.held, piece])
        self.total += piece.size - n
        keep = min(self.fade, joined.size)
        self.held = joined[joined.size - keep:]
        return joined[: joined.size - keep]

    def finish(self) -> np.ndarray:
        """The held-back end."""
        out, self.held = self.held, np.zeros(0, dtype=np.float32)
        return out
