"""A1111's prompt editing and alternation: which prompt text is in force at each sampling step.

`a [cat:dog:0.5]` is "a cat" for the first half of the steps and "a dog" after; `[to:when]` adds, `[from::when]`
removes; `when` with a decimal point is a fraction of the steps, without one a step number (A1111 1.7+'s
scheduling); `[cat|dog]` alternates every step; they nest. The grammar is A1111's (modules/prompt_parser.py),
parsed with lark as A1111 parses it, so the same text splits the same way; a prompt the grammar does not accept is
used as it is, for every step, as in A1111.
"""

from __future__ import annotations

from functools import lru_cache

import lark

GRAMMAR = r"""
!start: (prompt | /[][():]/+)*
prompt: (emphasized | scheduled | alternate | plain | WHITESPACE)*
!emphasized: "(" prompt ")"
        | "(" prompt ":" prompt ")"
        | "[" prompt "]"
scheduled: "[" [prompt ":"] prompt ":" [WHITESPACE] NUMBER [WHITESPACE] "]"
alternate: "[" prompt ("|" [prompt])+ "]"
WHITESPACE: /\s+/
plain: /([^\\\[\]():|]|\\.)+/
%import common.SIGNED_NUMBER -> NUMBER
"""

_parser = lark.Lark(GRAMMAR)


def _when(node: lark.Tree, steps: int) -> int:
    """The step a `[from:to:when]` switches at: a fraction of `steps` when written with a point, else a step."""
    number = next(child for child in node.children if isinstance(child, lark.Token) and child.type == "NUMBER")
    value = float(number) * steps if "." in number else float(number)
    return min(steps, int(value))


def _switch_steps(tree: lark.Tree, steps: int) -> list[int]:
    found = {steps}
    for node in tree.iter_subtrees():
        if node.data == "scheduled":
            when = _when(node, steps)
            if when >= 1:
                found.add(when)
        elif node.data == "alternate":
            found.update(range(1, steps + 1))
    return sorted(found)


def _text_at(node: lark.Tree | lark.Token | None, step: int, steps: int) -> str:
    if node is None:
        return ""
    if isinstance(node, lark.Token):
        return str(node)
    if node.data == "scheduled":
        before, after = node.children[0], node.children[1]
        return _text_at(before, step, steps) if step <= _when(node, steps) else _text_at(after, step, steps)
    if node.data == "alternate":
        options = node.children
        return _text_at(options[(step - 1) % len(options)], step, steps)
    return "".join(_text_at(child, step, steps) for child in node.children)


@lru_cache(maxsize=256)
def prompt_schedule(prompt: str, steps: int) -> tuple[tuple[int, str], ...]:
    """((end_at_step, text), ...): each text is in force up to and including its step, as A1111 schedules it."""
    try:
        tree = _parser.parse(prompt)
    except lark.exceptions.LarkError:
        return ((steps, prompt),)
    return tuple((step, _text_at(tree, step, steps)) for step in _switch_steps(tree, steps))


def text_at(schedule: tuple[tuple[int, str], ...], step: int) -> str:
    """The text in force at model evaluation `step` (counted from 0, as A1111's CFGDenoiser counts)."""
    for end, text in schedule:
        if step <= end:
            return text
    return schedule[0][1]
