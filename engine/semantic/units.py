"""RVQ-1 speech units <-> token strings, for each prompt family (the one place that knows)."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

SOSP, EOSP = "<sosp>", "<eosp>"
NUM_UNITS = 1024


@dataclass(frozen=True)
class UnitFormat:
    """How one family writes a unit: AnyGPT ``<🗣️12>``, SpeechGPT-Gen ``<12>``."""

    family: str
    prefix: str
    suffix: str = ">"
    num_units: int = NUM_UNITS

    def token(self, unit: int) -> str:
        return f"{self.prefix}{unit}{self.suffix}"

    def all_tokens(self) -> list[str]:
        return [self.token(i) for i in range(self.num_units)]

    def encode(self, units: list[int]) -> str:
        """``<sosp>`` + one token per 50 Hz frame (repeats kept) + ``<eosp>``."""
        bad = [u for u in units if not 0 <= int(u) < self.num_units]
        if bad:
            raise ValueError(f"{len(bad)} speech unit id(s) outside 0..{self.num_units - 1} (e.g. {bad[0]}); RVQ-1 ids come from the codec")
        return SOSP + "".join(self.token(int(u)) for u in units) + EOSP

    @property
    def pattern(self) -> re.Pattern:
        return re.compile(re.escape(self.prefix) + r"(-?\d+)" + re.escape(self.suffix))

    def parse(self, text: str) -> "ParsedSpeech":
        """Units of the first speech span in ``text``, tolerating malformed output:
        no ``<sosp>`` -> units found anywhere; no ``<eosp>`` -> to the end (warning);
        ids out of range -> dropped (warning); text inside the span -> dropped (warning)."""
        warnings: list[str] = []
        start = text.find(SOSP)
        if start < 0:
            body, before, after = text, "", ""
            if self.pattern.search(text):
                warnings.append("speech units without <sosp>")
        else:
            before = text[:start]
            rest = text[start + len(SOSP) :]
            end = rest.find(EOSP)
            if end < 0:
                warnings.append("speech span not closed by <eosp>; used the units up to the end")
                body, after = rest, ""
            else:
                body, after = rest[:end], rest[end + len(EOSP) :]
        units: list[int] = []
        dropped = 0
        for m in self.pattern.finditer(body):
            u = int(m.group(1))
            if 0 <= u < self.num_units:
                units.append(u)
            else:
                dropped += 1
        if dropped:
            warnings.append(f"{dropped} unit id(s) out of range 0..{self.num_units - 1} dropped")
        stray = self.pattern.sub("", body).strip() if start >= 0 else ""
        if stray:
            warnings.append(f"text inside the speech span dropped: {stray[:40]!r}")
        for w in warnings:
            log.warning("semantic model output: %s", w)
        return ParsedSpeech(units, before, after, warnings)


@dataclass
class ParsedSpeech:
    units: list[int]
    before: str = ""
    after: str = ""
    warnings: list[str] = field(default_factory=list)


ANYGPT_UNITS = UnitFormat("anygpt", "<🗣️")
SPEECHGPT_GEN_UNITS = UnitFormat("speechgpt_gen", "<")


def unit_format(family: str) -> UnitFormat:
    """The unit vocabulary of a prompt family."""
    if family == "anygpt":
        return ANYGPT_UNITS
    if family == "speechgpt_gen":
        return SPEECHGPT_GEN_UNITS
    raise ValueError(f"unknown prompt family {family!r}; use anygpt or speechgpt_gen")
