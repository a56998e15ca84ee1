"""A1111's prompt editing and alternation: which prompt text is in force at each sampling step.

`a [cat:dog:0.5]` is "a cat" for the first half of the steps and "a dog" after; `[to:when]` adds, `[from::when]`
removes; `when` with a decimal point is a fraction of the steps, without one a step number (A1111 1.7+'s
scheduling); `[cat|dog]` alternates every step; they nest. A prompt A1111's grammar does not accept is used as it
is, for every step, as in A1111.

A1111 parses with lark's Earley parser over this grammar (modules/prompt_parser.py):

    !start: (prompt | /[][():]/+)*
    prompt: (emphasized | scheduled | alternate | plain | WHITESPACE)*
    !emphasized: "(" prompt ")" | "(" prompt ":" prompt ")" | "[" prompt "]"
    scheduled: "[" [prompt ":"] prompt ":" [WHITESPACE] NUMBER [WHITESPACE] "]"
    alternate: "[" prompt ("|" [prompt])+ "]"
    WHITESPACE: /\\s+/
    plain: /([^\\\\\\[\\]():|]|\\\\.)+/
    %import common.SIGNED_NUMBER -> NUMBER

which is ambiguous, so Earley takes cubic time in the prompt's length (600 characters of `[a|b] ` took 22 s, and a
20,000-character prompt minutes). This is a recursive-descent reading of the same grammar with Earley's choices:
a bracket is a group (emphasis, then edit, then alternation, in the grammar's order) wherever one can be closed,
and otherwise a stray character of `start`; plain text and numbers are read greedily, as lark's dynamic lexer
reads them. Every parse at a position is remembered (packrat), so the time is linear in the prompt's length.
`tests/inferences/test_prompt_schedule.py` holds it to lark's Earley parse of A1111's grammar on every prompt of
up to 8 characters of the bracket language and on thousands of random ones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from ..errors import EngineError

MAX_NESTING = 64  # brackets inside brackets; deeper prompts are refused (A1111 itself fails past about 300)
_PLAIN = re.compile(r"(?:[^\\\[\]():|]|\\.)+")
_WHITESPACE = re.compile(r"\s+")
_NUMBER = re.compile(r"[+-]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?")
_STRAY = frozenset("[]():")


@dataclass(frozen=True)
class _Edit:
    before: _Node | None
    after: _Node
    when: str  # as written: a point makes it a fraction of the steps


@dataclass(frozen=True)
class _Alternate:
    options: tuple[_Node | None, ...]


_Node = str | _Edit | _Alternate | tuple  # a tuple is a sequence of nodes


def _closable(text: str) -> tuple[set[int], int]:
    """The brackets that a later bracket of their kind could close, and how deep those pairs nest.

    A group's inside holds groups and text only, never a stray bracket, so an opener can be a group only where a
    stack of openers pairs it with a closer: one whose closer never comes, or that would hold a closer of the other
    kind, is a stray in every parse. Knowing this up front keeps the parser's recursion to the depth of real pairs
    (`((((` ten thousand times is ten thousand strays, not ten thousand nested attempts)."""
    stack: list[int] = []
    pairs: dict[int, int] = {}  # opener -> closer
    position = 0
    while position < len(text):
        char = text[position]
        if char == "\\":
            position += 2
            continue
        if char in "([":
            stack.append(position)
        elif char in ")]":
            if stack and text[stack[-1]] == ("(" if char == ")" else "["):
                pairs[stack.pop()] = position
            else:  # a stray closer inside every opener still open: none of them can be a group
                stack.clear()
        position += 1
    depth = deepest = 0
    closers = set(pairs.values())
    for position in sorted([*pairs, *closers]):
        depth += 1 if position in pairs else -1
        deepest = max(deepest, depth)
    return set(pairs), deepest


class _Parser:
    def __init__(self, text: str, closable: set[int]) -> None:
        self.text = text
        self.closable = closable
        self.prompts: dict[int, tuple[tuple[_Node, ...], int]] = {}
        self.groups: dict[int, tuple[_Node, int] | None] = {}

    def parse(self) -> tuple[_Node, ...] | None:
        """`start`: prompts and stray brackets to the end, or None where the grammar does not accept the text."""
        text, position = self.text, 0
        nodes: list[_Node] = []
        while position < len(text):
            parsed, end = self.prompt(position)
            if end > position:
                nodes.extend(parsed)
                position = end
            elif text[position] in _STRAY:
                nodes.append(text[position])
                position += 1
            else:  # `|` outside a group, or a lone backslash at the end
                return None
        return tuple(nodes)

    def prompt(self, start: int) -> tuple[tuple[_Node, ...], int]:
        """The longest `prompt` from `start`: its nodes and where it ends (`start` itself when empty)."""
        if start in self.prompts:
            return self.prompts[start]
        text, position = self.text, start
        nodes: list[_Node] = []
        while position < len(text):
            if text[position] in "([":
                group = self.group(position)
                if group is None:
                    break
                nodes.append(group[0])
                position = group[1]
                continue
            plain = _PLAIN.match(text, position)
            if plain is None:
                break
            nodes.append(plain.group())
            position = plain.end()
        self.prompts[start] = (tuple(nodes), position)
        return self.prompts[start]

    def group(self, start: int) -> tuple[_Node, int] | None:
        if start not in self.closable:
            return None
        if start not in self.groups:
            opener = self.text[start]
            self.groups[start] = self._emphasis(start) if opener == "(" else self._bracket(start)
        return self.groups[start]

    def _emphasis(self, start: int) -> tuple[_Node, int] | None:
        """`(prompt)` or `(prompt:prompt)`, kept as written (the weight is the conditioning's business)."""
        inner, end = self.prompt(start + 1)
        if self._at(end, ")"):
            return ("(", *inner, ")"), end + 1
        if self._at(end, ":"):
            weight, close = self.prompt(end + 1)
            if self._at(close, ")"):
                return ("(", *inner, ":", *weight, ")"), close + 1
        return None

    def _bracket(self, start: int) -> tuple[_Node, int] | None:
        """`[prompt]`, then `[from:to:when]` / `[to:when]`, then `[a|b|...]`: the grammar's order."""
        first, end = self.prompt(start + 1)
        if self._at(end, "]"):
            return ("[", *first, "]"), end + 1
        if self._at(end, ":"):
            edit = self._when(end + 1)  # [to:when]
            if edit is not None:
                return _Edit(None, first, edit[0]), edit[1]
            second, after = self.prompt(end + 1)  # [from:to:when]
            if self._at(after, ":"):
                edit = self._when(after + 1)
                if edit is not None:
                    return _Edit(first, second, edit[0]), edit[1]
            return None
        if not self._at(end, "|"):
            return None
        options: list[_Node | None] = [first]
        while self._at(end, "|"):
            option, end = self.prompt(end + 1)
            options.append(option or None)
        return (_Alternate(tuple(options)), end + 1) if self._at(end, "]") else None

    def _when(self, start: int) -> tuple[str, int] | None:
        """`[WHITESPACE] NUMBER [WHITESPACE] "]"` from `start`: the number and the end of the group."""
        position = self._skip_space(start)
        number = _NUMBER.match(self.text, position)
        if number is None:
            return None
        close = self._skip_space(number.end())
        return (number.group(), close + 1) if self._at(close, "]") else None

    def _skip_space(self, position: int) -> int:
        space = _WHITESPACE.match(self.text, position)
        return space.end() if space else position

    def _at(self, position: int, char: str) -> bool:
        return position < len(self.text) and self.text[position] == char


@dataclass(frozen=True)
class _Clock:
    """How a pass counts `when`: over its `steps`, offset as A1111's get_learned_conditioning_prompt_schedules does
    for a hires fix's second pass (a whole number counts on from the first pass's steps, a fraction from 1.0)."""

    steps: int
    whole_offset: int = 0
    fraction_offset: float = 0.0


def _when(edit: _Edit, clock: _Clock) -> int:
    """The step a `[from:to:when]` switches at: a fraction of the steps when written with a point, else a step."""
    value = float(edit.when)
    value = (value - clock.fraction_offset) * clock.steps if "." in edit.when else value - clock.whole_offset
    return min(clock.steps, int(value))


def _switch_steps(node: _Node | None, clock: _Clock, found: set[int]) -> None:
    if isinstance(node, _Edit):
        when = _when(node, clock)
        if when >= 1:
            found.add(when)
        _switch_steps(node.before, clock, found)
        _switch_steps(node.after, clock, found)
    elif isinstance(node, _Alternate):
        found.update(range(1, clock.steps + 1))
        for option in node.options:
            _switch_steps(option, clock, found)
    elif isinstance(node, tuple):
        for child in node:
            _switch_steps(child, clock, found)


def _text_at(node: _Node | None, step: int, clock: _Clock) -> str:
    if node is None:
        return ""
    if isinstance(node, str):
        return node
    if isinstance(node, _Edit):
        return _text_at(node.before if step <= _when(node, clock) else node.after, step, clock)
    if isinstance(node, _Alternate):
        return _text_at(node.options[(step - 1) % len(node.options)], step, clock)
    return "".join(_text_at(child, step, clock) for child in node)


def check_nesting(prompt: str) -> set[int]:
    """Refuse (EngineError, with the depth) brackets nested deeper than MAX_NESTING pairs; else the openers that
    could be groups."""
    closable, depth = _closable(prompt)
    if depth > MAX_NESTING:
        raise EngineError(f"the prompt nests brackets {depth} deep; at most {MAX_NESTING} levels are allowed")
    return closable


def parse(prompt: str) -> tuple[_Node, ...] | None:
    """The prompt's tree, or None where A1111's grammar does not accept it (check_nesting's refusal first)."""
    return _Parser(prompt, check_nesting(prompt)).parse()


@lru_cache(maxsize=256)
def prompt_schedule(prompt: str, steps: int, first_pass_steps: int | None = None) -> tuple[tuple[int, str], ...]:
    """((end_at_step, text), ...): each text is in force up to and including its step, as A1111 schedules it.
    `first_pass_steps`: the schedule of a hires fix's second pass of `steps`, after a first pass of that many
    (A1111's `hires_steps`): `[cat:dog:0.5]` is "dog" for the whole second pass, `[cat:dog:25]` after 20 first-pass
    steps switches at its step 5 (issue 30.2)."""
    if "[" not in prompt:  # no edit and no alternation: any parse gives the text back as written
        return ((steps, prompt),)
    tree = parse(prompt)
    if tree is None:
        return ((steps, prompt),)
    clock = _Clock(steps) if first_pass_steps is None else _Clock(steps, first_pass_steps, 1.0)
    found = {steps}
    _switch_steps(tree, clock, found)
    return tuple((step, _text_at(tree, step, clock)) for step in sorted(found))


def text_at(schedule: tuple[tuple[int, str], ...], step: int) -> str:
    """The text in force at model evaluation `step` (counted from 0, as A1111's CFGDenoiser counts)."""
    for end, text in schedule:
        if step <= end:
            return text
    return schedule[0][1]
