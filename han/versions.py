"""Model version names: `v3` <-> 3. Light on purpose: the CLI parses versions without loading torch."""
from __future__ import annotations

import re

VERSION = re.compile(r"^v([1-9][0-9]*)$")


def parse_version(text) -> int:
    """`v3` or `3` -> 3."""
    match = VERSION.match(str(text).strip()) or VERSION.match("v" + str(text).strip())
    if not match or len(match.group(1)) > 9:
        raise ValueError(f"{text!r} is not a model version (expected v1, v2, ...)")
    return int(match.group(1))


def version_name(number: int) -> str:
    return f"v{number}"
