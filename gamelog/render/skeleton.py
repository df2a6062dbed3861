"""Chat templates that only paste a move's text: rendered once per conversation shape.

A template such as phi-3-mini's writes each message's content into its output as it is (or
trimmed of its edge whitespace, as Llama 3's and Gemma's do) and decides everything else from the
roles alone. For such a template, the output for a conversation is the output for the same roles
and names with a placeholder for each text, every placeholder replaced by its move's text (trimmed
where the template trims it). So the template runs once per shape (the messages' roles and names),
and each conversation is the join of that skeleton's literal pieces and its moves' texts, with
every move's span known exactly rather than searched for (a search can be fooled by a move whose
text also appears in the template's own words before it).

Which templates qualify is read from the template's syntax tree, conservatively: every read of a
message's content, alone or through `| trim`, must be pasted into the output (alone, or joined
with `+` or `~`) or set to a name whose every use is pasted the same way; a message, or a list of
messages, may only be looped over, indexed, tested for a key or with a type test, measured with
`length`, or set to a name. Any other use (another filter, an `if` on the content, a message passed
to a macro or to `tojson`), a block that captures or filters output, or `strftime_now` sends the
template to the general renderer (`gamelog.render.jinja`), as does a shape whose skeleton is not
one placeholder per move in order, or whose render raises.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from itertools import accumulate

from gamelog.render import Rendered

PLACEHOLDER = re.compile("\ue010(\\d+)\ue011")  # private-use characters around a move's index
PRIVATE = ("\ue010", "\ue011")
PAD = "\x1f"  # whitespace to Python's (and Jinja's) strip, and not written by templates: shows which texts are trimmed
SHAPES = 4096  # skeletons kept per template; the cache starts over when full
# Nodes that capture, filter or defer output, or bind names outside what is tracked here
OPAQUE = ("FilterBlock", "AssignBlock", "Macro", "CallBlock", "With", "Include", "Import", "FromImport", "Extends", "Block", "Scope", "OverlayScope", "EvalContextModifier", "ScopedEvalContextModifier")
TYPE_TESTS = {"defined", "undefined", "none", "mapping", "sequence", "iterable", "string"}


@dataclass(frozen=True, slots=True)
class Skeleton:
    """A shape's output cut at its moves' texts, and what of each move's span follows from it alone."""

    literals: tuple[str, ...]  # literals[i] comes before move i; the last one after the last move
    markers: tuple[int, ...]  # per move: length of the special token right after its text; -1: it depends on the next text
    closing: int  # trailing whitespace cut from the end of the last move's trained span, which runs to the end; -1: it does not
    trimmed: tuple[bool, ...]  # per move: the template pastes its text trimmed of edge whitespace (`| trim`)


@dataclass(frozen=True)
class Facts:
    """What a template that only pastes content does besides, from its syntax tree."""

    trims: bool  # some content goes through `| trim`: each new shape is rendered a second time to see which
    reads_names: bool  # a constant "name" or an attribute `.name` appears: a shape is roles and names, else roles alone


@lru_cache(maxsize=8)
def facts(environment, source: str) -> Facts | None:
    """A template's facts, or None when it does more than paste messages' content (see the module docstring)."""
    from jinja2 import nodes

    tree = environment.parse(source)
    if any(type(node).__name__ in OPAQUE for node in tree.find_all(nodes.Node)) or any(node.recursive for node in tree.find_all(nodes.For)):
        return None
    if any(node.name == "strftime_now" for node in tree.find_all(nodes.Name)):
        return None
    if any(isinstance(node.node, nodes.Name) and node.node.name == "loop" and node.attr in ("previtem", "nextitem") for node in tree.find_all(nodes.Getattr)):
        return None  # a message reached through the loop, outside what is tracked
    kinds = _message_names(tree, nodes)
    if kinds is None or not _Uses(tree, nodes, kinds).all_safe():
        return None

    def reads_content(node) -> bool:
        return (isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) and node.arg.value == "content") or (isinstance(node, nodes.Getattr) and node.attr == "content")

    return Facts(
        trims=any(node.name == "trim" and reads_content(node.node) for node in tree.find_all(nodes.Filter)),
        reads_names=any(node.value == "name" for node in tree.find_all(nodes.Const)) or any(node.attr == "name" for node in tree.find_all(nodes.Getattr)),
    )


