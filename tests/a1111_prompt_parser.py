"""A1111's prompt parser, as the oracle of the engine's: lark's Earley parser over A1111's grammar.

From A1111's modules/prompt_parser.py (v1.10.1): its grammar, parsed by lark as A1111 parses it, and its reading of
the tree (`[from:to:when]` switches after step `when`, a fraction of the steps when written with a point; `[a|b]`
alternates every step). Earley takes cubic time in the prompt's length: an oracle for short prompts, and the
"before" of bench/prompt_parse.py. Plain Python, no Django: the bench imports it too.
"""

import lark

A1111_GRAMMAR = r"""
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
EARLEY = lark.Lark(A1111_GRAMMAR)


def a1111_schedule(prompt: str, steps: int, hires_steps: int | None = None) -> tuple[tuple[int, str], ...]:
    """get_learned_conditioning_prompt_schedules(prompts, base_steps=steps, hires_steps): with `hires_steps`, the
    schedule of a hires fix's second pass, whose `when`s are offset (int_offset = base_steps, flt_offset = 1.0)."""
    int_offset, flt_offset = (0, 0.0) if hires_steps is None else (steps, 1.0)
    steps = steps if hires_steps is None else hires_steps

    def when(node: lark.Tree) -> int:
        number = next(c for c in node.children if isinstance(c, lark.Token) and c.type == "NUMBER")
        value = float(number)
        return min(steps, int((value - flt_offset) * steps if "." in number else value - int_offset))

    def text(node: object, step: int) -> str:
        if node is None:
            return ""
        if isinstance(node, lark.Token):
            return str(node)
        assert isinstance(node, lark.Tree)
        if node.data == "scheduled":
            return text(node.children[0] if step <= when(node) else node.children[1], step)
        if node.data == "alternate":
            return text(node.children[(step - 1) % len(node.children)], step)
        return "".join(text(child, step) for child in node.children)

    try:
        tree = EARLEY.parse(prompt)
    except lark.exceptions.LarkError:
        return ((steps, prompt),)  # A1111 uses a prompt its grammar refuses as it is
    found = {steps}
    for node in tree.iter_subtrees():
        if node.data == "scheduled" and when(node) >= 1:
            found.add(when(node))
        elif node.data == "alternate":
            found.update(range(1, steps + 1))
    return tuple((step, text(tree, step)) for step in sorted(found))
