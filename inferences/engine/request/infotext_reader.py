"""Reading an A1111 infotext (a PNG's `parameters`) back, as A1111's infotext_utils.parse_generation_parameters does:
the prompt lines, the lines after `Negative prompt:`, and the last line's `Key: value` fields (JSON-quoted values
unquoted, `WxH` sizes split into `Key-1` / `Key-2`). Used by the Generate page's PNG Info (a dropped picture fills
the form) and by the payload's `infotext` key."""

from __future__ import annotations

import json
import re

# A1111's own expressions (infotext_utils.re_param_code, re_imagesize)
FIELD = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
SIZE = re.compile(r"^(\d+)x(\d+)$")


def unquote(text: str) -> str:
    """A1111's unquote: a value written by its quote() (JSON) read back; anything else as it is."""
    if len(text) == 0 or text[0] != '"' or text[-1] != '"':
        return text
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, str) else text


def parse_infotext(text: str) -> dict[str, str]:
    """The infotext's fields by A1111's labels, with "Prompt" and "Negative prompt"; the defaults A1111's paste adds
    for missing fields (Clip skip 1, RNG GPU, ...) are not added: a reader that needs one applies it."""
    *lines, last = text.strip().split("\n")
    if len(FIELD.findall(last)) < 3:  # A1111: a last line with fewer than three fields is part of the prompt
        lines.append(last)
        last = ""
    prompt, negative, negative_started = "", "", False
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            negative_started = True
            line = line[16:].strip()
        if negative_started:
            negative += ("" if negative == "" else "\n") + line
        else:
            prompt += ("" if prompt == "" else "\n") + line
    fields: dict[str, str] = {}
    for key, value in FIELD.findall(last):
        if value[:1] == '"' and value[-1:] == '"':
            value = unquote(value)
        size = SIZE.match(value)
        if size is not None:
            fields[f"{key}-1"], fields[f"{key}-2"] = size.group(1), size.group(2)
        else:
            fields[key] = value
    return {"Prompt": prompt, "Negative prompt": negative, **fields}