def _message_names(tree, nodes) -> dict[str, str] | None:
    """Names that hold a list of messages ("list") or one message ("message"): `messages`, loop
    targets over a list, and names set to either; None when such a name is also bound to anything
    else, or a list or message is unpacked or set on a namespace."""
    kinds = {"messages": "list"}
    changed = True
    while changed:
        changed = False
        bindings = [(node.target, "message" if _kind(node.iter, kinds, nodes) == "list" else None) for node in tree.find_all(nodes.For)]
        bindings += [(node.target, _kind(node.node, kinds, nodes)) for node in tree.find_all(nodes.Assign)]
        for target, kind in bindings:
            names = [target.name] if isinstance(target, nodes.Name) else [n.name for n in target.find_all(nodes.Name)]
            if kind is None:
                if any(name in kinds for name in names):
                    return None
                continue
            if not isinstance(target, nodes.Name) or kinds.get(target.name, kind) != kind:
                return None
            if target.name not in kinds:
                kinds[target.name] = kind
                changed = True
    return kinds


def _kind(value, kinds: dict[str, str], nodes) -> str | None:
    """What an expression holds: "list" (of messages), "message", or None (neither)."""
    if isinstance(value, nodes.Name):
        return kinds.get(value.name)
    if isinstance(value, nodes.Getitem) and _kind(value.node, kinds, nodes) == "list":
        return "list" if isinstance(value.arg, nodes.Slice) else "message"
    return None


class _Uses:
    """Checks every use of the names that hold messages, and of the names set to content."""

    def __init__(self, tree, nodes, kinds: dict[str, str]):
        self.nodes, self.kinds = nodes, kinds
        self.parents = {id(child): node for node in tree.find_all(nodes.Node) for child in node.iter_child_nodes()}
        self.loads: dict[str, list] = {}
        for name in tree.find_all(nodes.Name):
            if name.ctx == "load":
                self.loads.setdefault(name.name, []).append(name)
        self.content_names: set[str] = set()  # names set to content, checked (or being checked)

    def all_safe(self) -> bool:
        return all(self.safe(load, kind) for name, kind in self.kinds.items() for load in self.loads.get(name, []))

    def safe(self, node, kind: str) -> bool:
        """Whether an expression holding messages (`kind`) is used only in ways that do not depend
        on their content, or paste it."""
        nodes = self.nodes
        parent = self.parents.get(id(node))
        if isinstance(parent, nodes.For) and parent.iter is node:
            return kind == "list"
        if isinstance(parent, nodes.Assign) and parent.node is node:
            return isinstance(parent.target, nodes.Name)  # its name is one of `kinds`, checked on its own
        if isinstance(parent, nodes.Filter) and parent.node is node:
            return parent.name in ("length", "count") and not parent.args and not parent.kwargs
        if isinstance(parent, nodes.Test) and parent.node is node:
            return parent.name in TYPE_TESTS
        if isinstance(parent, nodes.Operand) and parent.expr is node and parent.op in ("in", "notin"):
            compare = self.parents.get(id(parent))
            return kind == "message" and isinstance(compare, nodes.Compare) and isinstance(compare.expr, nodes.Const) and isinstance(compare.expr.value, str)
        if isinstance(parent, nodes.Getitem) and parent.node is node:
            if any(name.name in self.kinds for name in parent.arg.find_all(nodes.Name)) or (isinstance(parent.arg, nodes.Name) and parent.arg.name in self.kinds):
                return False
            if kind == "list":
                return self.safe(parent, "list" if isinstance(parent.arg, nodes.Slice) else "message")
            if isinstance(parent.arg, nodes.Const) and isinstance(parent.arg.value, str):
                return parent.arg.value != "content" or self.content_pasted(parent)
            return False
        if isinstance(parent, nodes.Getattr) and parent.node is node:
            if hasattr(dict, parent.attr) or hasattr(list, parent.attr) or kind == "list":  # a method (`get`, `items`, ...) could read the content
                return False
            return parent.attr != "content" or self.content_pasted(parent)
        return False

    def content_pasted(self, read) -> bool:
        """Whether a read of a message's content is pasted: alone or through `| trim`, then as `pasted` says."""
        parent = self.parents.get(id(read))
        if isinstance(parent, self.nodes.Filter) and parent.node is read and parent.name == "trim" and not parent.args and not parent.kwargs:
            read = parent
        return self.pasted(read)

    def pasted(self, node) -> bool:
        """Whether an expression goes into the output (alone, or joined with `+` or `~`), or is set
        to a name whose every use does the same."""
        nodes = self.nodes
        parent = self.parents.get(id(node))
        while isinstance(parent, (nodes.Add, nodes.Concat)):
            node, parent = parent, self.parents.get(id(parent))
        if isinstance(parent, nodes.Output):
            return True
        if not (isinstance(parent, nodes.Assign) and parent.node is node and isinstance(parent.target, nodes.Name)):
            return False
        name = parent.target.name
        if name in self.kinds:
            return False
        if name not in self.content_names:
            self.content_names.add(name)  # a use that sets the name again (`set c = bos + c`) is checked once
            return all(self.pasted(load) for load in self.loads.get(name, []))
        return True


