"""The model's own chat template (Jinja, from tokenizer_config.json), with move spans recovered.

The template runs in Jinja's immutable sandbox: a template that reaches for Python internals
(`__class__`, `__mro__`, ...) or mutates its inputs is refused, never executed. transformers'
`{% generation %}...{% endgeneration %}` tag is understood: it marks the text the model
generates, and when a template has it those spans are what training covers.

Spans are recovered by finding each move's text in the output, in order, never starting inside a
special token the template wrote (a move `user` is not the `user` of `<|user|>`). A move the template
drops or rewrites (a role it does not know) cannot be found: the episode is rejected with reason
`template_mismatch` rather than packed with a guessed mask. The end-of-turn marker is the special
token written right after a move's text.

A template that only pastes each move's text, as it is or trimmed (phi-3-mini's does), is
rendered once per shape of conversation instead, and each move's span is where its text was put,
with no search (`gamelog.render.skeleton`).
"""

from __future__ import annotations

import datetime
import json
import re
from functools import lru_cache

from gamelog.errors import GamelogError, RecordError
from gamelog.render import Rendered, skeleton

GEN_OPEN, GEN_CLOSE = "\ue000", "\ue001"  # private-use characters marking {% generation %} output
ROLE_TO_MESSAGE = {"system": "system", "user": "user", "context": "user", "tool": "tool", "assistant": "assistant", "thought": "assistant", "tool_call": "assistant", "text": "user"}


@lru_cache(maxsize=8)
def compile_template(source: str):
    from jinja2 import nodes
    from jinja2.exceptions import TemplateSyntaxError
    from jinja2.ext import Extension, loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Generation(Extension):
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            marker = lambda text: nodes.Output([nodes.TemplateData(text)]).set_lineno(lineno)
            return [marker(GEN_OPEN), *body, marker(GEN_CLOSE)]

    def raise_exception(message):
        raise RecordError("template_error", f"the chat template refused the episode: {message}")

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[Generation, loopcontrols])
    env.filters["tojson"] = lambda value, indent=None, **_: json.dumps(value, ensure_ascii=False, indent=indent)
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.datetime.now().strftime(fmt)
    try:
        template = env.from_string(source)
    except TemplateSyntaxError as exc:
        raise GamelogError(f"the tokenizer's chat_template does not parse (line {exc.lineno}: {exc.message}); pass --template chatml or another built-in.") from None
    # Every render copies the globals into a new context; as Jinja's ChainMap over the
    # environment's globals that copy was a third of the render time. The environment is this
    # template's own and its globals are set above, so a flat copy sees the same names.
    template.globals = dict(template.globals)
    return template


# Second try for templates that know only system/user/assistant: tool results speak as the user.
PLAIN_ROLES = ROLE_TO_MESSAGE | {"tool": "user"}


def messages_of(turns: list[dict], roles: dict[str, str] = ROLE_TO_MESSAGE) -> list[dict]:
    return [{"role": roles[t["role"]], "content": t["content"]} | ({"name": t["name"]} if t["name"] else {}) for t in turns]


def render_jinja(turns: list[dict], source: str, *, bos: str | None, eos: str | None, specials: frozenset[str], tools=None) -> Rendered:
    """Render with the template's own roles; if it drops a move, once more with tool results as user moves."""
    try:
        return _render(turns, source, ROLE_TO_MESSAGE, bos, eos, specials, tools)
    except RecordError as exc:
        if exc.reason != "template_mismatch" or not any(t["role"] == "tool" for t in turns):
            raise
        return _render(turns, source, PLAIN_ROLES, bos, eos, specials, tools)


def _render(turns, source, roles, bos, eos, specials, tools) -> Rendered:
    from jinja2.exceptions import SecurityError, TemplateError

    template = compile_template(source)
    if (found := _skeleton(template, source, turns, roles, bos, eos, specials, tools)) is not None and (rendered := skeleton.fill(found, turns, _specials_pattern(specials))) is not None:
        return rendered
    try:
        output = template.render(messages=messages_of(turns, roles), add_generation_prompt=False, bos_token=bos or "", eos_token=eos or "", tools=tools)
    except SecurityError as exc:
        raise GamelogError(f"the tokenizer's chat_template was refused by the sandbox ({exc}); it reaches for Python internals. Use a trusted template or --template chatml.") from None
    except TemplateError as exc:
        raise RecordError("template_error", f"the chat template failed on this episode ({exc}).") from None
    text, generated = _strip_generation(output)
    return _spans(turns, text, generated, specials)


