"""Chat templates that only paste a move's text, rendered once per conversation shape (gamelog.render.skeleton)."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from gamelog.convert import ConvertOptions, convert
from gamelog.errors import RecordError
from gamelog.pack.tokenizer import load_tokenizer
from gamelog.render import jinja, skeleton

from conftest import SHARED, shared

TEMPLATES = {
    "phi-3-mini": json.loads((SHARED / "tokenizers/phi-3-mini/tokenizer_config.json").read_text())["chat_template"],
    "phi-4-mini": json.loads((SHARED / "tokenizers/chat_templates/phi-4-mini_tokenizer_config.json").read_text())["chat_template"],
    "qwen2.5": json.loads((SHARED / "tokenizers/chat_templates/qwen2.5_tokenizer_config.json").read_text())["chat_template"],
}
LOOP = "{% for m in messages %}<|{{ m['role'] }}|>BODY<|end|>{% endfor %}"
# In the manner of widely used templates (written here): content trimmed and set to a name, a
# role renamed, a system text folded into the first user move.
STYLES = {
    "trimmed, set to a name": (
        "{% for message in messages %}{% set text = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' %}"
        "{% if loop.index0 == 0 %}{% set text = bos_token + text %}{% endif %}{{ text }}{% endfor %}",
        {"<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"},
    ),
    "trimmed, role renamed": (
        "{{ bos_token }}{% for message in messages %}{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
        "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}",
        {"<start_of_turn>", "<end_of_turn>"},
    ),
    "system folded": (
        "{% if messages[0]['role'] == 'system' %}{% set system = messages[0]['content'] + '\n\n' %}{% set rest = messages[1:] %}{% else %}{% set system = '' %}{% set rest = messages %}{% endif %}"
        "{% for m in rest %}{% if m['role'] == 'user' and loop.first %}{{ '[INST] ' + system + m['content'] + ' [/INST]' }}"
        "{% elif m['role'] == 'user' %}{{ '[INST] ' + m['content'] + ' [/INST]' }}{% else %}{{ m['content'] + '</s>' }}{% endif %}{% endfor %}",
        {"</s>"},
    ),
}


def pastes_only(source: str) -> bool:
    return skeleton.facts(jinja.compile_template(source).environment, source) is not None


def turn(role: str, content: str, player: int) -> dict:
    return {"role": role, "content": content, "player": player, "name": None}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (TEMPLATES["phi-3-mini"], True),
        (TEMPLATES["phi-4-mini"], True),  # `'tools' in message` tests a key, not the text
        (TEMPLATES["qwen2.5"], False),  # `{% if message.content %}` decides on the text
        (LOOP.replace("BODY", "{{ m['content'] }}"), True),
        (LOOP.replace("BODY", "{{ m.content + '\\n' ~ m.role }}"), True),
        ("{% set rest = messages[1:] %}{{ messages[0]['content'] }}{% for m in rest %}{{ m.content }}{% endfor %}", True),
        (LOOP.replace("BODY", "{{ m['content'] | trim }}"), True),
        (LOOP.replace("BODY", "{% set c = m['content'] %}{{ c }}"), True),
        *((source, True) for source, _ in STYLES.values()),
        (LOOP.replace("BODY", "{{ m['content'] | upper }}"), False),
        (LOOP.replace("BODY", "{{ m['content'] | trim('.') }}"), False),
        (LOOP.replace("BODY", "{{ ('<' + m['content']) | trim }}"), False),  # trimming the joined text could cut one side only
        (LOOP.replace("BODY", "{% set c = m['content'] %}{{ c | trim }}"), False),
        (LOOP.replace("BODY", "{% set c = m['content'] %}{% if c %}{{ c }}{% endif %}"), False),
        (LOOP.replace("BODY", "{% set c = '<' + m['content'] %}{{ c[1:] }}"), False),
        (LOOP.replace("BODY", "{% if m['content'] %}{{ m['content'] }}{% endif %}"), False),
        (LOOP.replace("BODY", "{{ m | tojson }}"), False),
        (LOOP.replace("BODY", "{{ m.get('content') }}"), False),
        (LOOP.replace("BODY", "{{ m['content'][:5] }}"), False),
        (LOOP.replace("BODY", "{{ m['content'] }}{{ loop.nextitem }}"), False),
        (LOOP.replace("BODY", "{% filter upper %}{{ m['content'] }}{% endfilter %}"), False),
        ("{% with first = messages[0] %}{{ first['content'] | trim }}{% endwith %}", False),
        ("{% for m in messages | selectattr('content') %}{{ m['content'] }}{% endfor %}", False),
        ("{% set m = 'x' %}{% for m in messages %}{{ m['content'] }}{% endfor %}", False),
        (LOOP.replace("BODY", "{{ m['content'] }}{{ strftime_now('%d') }}"), False),
    ],
)
def test_which_templates_only_paste_the_text(source, expected):
    assert pastes_only(source) is expected


@pytest.fixture(scope="module")
def shared_turns(tmp_path_factory) -> list[list[dict]]:
    out = tmp_path_factory.mktemp("episodes")
    convert([shared("chat"), shared("instruct")], out=out, options=ConvertOptions(dedup="none"))
    return [row["turns"] for file in sorted(out.glob("episodes-*.parquet")) for row in pq.read_table(file, columns=["turns"]).to_pylist()]


@pytest.mark.parametrize("name", ["phi-3-mini", "phi-4-mini", *STYLES])
def test_a_skeleton_renders_what_the_template_renders_on_the_shared_conversations(name, shared_turns, monkeypatch):
    """Every shared chat and instruct episode: the same text, starts, spans and trained ends as rendering it whole."""
    tok = load_tokenizer(shared("tokenizers/phi-3-mini"))
    source, own = STYLES.get(name, (TEMPLATES.get(name), set()))
    specials = frozenset(tok.special_tokens()) | own

    def both():
        return [_outcome(lambda: jinja.render_jinja(turns, source, bos=tok.bos, eos=tok.eos, specials=specials)) for turns in shared_turns]

    jinja._skeletons.clear()
    fast = both()
    assert any(v is not None for v in jinja._skeletons.values())
    monkeypatch.setattr(skeleton, "facts", lambda *_: None)
    whole = both()
    assert len(fast) == len(shared_turns) > 1000
    assert fast == whole


def _outcome(render):
    try:
        return render()
    except RecordError as exc:
        return exc.reason


def test_a_move_that_repeats_the_templates_own_words_is_placed_after_them():
    """`Human: ` is plain text, not a special token: a user move `Human` is the text after it, and the
    assistant move `Assistant` the text after `Assistant: ` (a search from the start found both inside the tags)."""
    source = "{% for m in messages %}{% if m['role'] == 'user' %}{{ 'Human: ' + m['content'] + '\\n' }}{% else %}{{ 'Assistant: ' + m['content'] + '<|end|>' }}{% endif %}{% endfor %}"
    turns = [turn("user", "Human", 1), turn("assistant", "Assistant", 2)]
    rendered = jinja.render_jinja(turns, source, bos=None, eos=None, specials=frozenset({"<|end|>"}))
    assert rendered.text == "Human: Human\nAssistant: Assistant<|end|>"
    assert rendered.content == [(7, 12), (24, 33)]
    assert rendered.trained_end == [12, 40] and rendered.starts == [0, 12]


def test_a_shape_the_template_refuses_is_reported_as_before():
    """A template that raises on some roles: that shape has no skeleton, and the episode is refused with the template's message."""
    source = "{% if messages[0]['role'] != 'user' %}{{ raise_exception('the first move must be the user') }}{% endif %}" + LOOP.replace("BODY", "{{ m['content'] }}")
    with pytest.raises(RecordError, match="the first move must be the user"):
        jinja.render_jinja([turn("assistant", "Hello", 2)], source, bos=None, eos=None, specials=frozenset({"<|end|>"}))
    rendered = jinja.render_jinja([turn("user", "Hi", 1), turn("assistant", "Hello", 2)], source, bos=None, eos=None, specials=frozenset({"<|end|>"}))
    assert rendered.text == "<|user|>Hi<|end|><|assistant|>Hello<|end|>" and rendered.trained_end[1] == len(rendered.text)