def build(template, messages: list[dict], reserved: str, pattern, specials: frozenset[str], trimming: bool, **context) -> Skeleton | None:
    """The skeleton of a shape: the template rendered with a placeholder for each text, cut at
    them, and for a template that trims (`trimming`) rendered again with whitespace around each
    placeholder to see which texts it trims; None when the output is not one placeholder per move,
    in order, or a placeholder is trimmed on one side only, or it holds one of the `reserved`
    characters, or the render raises."""
    plain = _render(template, messages, "", context)
    padded = _render(template, messages, PAD, context) if trimming else plain
    if plain is None or padded is None or (trimming and PAD in plain):
        return None
    parts = PLACEHOLDER.split(plain)
    literals, indices = parts[0::2], parts[1::2]
    if not messages or indices != [str(i) for i in range(len(messages))] or any(plain.count(c) != len(messages) for c in PRIVATE) or any(c in plain for c in reserved):
        return None
    kept = _untrimmed(plain, padded, len(messages)) if trimming else (True,) * len(messages)
    if kept is None:
        return None
    prefixes = _prefixes(specials)
    markers = tuple(-1 if k < len(messages) and literal in prefixes else marker_at(literal, 0, pattern) for k, literal in enumerate(literals[1:], 1))
    tail = literals[-1][max(markers[-1], 0) :]
    closing = len(literals[-1]) - len(literals[-1].rstrip()) if tail.strip() in specials else -1
    return Skeleton(tuple(literals), markers, closing, tuple(not k for k in kept))


def _untrimmed(plain: str, padded: str, moves: int) -> tuple[bool, ...] | None:
    """Per move, whether the whitespace around its placeholder survived (the template pastes its
    text as it is); None when the padded output is not the plain one with that whitespace (a text
    trimmed on one side only, or the whitespace changed something else)."""
    kept = tuple(f"{PAD}{PRIVATE[0]}{i}{PRIVATE[1]}{PAD}" in padded for i in range(moves))
    restored = padded
    for i in (i for i, k in enumerate(kept) if k):
        restored = restored.replace(f"{PAD}{PRIVATE[0]}{i}{PRIVATE[1]}{PAD}", f"{PRIVATE[0]}{i}{PRIVATE[1]}")
    return kept if restored == plain else None


def _render(template, messages: list[dict], pad: str, context: dict) -> str | None:
    """The template's output with a placeholder (inside `pad`) for each message's text; None if it raises."""
    placeholders = [m | {"content": f"{pad}{PRIVATE[0]}{i}{PRIVATE[1]}{pad}"} for i, m in enumerate(messages)]
    try:
        return template.render(messages=placeholders, **context)
    except Exception:  # the general renderer renders the real episode and reports what it raises
        return None


@lru_cache(maxsize=8)
def _prefixes(specials: frozenset[str]) -> frozenset[str]:
    """Every proper prefix of a special token: a literal that is one may be completed by the text
    after it, so the end-of-turn marker after a move is then read from the episode's own text."""
    return frozenset(s[:k] for s in specials for k in range(len(s)))


def fill(skeleton: Skeleton, turns: list[dict], pattern) -> Rendered | None:
    """The rendered episode: the skeleton's literals with the moves' texts between them, each move's
    span where its text was put, its trained end after the special token written right after it.
    None when such a token runs on into the next move's text, or a trimmed text is all whitespace
    (the general renderer decides)."""
    parts = [None] * (2 * len(turns) + 1)
    parts[0::2] = skeleton.literals
    if True in skeleton.trimmed:
        parts[1::2] = contents = [t["content"].strip() if trim else t["content"] for t, trim in zip(turns, skeleton.trimmed)]
        if "" in contents:  # trimming would reach into the template's own words
            return None
    else:
        parts[1::2] = [t["content"] for t in turns]
    text = "".join(parts)
    bounds = list(accumulate(map(len, parts)))
    begins, stops = bounds[0::2], bounds[1::2]
    trained_end = [stop + (marker if marker >= 0 else marker_at(text, stop, pattern)) for stop, marker in zip(stops, skeleton.markers)]
    if -1 in skeleton.markers and any(end > begin for end, begin in zip(trained_end, begins[1:])):
        return None
    if skeleton.closing >= 0:  # the closing eos, as built-in templates train it
        trained_end[-1] = len(text) - skeleton.closing
    return Rendered(text, turns, [0, *trained_end[:-1]], list(zip(begins, stops)), trained_end)


def marker_at(text: str, position: int, pattern) -> int:
    """Length of the special token (`pattern`: the specials, longest first) at `position`, if any: a move's end-of-turn marker."""
    found = pattern.match(text, position) if pattern is not None else None
    return len(found.group()) if found else 0