_skeletons: dict[tuple, skeleton.Skeleton | None] = {}


def _skeleton(template, source, turns, roles, bos, eos, specials, tools) -> skeleton.Skeleton | None:
    """The skeleton of this episode's shape, for a template that only pastes content (None: render it whole)."""
    if tools is not None or (known := skeleton.facts(template.environment, source)) is None:
        return None
    if known.reads_names:
        shape = tuple([(roles[t["role"]], t["name"]) for t in turns])
    else:
        shape = tuple([roles[t["role"]] for t in turns])
    key = (source, bos, eos, specials, roles is PLAIN_ROLES, shape)
    if (found := _skeletons.get(key, False)) is not False:
        return found
    if len(_skeletons) >= skeleton.SHAPES:
        _skeletons.clear()
    found = _skeletons[key] = skeleton.build(template, messages_of(turns, roles), GEN_OPEN + GEN_CLOSE, _specials_pattern(specials), specials, known.trims, add_generation_prompt=False, bos_token=bos or "", eos_token=eos or "", tools=None)
    return found


def _strip_generation(output: str) -> tuple[str, list[tuple[int, int]]]:
    """The output without generation markers, and the spans the markers enclosed."""
    text = output.replace(GEN_OPEN, "").replace(GEN_CLOSE, "")
    if GEN_OPEN not in output:
        return text, []
    spans, size, stack = [], 0, []
    for piece in re.split(f"([{GEN_OPEN}{GEN_CLOSE}])", output):
        if piece == GEN_OPEN:
            stack.append(size)
        elif piece == GEN_CLOSE:
            spans.append((stack.pop(), size))
        else:
            size += len(piece)
    return text, spans


@lru_cache(maxsize=8)
def _specials_pattern(specials: frozenset[str]):
    """One regex of the special tokens, longest first, so the longest one at a position wins."""
    if not specials:
        return None
    return re.compile("|".join(re.escape(s) for s in sorted(specials, key=len, reverse=True)))


def _find_move(text: str, body: str, cursor: int, specials: tuple) -> int:
    """Where a move's text is, at or after `cursor`, but never starting inside a special token that
    the template wrote: a user move `user` is not the `user` of `<|user|>` before it."""
    pattern, longest, inner = specials
    at = text.find(body, cursor)
    # a special holds `at` only if the character before it can be followed by more of a special
    while at > 0 and text[at - 1] in inner:
        for found in pattern.finditer(text, max(at - longest + 1, 0), at + longest):
            if found.end() > at:  # the first special that reaches past `at`: does it hold `at`?
                break
        else:
            return at
        if found.start() >= at:
            return at
        at = text.find(body, found.end())
    return at


@lru_cache(maxsize=8)
def _special_search(specials: frozenset[str]) -> tuple:
    """The specials' regex, the longest one's length, and the characters that some special has
    before its last one."""
    return _specials_pattern(specials), max(map(len, specials), default=0), frozenset("".join(s[:-1] for s in specials))


def _spans(turns: list[dict], text: str, generated: list[tuple[int, int]], specials: frozenset[str]) -> Rendered:
    starts, content, trained_end = [], [], []
    search = _special_search(specials)
    cursor = 0
    for i, turn in enumerate(turns):
        body = turn["content"]
        at = _find_move(text, body, cursor, search)
        if at < 0:
            body = body.strip()
            at = _find_move(text, body, cursor, search) if body else -1
        if at < 0:
            raise RecordError("template_mismatch", f"move {i} ({turn['role']}) does not appear in the chat template's output (the template drops or rewrites it); use a built-in --template.")
        starts.append(cursor)
        stop = at + len(body)
        end = stop + skeleton.marker_at(text, stop, search[0])
        if i == len(turns) - 1 and text[end:].strip() in specials:  # the closing eos, as built-in templates train it
            end = len(text.rstrip())
        for lo, hi in generated:
            if lo <= at < hi:
                end = max(hi, stop)
        content.append((at, stop))
        trained_end.append(end)
        cursor = end
    return Rendered(text, turns, starts, content, trained_end)
