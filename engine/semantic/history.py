"""Conversation history kept within the LLM's context window."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from engine.semantic.prompts import PromptFamily, Turn


@dataclass
class Conversation:
    max_tokens: int = 4096  # context window of the model
    turns: list[Turn] = field(default_factory=list)

    def append(self, turn: Turn) -> None:
        self.turns.append(turn)

    def clear(self) -> None:
        self.turns.clear()

    def __len__(self) -> int:
        return len(self.turns)

    def render(self, family: PromptFamily, count_tokens: Callable[[str], int], budget: int) -> list[str]:
        """Rendered past turns, newest kept first, within ``budget`` tokens.

        The newest turn keeps its speech when it fits; older turns are rendered with their
        transcripts instead of speech units; the oldest turns are dropped first."""
        kept: list[str] = []
        used = 0
        for age, turn in enumerate(reversed(self.turns)):
            candidates = [render_turn(family, turn, speech=True), render_turn(family, turn, speech=False)] if age == 0 else [render_turn(family, turn, speech=False)]
            for text in candidates:
                cost = count_tokens(text)
                if used + cost <= budget:
                    kept.append(text)
                    used += cost
                    break
            else:
                break  # this turn does not fit: it and everything older are dropped
        return list(reversed(kept))


def render_turn(family: PromptFamily, turn: Turn, speech: bool) -> str:
    if speech and turn.user_units is not None:
        message = family.user_message(None, turn.user_units)
    else:
        message = turn.user_text if turn.user_text is not None else turn.transcript
    # the chain of modality always states the transcript; AnyGPT only for a spoken message
    spoken = speech and turn.user_units is not None
    transcript = turn.transcript if (family.name == "speechgpt_gen" or spoken) else ""
    return family.render_turn(message, transcript, turn.reply_text, turn.reply_units if speech else None)
