"""Built-in chat templates, as data: what goes before, after and between the moves.

Each template is a table, not code: a header per role, the end-of-turn marker per role (trained
together with player-2 moves, so the model learns to stop), a separator after it, text before
the first move and after the last. `{bos}` and `{eos}` stand for the tokenizer's own tokens.
Roles a template has no header for fall back: thought and tool_call speak as the assistant,
context as the user, tool as the template's tool role or else the user.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Template:
    name: str
    headers: dict[str, str]
    eot: str = ""  # end-of-turn marker after every move
    sep: str = ""  # after the marker, between moves; never trained
    begin: str = ""
    end: str = ""  # after the last move's marker; trained with it unless only whitespace
    fold_system: bool = False  # no system role: the system text opens the first user move
    eot_by_role: dict[str, str] = field(default_factory=dict)

    def header(self, role: str) -> str:
        for candidate in (role, *FALLBACK.get(role, ())):
            if candidate in self.headers:
                return self.headers[candidate]
        return self.headers.get("user", "")

    def marker(self, role: str) -> str:
        for candidate in (role, *FALLBACK.get(role, ())):
            if candidate in self.eot_by_role:
                return self.eot_by_role[candidate]
        return self.eot


FALLBACK = {"thought": ("assistant",), "tool_call": ("assistant",), "context": ("user",), "tool": ("user",), "text": ()}


def _roles(pattern: str, names: dict[str, str]) -> dict[str, str]:
    return {role: pattern.format(name=name) for role, name in names.items()}


TEMPLATES: dict[str, Template] = {
    "chatml": Template(
        "chatml",
        _roles("<|im_start|>{name}\n", {"system": "system", "user": "user", "assistant": "assistant", "tool": "tool"}),
        eot="<|im_end|>",
        sep="\n",
        end="\n",
    ),
    "llama-3": Template(
        "llama-3",
        _roles("<|start_header_id|>{name}<|end_header_id|>\n\n", {"system": "system", "user": "user", "assistant": "assistant", "tool": "ipython"}),
        eot="<|eot_id|>",
        begin="<|begin_of_text|>",
    ),
    "phi-3": Template(
        "phi-3",
        _roles("<|{name}|>\n", {"system": "system", "user": "user", "assistant": "assistant"}),
        eot="<|end|>",
        sep="\n",
        end="\n{eos}",
    ),
    "mistral": Template(
        "mistral",
        {"user": "[INST] ", "assistant": ""},
        eot="",
        eot_by_role={"user": " [/INST]", "assistant": "{eos}"},
        begin="{bos}",
        fold_system=True,
    ),
    "gemma": Template(
        "gemma",
        _roles("<start_of_turn>{name}\n", {"user": "user", "assistant": "model"}),
        eot="<end_of_turn>",
        sep="\n",
        end="\n",
        begin="{bos}",
        fold_system=True,
    ),
    "plain": Template(
        "plain",
        {"system": "System: ", "user": "Human: ", "assistant": "Assistant: ", "tool": "Tool: "},
        sep="\n\n",
        end="{eos}",
    ),
    "raw": Template("raw", {"text": "", "user": "", "assistant": "", "system": ""}, sep="\n\n", end="{eos}"),
}
