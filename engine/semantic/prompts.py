"""Prompt templates of the two families, rendered byte for byte, and reply scaffolds.

A reply is generated along a *scaffold*: fixed strings we write (``str``) and slots the model
fills (``Slot``), each ending at its stop token. Writing the fixed parts ourselves keeps every reply
well-formed (a transcript, a text answer, then a closed speech span) whatever the model does.

AnyGPT (MMGPT chat template; facts from the public AnyGPT code):
    {system}\n[Human]: {msg}<eoh>\n[MMGPT]: <-Ins-> {transcript}\n <-Res-> {text} <sosp>...<eosp><eos>
SpeechGPT-Gen (chain of modality, SpeechGPT convention; our fine-tunes):
    [Human]: {msg} <eoh>. [SpeechGPT]: {transcript}; [ta] {text}; [ua] <sosp>...<eosp><eoa>
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.semantic.units import EOSP, SOSP, UnitFormat, unit_format


@dataclass
class Slot:
    name: str  # transcript | text | units
    stops: tuple[str, ...]  # single tokens that end the slot (kept in the output)
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


class PromptFamily:
    name: str
    units: UnitFormat
    special_tokens: tuple[str, ...]
    end_of_turn: str
    instructions_tts: tuple[str, ...]
    instructions_asr: tuple[str, ...]

    def user_message(self, text: str | None, units: list[int] | None) -> str:
        return self.units.encode(units) if units is not None else (text or "")

    # implemented by the families
    def chat_prompt(self, history: list[str], message: str) -> str: ...
    def render_turn(self, message: str, transcript: str, text: str, units: list[int] | None) -> str: ...
    def chat_scaffold(self, speech_input: bool, typed: str | None = None) -> list[Segment]: ...
    def tts_prompt(self, text: str, instruction: int = 0) -> str: ...
    def asr_prompt(self, units: list[int], instruction: int = 0) -> str: ...

    def tts_scaffold(self) -> list[Segment]:
        return [SOSP, Slot("units", (EOSP,)), self.end_of_turn]

    def asr_scaffold(self) -> list[Segment]:
        return [Slot("text", (self.end_of_turn,), banned=(SOSP,))]


class AnyGPTPrompts(PromptFamily):
    name = "anygpt"
    units = unit_format("anygpt")
    system = "You are an AI assistant named MMGPT who can understand and generate multimodal content, including text, speech, images and audio."
    special_tokens = ("[Human]", "[MMGPT]", "<eoh>", "<eos>", "<-Ins->", "<-Res->", SOSP, EOSP)
    end_of_turn = "<eos>"
    instructions_tts = ("Please read the following text out loud.",)
    instructions_asr = ("Please transcribe this speech into text.",)

    def chat_prompt(self, history: list[str], message: str) -> str:
        return f"{self.system}\n" + "".join(history) + f"[Human]: {message}<eoh>\n[MMGPT]:"

    def render_turn(self, message: str, transcript: str, text: str, units: list[int] | None) -> str:
        ins = f" <-Ins-> {transcript}\n" if transcript else " "
        speech = f" {self.units.encode(units)}" if units else ""
        return f"[Human]: {message}<eoh>\n[MMGPT]:{ins} <-Res-> {text}{speech}<eos>\n"

    def chat_scaffold(self, speech_input: bool, typed: str | None = None) -> list[Segment]:
        head: list[Segment] = [" <-Ins-> ", Slot("transcript", ("<-Res->",), banned=(SOSP, "<eos>")), " "] if speech_input else ["  <-Res-> "]
        return head + [Slot("text", (SOSP,), banned=("<eos>", EOSP)), Slot("units", (EOSP,)), "<eos>"]

    def tts_prompt(self, text: str, instruction: int = 0) -> str:
        return f"[Human]: {self.instructions_tts[instruction]}\nThis is input: {text}<eoh>\n[MMGPT]: "

    def asr_prompt(self, units: list[int], instruction: int = 0) -> str:
        return f"[Human]: {self.instructions_asr[instruction]}\nThis is input: {self.units.encode(units)}<eoh>\n[MMGPT]: "


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

    def chat_prompt(self, history: list[str], message: str) -> str:
        return "".join(history) + f"[Human]: {message} <eoh>. [SpeechGPT]: "

    def render_turn(self, message: str, transcript: str, text: str, units: list[int] | None) -> str:
        speech = self.units.encode(units) if units else ""
        return f"[Human]: {message} <eoh>. [SpeechGPT]: {transcript}; [ta] {text}; [ua] {speech}<eoa>\n"

    def chat_scaffold(self, speech_input: bool, typed: str | None = None) -> list[Segment]:
        head: list[Segment] = (
            [Slot("transcript", ("[ta]",), banned=(SOSP, "<eoa>")), " "] if speech_input else [f"{typed}; [ta] "]
        )
        return head + [Slot("text", ("[ua]",), banned=(SOSP, "<eoa>")), f" {SOSP}", Slot("units", (EOSP,)), "<eoa>"]

    def tts_prompt(self, text: str, instruction: int = 0) -> str:
        return f"[Human]: {self.instructions_tts[instruction]} This is input: {text} <eoh>. [SpeechGPT]: "

    def asr_prompt(self, units: list[int], instruction: int = 0) -> str:
        return f"[Human]: {self.instructions_asr[instruction]} This is input: {self.units.encode(units)} <eoh>. [SpeechGPT]: "


def prompt_family(name: str) -> PromptFamily:
    if name == "anygpt":
        return AnyGPTPrompts()
    if name == "speechgpt_gen":
        return SpeechGPTGenPrompts()
    raise ValueError(f"unknown prompt family {name!r}; use anygpt or speechgpt_gen")


def clean_slot_text(text: str, stop: str | None) -> str:
    """Slot output without its stop token and the separators around it ("; ", newlines)."""
    if stop and text.endswith(stop):
        text = text[: -len(stop)]
    return text.strip().rstrip(";").strip()
