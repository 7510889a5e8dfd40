"""Conversation history kept within the LLM's context window."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from engine.semantic.prompts import PromptFamily, Turn

__all__ = ["Conversation", "Turn", "render_turn"]


@dataclass
class Conversation:
    """Finished turns, oldest first. ``render`` fits them into a token budget."""

    max_tokens: int = 4096  # context window of the model
    turns: list[Turn] = field(default_factory=list)

    def append(self, turn: Turn) -> None:
        self.turns.append(turn)

    def clear(self) -> None:
        self.turns.clear()

    def __len__(self) -> int:
        return len(self.turns)

    def render(self, family: PromptFamily, count_tokens: Callable[[str], int], budget: int) -> list[str]:
        """Rendered past turns (oldest first) within ``budget`` tokens.

        Newest turns are kept first. The newest turn keeps its speech when it fits; older turns
        are rendered with their transcripts instead of speech units; once a turn does not fit,
        it and every older turn are dropped."""
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
                break
        return list(reversed(kept))


def render_turn(family: PromptFamily, turn: Turn, speech: bool) -> str:
    """One past turn; without ``speech`` a spoken message is replaced by its transcript and the
    reply keeps only its text."""
    spoken = speech and turn.user_units is not None
    if spoken:
        message = family.user_message(None, turn.user_units)
    else:
        message = family.user_message(turn.user_text if turn.user_text is not None else turn.transcript, None)
    return family.render_turn(message, turn.transcript, turn.reply_text, turn.reply_units if speech else None, spoken)
