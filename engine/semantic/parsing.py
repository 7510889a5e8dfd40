"""Robust parsing of a raw reply into (transcript, text, units).

Malformed output never raises: a missing ``<eosp>`` keeps the units up to the end, unit ids out of
range are dropped, text inside a speech span is dropped, an empty reply gives empty fields; each
case is logged and listed in ``ChatReply.warnings``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from engine.semantic.prompts import PromptFamily, clean_slot_text
from engine.semantic.units import EOSP, SOSP

log = logging.getLogger(__name__)


@dataclass
class ChatReply:
    transcript: str  # what the user said (spoken input) or typed
    text: str  # the reply text
    units: list[int]  # the spoken reply, RVQ-1 ids at 50 Hz
    warnings: list[str] = field(default_factory=list)


def parse_reply(family: PromptFamily, raw: str) -> ChatReply:
    """Transcript, answer text and units from the raw reply text after the speaker tag."""
    if not raw.strip():
        log.warning("semantic reply: empty reply")
        return ChatReply("", "", [], ["empty reply"])
    warnings: list[str] = []
    if family.name == "anygpt":
        ins, res = "<-Ins->", "<-Res->"
        if res in raw:
            head, _, body = raw.partition(res)
            transcript = head.split(ins, 1)[1] if ins in head else head
        else:
            transcript, body = "", raw
    else:
        head, sep, body = raw.partition("[ta]")
        transcript, body = (head, body) if sep else ("", raw)
    text_part = body.split("[ua]", 1)[0]
    for end in (SOSP, family.end_of_turn, EOSP):
        text_part = text_part.split(end, 1)[0]
    speech = family.units.parse(body[body.find(SOSP):] if SOSP in body else body)
    warnings += speech.warnings
    if not speech.units:
        warnings.append("the reply has no speech units")
    text = clean_slot_text(family.units.pattern.sub("", text_part))
    reply = ChatReply(clean_slot_text(transcript), text, speech.units, warnings)
    if not reply.text and not reply.units:
        reply.warnings.append("empty reply")
    for w in reply.warnings:
        log.warning("semantic reply: %s", w)
    return reply


def parse_text(family: PromptFamily, raw: str) -> tuple[str, list[str]]:
    """ASR output: the text before the end of turn, speech tokens removed (with a warning)."""
    warnings = []
    text = raw.split(family.end_of_turn, 1)[0]
    if family.units.pattern.search(text) or SOSP in text or EOSP in text:
        warnings.append("speech tokens in a text reply dropped")
        text = family.units.pattern.sub("", text).replace(SOSP, "").replace(EOSP, "")
    text = clean_slot_text(text)
    if not text:
        warnings.append("empty reply")
    for w in warnings:
        log.warning("semantic transcription: %s", w)
    return text, warnings