def test_a_marker_that_the_next_text_could_complete_is_read_from_the_text():
    """A literal that is the start of a longer special (`<|e` of `<|end|>`) leaves the marker to the
    text after it; a move whose text completes it is refused as rendering it whole refuses it."""
    source = "{% for m in messages %}{{ m['content'] }}<|e{% endfor %}"
    specials = frozenset({"<|end|>"})
    rendered = jinja.render_jinja([turn("user", "a", 1), turn("assistant", "x", 2)], source, bos=None, eos=None, specials=specials)
    assert rendered.text == "a<|ex<|e" and rendered.content == [(0, 1), (4, 5)] and rendered.trained_end == [1, 5]
    with pytest.raises(RecordError) as caught:
        jinja.render_jinja([turn("user", "a", 1), turn("assistant", "nd|>b", 2)], source, bos=None, eos=None, specials=specials)
    assert caught.value.reason == "template_mismatch"


def test_a_trimmed_text_is_placed_without_its_edge_whitespace():
    """`| trim`: the move's span is its text less the edge whitespace, where the template put it;
    a text of whitespace only (trimmed to nothing) is left to the general renderer."""
    source = LOOP.replace("BODY", "{{ m['content'] | trim }}")
    specials = frozenset({"<|end|>"})
    rendered = jinja.render_jinja([turn("user", "  Hi \n", 1), turn("assistant", "\tHello", 2)], source, bos=None, eos=None, specials=specials)
    assert rendered.text == "<|user|>Hi<|end|><|assistant|>Hello<|end|>"
    assert rendered.content == [(8, 10), (30, 35)] and rendered.trained_end == [17, 42]
    found = jinja._skeleton(jinja.compile_template(source), source, [turn("user", " ", 1)], jinja.ROLE_TO_MESSAGE, None, None, specials, None)
    assert found is not None and found.trimmed == (True,)
    assert skeleton.fill(found, [turn("user", " ", 1)], jinja._specials_pattern(specials)) is None



def test_speakers_names_make_new_shapes_only_for_a_template_that_reads_them():
    """Names change the output only where the template reads `name`: elsewhere one skeleton serves every speaker."""
    specials = frozenset({"<|end|>"})
    named = "{% for m in messages %}<|{{ m['role'] }}|>{% if m.name is defined %}{{ m.name }}: {% endif %}{{ m['content'] }}<|end|>{% endfor %}"
    plain = LOOP.replace("BODY", "{{ m['content'] }}")
    for source, shapes in ((plain, 1), (named, 3)):
        jinja._skeletons.clear()
        for speaker in ("ann", "bob", "cy"):
            turns = [{**turn("user", "Hi", 1), "name": speaker}, turn("assistant", "Hello", 2)]
            rendered = jinja.render_jinja(turns, source, bos=None, eos=None, specials=specials)
            assert rendered.text[slice(*rendered.content[0])] == "Hi" and rendered.text[slice(*rendered.content[1])] == "Hello"
            assert (f"{speaker}: Hi" in rendered.text) is (source == named)
        assert len(jinja._skeletons) == shapes
