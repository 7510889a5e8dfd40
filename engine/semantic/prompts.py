"""Prompt templates of the two families, rendered byte for byte, and reply scaffolds.

Two rules keep what the model sees identical to what it was trained on:

* a generation prompt ends right after the speaker tag's colon (``[MMGPT]:``, ``[SpeechGPT]:``);
  the space after it belongs to the reply, as in the official AnyGPT inference code. With
  SentencePiece (LLaMA) tokenizers a trailing space would otherwise become a lone ``▁`` token that
  the model never saw before a word;
* a reply is generated along a *scaffold*: fixed strings we write (``str``) and slots the model
  fills (``Slot``), each ending at its stop token. Writing the fixed parts ourselves keeps every
  reply well-formed (a transcript, a text answer, then a closed speech span) whatever the model
  does. ``fill_scaffold`` renders a scaffold with given slot contents; it equals ``reply`` of the
  same turn, so history, training data and generation agree.

AnyGPT (facts from the public AnyGPT code: MMGPT conversation template, base-model prompter,
instruction lists, and the speech-conversation SFT sample):
    chat   {system}\\n[Human]: {msg}<eoh>\\n[MMGPT]: <-Ins-> {transcript}\\n <-Res-> {text} <sosp>...<eosp><eos>\\n
           spoken msg = ``<sosp>...<eosp> Please recognize the voice command and give reply and voice``
           typed msg  = ``{text}`` as typed (the chat CLI's "interleaved" task), reply ``{text}\\n<sosp>...<eosp>``
    base   [Human]: {instruction} This is input: {text}<eoh> [MMGPT]: <sosp>...<eosp><eos>     (TTS)
           [Human]: {instruction} <sosp>...<eosp><eoh> [MMGPT]: {text}<eos>                       (ASR)
SpeechGPT-Gen (chain of modality, SpeechGPT convention; our fine-tunes):
    [Human]: {msg} <eoh>. [SpeechGPT]: {transcript}; [ta] {text}; [ua] <sosp>...<eosp><eoa>\\n
    [Human]: {instruction} This is input: {text} <eoh>. [SpeechGPT]: <sosp>...<eosp><eoa>         (TTS)
    [Human]: {instruction} This is input: <sosp>...<eosp> <eoh>. [SpeechGPT]: {text}<eoa>           (ASR)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from engine.semantic.units import EOSP, SOSP, UnitFormat, unit_format


@dataclass
class Slot:
    name: str  # transcript | text | units
    stops: tuple[str, ...]  # single tokens that end the slot (kept in the output); the first closes a cut-off slot
    banned: tuple[str, ...] = ()  # tokens never sampled here
    max_tokens: int | None = None  # None: the caller's budget


Segment = str | Slot


@dataclass
class Turn:
    """One finished exchange, as kept in the history."""

    user_text: str | None = None  # typed message
    user_units: list[int] | None = None  # spoken message
    transcript: str = ""  # what the user said (for speech) or typed
    reply_text: str = ""
    reply_units: list[int] = field(default_factory=list)


def fill_scaffold(scaffold: list[Segment], values: dict[str, str]) -> str:
    """The reply text a scaffold yields when each slot produces ``values[slot.name]`` and stops at
    its first stop token."""
    out = []
    for seg in scaffold:
        out.append(seg if isinstance(seg, str) else values.get(seg.name, "") + seg.stops[0])
    return "".join(out)


class PromptFamily:
    name: str
    units: UnitFormat
    special_tokens: tuple[str, ...]
    end_of_turn: str
    instructions_tts: tuple[str, ...]
    instructions_asr: tuple[str, ...]

    def user_message(self, text: str | None, units: list[int] | None) -> str:
        """The [Human] message for typed ``text`` or spoken ``units``."""
        return self.units.encode(units) if units is not None else (text or "")

    def render_turn(self, message: str, transcript: str, text: str, units: list[int] | None, spoken: bool) -> str:
        """A finished turn as it appears in the history (ends with a newline)."""
        return self.chat_prompt([], message, system=False) + self.reply(transcript, text, units, spoken) + "\n"

    def tts_scaffold(self) -> list[Segment]:
        return [f" {SOSP}", Slot("units", (EOSP,)), self.end_of_turn]

    def asr_scaffold(self) -> list[Segment]:
        return [Slot("text", (self.end_of_turn,), banned=(SOSP, EOSP))]

    def tts_response(self, units: list[int]) -> str:
        return fill_scaffold(self.tts_scaffold(), {"units": "".join(self.units.token(u) for u in units)})

    def asr_response(self, text: str) -> str:
        return fill_scaffold(self.asr_scaffold(), {"text": f" {text}"})

    # implemented by the families
    def chat_prompt(self, history: list[str], message: str, system: bool = True) -> str: ...
    def reply(self, transcript: str, text: str, units: list[int] | None, spoken: bool) -> str: ...
    def chat_scaffold(self, spoken: bool, typed: str | None = None) -> list[Segment]: ...
    def tts_prompt(self, text: str, instruction: int = 0) -> str: ...
    def asr_prompt(self, units: list[int], instruction: int = 0) -> str: ...


class AnyGPTPrompts(PromptFamily):
    name = "anygpt"
    units = unit_format("anygpt")
    system = "You are an AI assistant named MMGPT who can understand and generate multimodal content, including text, speech, images and audio."
    special_tokens = ("[Human]", "[MMGPT]", "<eoh>", "<eos>", "<-Ins->", "<-Res->", SOSP, EOSP)
    end_of_turn = "<eos>"
    # the official chat CLI's phrasings: spoken input is its "Speech-Instruction" task; typed input is
    # its default "interleaved" task, which passes the text as typed ("Text-Instruction2" adds a suffix)
    spoken_suffix = "Please recognize the voice command and give reply and voice"
    typed_suffixes = {
        "interleaved": "",
        "Text-Instruction2": "Please interpret the user's text input, create a textual response, and subsequently produce a corresponding voice reply.",
    }
    typed_task = "interleaved"
    # phrasings from the official instruction lists (text2speech.txt, speech2text.txt)
    instructions_tts = (
        "I require you to translate these letters into understandable spoken words.",
        "Please read this text out loud so I can hear it.",
        "Can you translate these written words into audible speech for me?",
        "Would you read these written words so that they can be heard?",
    )
    instructions_asr = (
        "Convert the speech into a written transcript.",
        "Please transcribe this speech into written text.",
        "Generate a transcript of the spoken words.",
        "Write down the spoken words accurately.",
    )

    def user_message(self, text: str | None, units: list[int] | None) -> str:
        if units is not None:
            return f"{self.units.encode(units)} {self.spoken_suffix}"
        suffix = self.typed_suffixes[self.typed_task]
        return f"{text or ''} {suffix}" if suffix else (text or "")

    def chat_prompt(self, history: list[str], message: str, system: bool = True) -> str:
        head = f"{self.system}\n" if system else ""
        return head + "".join(history) + f"[Human]: {message}<eoh>\n[MMGPT]:"

    def reply(self, transcript: str, text: str, units: list[int] | None, spoken: bool) -> str:
        speech = self.units.encode(units) if units else ""
        if spoken:
            return f" <-Ins-> {transcript}\n <-Res-> {text}{' ' + speech if speech else ''}<eos>"
        return f" {text}{chr(10) + speech if speech else ''}<eos>"

    def chat_scaffold(self, spoken: bool, typed: str | None = None) -> list[Segment]:
        text_slot = Slot("text", (SOSP,), banned=("<eos>", EOSP, "<-Res->", "<-Ins->"))
        units = [Slot("units", (EOSP,)), "<eos>"]
        if spoken:
            return [" <-Ins->", Slot("transcript", ("<-Res->",), banned=(SOSP, EOSP, "<eos>", "<-Ins->")), text_slot] + units
        return [text_slot] + units

    def tts_prompt(self, text: str, instruction: int = 0) -> str:
        return f"[Human]: {self.instructions_tts[instruction]} This is input: {text}<eoh> [MMGPT]:"

    def asr_prompt(self, units: list[int], instruction: int = 0) -> str:
        return f"[Human]: {self.instructions_asr[instruction]} {self.units.encode(units)}<eoh> [MMGPT]:"


class SpeechGPTGenPrompts(PromptFamily):
    name = "speechgpt_gen"
    units = unit_format("speechgpt_gen")
    special_tokens = ("[Human]", "[SpeechGPT]", "<eoh>", "<eoa>", "[ta]", "[ua]", SOSP, EOSP)
    end_of_turn = "<eoa>"
    instructions_tts = (
        "Speak this text aloud.",
        "Read the following sentence out loud.",
        "Convert this text into speech.",
        "Say this in a natural voice.",
    )
    instructions_asr = (
        "Transcribe this speech.",
        "Write down what is said in this audio.",
        "Convert this speech into text.",
        "What does the speaker say?",
    )

    def chat_prompt(self, history: list[str], message: str, system: bool = True) -> str:
        return "".join(history) + f"[Human]: {message} <eoh>. [SpeechGPT]:"

    def reply(self, transcript: str, text: str, units: list[int] | None, spoken: bool) -> str:
        speech = self.units.encode(units) if units else ""
        return f" {transcript}; [ta] {text}; [ua] {speech}<eoa>"

    def chat_scaffold(self, spoken: bool, typed: str | None = None) -> list[Segment]:
        head: list[Segment] = [Slot("transcript", ("[ta]",), banned=(SOSP, EOSP, "<eoa>", "[ua]"))] if spoken else [f" {typed}; [ta]"]
        return head + [Slot("text", ("[ua]",), banned=(SOSP, EOSP, "<eoa>", "[ta]")), f" {SOSP}", Slot("units", (EOSP,)), "<eoa>"]

    def tts_prompt(self, text: str, instruction: int = 0) -> str:
        return f"[Human]: {self.instructions_tts[instruction]} This is input: {text} <eoh>. [SpeechGPT]:"

    def asr_prompt(self, units: list[int], instruction: int = 0) -> str:
        return f"[Human]: {self.instructions_asr[instruction]} This is input: {self.units.encode(units)} <eoh>. [SpeechGPT]:"


def prompt_family(name: str) -> PromptFamily:
    if name == "anygpt":
        return AnyGPTPrompts()
    if name == "speechgpt_gen":
        return SpeechGPTGenPrompts()
    raise ValueError(f"unknown prompt family {name!r}; use anygpt or speechgpt_gen")


_UNSHOWABLE = re.compile("[\ufffd\x00-\x08\x0b-\x1f\x7f-\x9f]")


def displayable(text: str) -> str:
    """Text without what a decoder yields for bytes that never formed a character (U+FFFD) and
    without control characters (newlines and tabs stay)."""
    return _UNSHOWABLE.sub("", text)


def clean_slot_text(text: str, stop: str | None = None) -> str:
    """Slot output without its stop token, the separators around it ("; ", newlines), and
    anything ``displayable`` drops."""
    if stop and text.endswith(stop):
        text = text[: -len(stop)]
    return displayable(text).strip().rstrip(";").strip()
