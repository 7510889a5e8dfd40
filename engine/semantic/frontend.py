"""How input text is written for a semantic model trained here: characters or espeak-ng phonemes.

A model trained from scratch (``python -m engine train-llm run --model scratch:SIZE``) records its
choice in its ``config.json`` (``text_units``, ``espeak_voice``); ``SemanticModel`` reads it back and
converts the TTS input with the same ``TextFrontEnd`` the training data was built with, so training
and inference see one representation. Only the *input* of TTS is converted: ASR writes ordinary
text (characters) whatever the choice, because that text is shown and passed on to the chat model.

Phonemes come from the espeak-ng program (``espeak-ng -q --ipa``), a system dependency of the
project. espeak-ng drops punctuation and breaks clauses onto lines of its own, so the text is cut at
punctuation first, each piece is phonemized as a sentence of its own, and the punctuation is put
back: ``"Hello there, friend."`` -> ``"həlˈoʊ ðˈɛɹ, fɹˈɛnd."``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

from engine.errors import ModelUnavailableError

TEXT_UNITS = ("chars", "phonemes")
_PUNCT = re.compile(r"([,.;:!?]+)")
_BATCH_LINES = 400  # pieces per espeak-ng call when converting many texts


@dataclass(frozen=True)
class TextFrontEnd:
    """``chars``: the text with its whitespace collapsed; ``phonemes``: espeak-ng IPA of ``espeak_voice``."""

    text_units: str = "chars"
    espeak_voice: str = "en-us"
    program: str = "espeak-ng"

    def __post_init__(self) -> None:
        if self.text_units not in TEXT_UNITS:
            raise ValueError(f"unknown text_units {self.text_units!r}; use {' or '.join(TEXT_UNITS)}")

    @classmethod
    def from_model_config(cls, config: object | None, default: "TextFrontEnd | None" = None) -> "TextFrontEnd | None":
        """The front end a model's ``config.json`` records, or ``default`` when it records none (a
        public checkpoint or a fine-tune: they read text as given)."""
        units = getattr(config, "text_units", None)
        if not isinstance(units, str):
            return default
        voice = getattr(config, "espeak_voice", None)
        return cls(units, voice if isinstance(voice, str) and voice else "en-us")

    def config_fields(self) -> dict[str, str]:
        """What a saved model records (see ``from_model_config``)."""
        return {"text_units": self.text_units, "espeak_voice": self.espeak_voice}

    def __call__(self, text: str) -> str:
        """``text`` as the model reads it."""
        return self.convert_many([text])[0]

    def convert_many(self, texts: list[str]) -> list[str]:
        """Several texts at once (few espeak-ng processes for a whole corpus)."""
        clean = [" ".join(str(t).split()) for t in texts]
        if self.text_units == "chars":
            return clean
        return self._phonemize(clean)

    # ------------------------------------------------------------------ phonemes
    def _check_program(self) -> None:
        if shutil.which(self.program) is None:
            raise ModelUnavailableError(
                f"this semantic model reads text as phonemes, which needs the {self.program} program; "
                f"install it (apt-get install espeak-ng) or use a model trained with text_units: chars"
            )

    def _run(self, lines: list[str]) -> list[str]:
        """espeak-ng IPA of each line (each ends with a full stop so that it is one clause)."""
        text = "".join(f"{line}.\n" for line in lines)
        proc = subprocess.run([self.program, "-q", "--ipa", "-v", self.espeak_voice, "--stdin"], input=text,
                              capture_output=True, text=True, timeout=60 + len(lines))
        if proc.returncode != 0:
            raise ModelUnavailableError(f"{self.program} failed ({proc.returncode}): {proc.stderr.strip()[-300:]}; "
                                        f"check that the voice {self.espeak_voice!r} exists (espeak-ng --voices)")
        return [" ".join(line.split()) for line in proc.stdout.splitlines() if line.strip()]

    def _pieces(self, text: str) -> list[tuple[str, str]]:
        """(words, punctuation after them) pairs of ``text``."""
        parts = _PUNCT.split(text)
        out = []
        for i in range(0, len(parts), 2):
            words = parts[i].strip()
            punct = parts[i + 1] if i + 1 < len(parts) else ""
            if words or punct:
                out.append((words, punct))
        return out

    def _phonemize(self, texts: list[str]) -> list[str]:
        self._check_program()
        pieces = [self._pieces(t) for t in texts]
        words = [w for ps in pieces for w, _ in ps if w]
        ipa: list[str] = []
        for start in range(0, len(words), _BATCH_LINES):
            batch = words[start : start + _BATCH_LINES]
            out = self._run(batch)
            if len(out) != len(batch):  # espeak-ng split or merged a piece: one call per piece keeps them aligned
                out = [" ".join(self._run([w])) for w in batch]
            ipa.extend(out)
        result, k = [], 0
        for ps in pieces:
            text = ""
            for w, punct in ps:
                if w:
                    text += (" " if text and not text.endswith(" ") else "") + ipa[k]
                    k += 1
                text += punct.strip()
            result.append(text.strip())
        return result
