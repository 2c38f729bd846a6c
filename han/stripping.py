"""Strip a raw newsgroup post of headers, signature and quoted replies, by a named protocol.

`seed` is the reference experiment's loader; `sklearn` is scikit-learn's
`remove=('headers', 'footers', 'quotes')`. Training and serving both call `strip_post`, so a post
submitted raw (as it came from the list) reaches the model exactly as training posts did. The
header rule applies only when the text opens with a header block (`Field: value` lines up to the
first blank line), so a post submitted without headers keeps its first paragraph.

    strip_post(raw_text, "seed")
"""
from __future__ import annotations

import re

from sklearn.datasets._twenty_newsgroups import (strip_newsgroup_footer, strip_newsgroup_header,
                                                  strip_newsgroup_quoting)

PROTOCOLS = ("seed", "sklearn")
_FIELD = re.compile(r"^[^\s:]+:(\s|$)")  # "Subject: ..." (RFC 5322 field name, then a colon)
_CONTINUATION = re.compile(r"^[ \t]+\S")  # a folded header line


def has_header_block(text: str) -> bool:
    """True when the text opens with header lines (at least one field) followed by a blank line."""
    fields = 0
    for line in text.split("\n"):
        if not line.strip():
            return fields > 0
        if _FIELD.match(line):
            fields += 1
        elif not _CONTINUATION.match(line):
            return False
    return False


def _seed(text: str) -> str:
    lines = text.split("\n")
    if has_header_block(text):
        for i, line in enumerate(lines):
            if line.strip() == "":
                lines = lines[i + 1:]
                break
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].strip() == "--":
            lines = lines[:i]
            break
    return "\n".join(line for line in lines if not line.strip().startswith(">"))


def _sklearn(text: str) -> str:
    if has_header_block(text):
        text = strip_newsgroup_header(text)
    return strip_newsgroup_quoting(strip_newsgroup_footer(text))


_STRIPPERS = {"seed": _seed, "sklearn": _sklearn}


def strip_post(text: str, protocol: str) -> str:
    if protocol not in _STRIPPERS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    return _STRIPPERS[protocol](text.replace("\r\n", "\n").replace("\r", "\n"))
