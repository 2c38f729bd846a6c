"""Read and validate a JSON-lines file of posts: `{"id": ..., "text": ..., "label": optional group}`.

Every bad line is rejected with its line number and reason; the good lines go on. Accepted:
UTF-8 with or without a byte-order mark, LF or CRLF line ends, blank lines (skipped), and gzip
(`.gz` or gzip magic bytes).

    posts, rejects = read_posts("posts.jsonl", label_names)
    for r in rejects: print(f"{r.path}:{r.line}: {r.reason}")
"""
from __future__ import annotations

import gzip
import json
import zlib
from dataclasses import dataclass
from pathlib import Path

MAX_ID_LENGTH = 256
MAX_TEXT_CHARS = 1_000_000  # the model reads 30 sentences; a longer post is almost surely a mistake


class IntakeError(Exception):
    """The file as a whole cannot be read (missing, a directory, unreadable gzip)."""


@dataclass
class Reject:
    path: str
    line: int
    reason: str
    raw: str  # the line as read (undecodable bytes replaced), cut to 200 characters

    def to_json(self) -> dict:
        return {"file": self.path, "line": self.line, "reason": self.reason, "raw": self.raw}


def _lines(path: Path):
    if not path.exists():
        raise IntakeError(f"{path}: no such file")
    if path.is_dir():
        raise IntakeError(f"{path}: is a directory, not a JSON-lines file")
    if not path.is_file():
        raise IntakeError(f"{path}: not a regular file (pipes and devices cannot be resumed; save it to a file)")
    try:
        with open(path, "rb") as f:
            gzipped = f.read(2) == b"\x1f\x8b"
        opener = gzip.open if gzipped else open
        with opener(path, "rb") as f:
            yield from f
    except (OSError, EOFError, zlib.error) as exc:
        raise IntakeError(f"{path}: cannot read ({exc})") from exc


def _check(obj, label_names: set[str]) -> tuple[dict | None, str | None]:
    """(post, None) for a valid object, (None, reason) otherwise."""
    if not isinstance(obj, dict):
        return None, f"not a JSON object (got {type(obj).__name__})"
    if "id" not in obj or obj["id"] is None:
        return None, "missing field 'id'"
    post_id = obj["id"]
    if isinstance(post_id, bool) or not isinstance(post_id, (str, int)):
        return None, f"field 'id' must be a string or an integer, not {type(post_id).__name__}"
    post_id = str(post_id)
    if not post_id.strip():
        return None, "field 'id' is empty"
    if len(post_id) > MAX_ID_LENGTH:
        return None, f"field 'id' is {len(post_id)} characters long (at most {MAX_ID_LENGTH})"
    if "text" not in obj:
        return None, "missing field 'text'"
    text = obj["text"]
    if not isinstance(text, str):
        return None, f"field 'text' must be a string, not {type(text).__name__}"
    if not text.strip():
        return None, "field 'text' is empty"
    if len(text) > MAX_TEXT_CHARS:
        return None, f"field 'text' has {len(text):,} characters (at most {MAX_TEXT_CHARS:,})"
    for field, value in (("id", post_id), ("text", text)):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate escape such as \ud800: no database stores it
            return None, f"field '{field}' is not valid Unicode (character {exc.start})"
        if "\x00" in value:  # PostgreSQL text cannot hold NUL
            return None, f"field '{field}' holds a NUL character"
    label = obj.get("label")
    if label is not None and (not isinstance(label, str) or label not in label_names):
        return None, f"unknown label {label!r} (expected one of the model's {len(label_names)} groups)"
    return {"external_id": post_id, "text": text, "true_label": label}, None


def read_posts(path, label_names) -> tuple[list[dict], list[Reject]]:
    """Valid posts ({"external_id", "line_no", "text", "true_label"}) and the rejected lines."""
    path = Path(path)
    labels = set(label_names)
    posts, rejects, first_line_of = [], [], {}
    for number, raw in enumerate(_lines(path), start=1):
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        shown = raw.decode("utf-8", "replace").rstrip("\r\n")[:200]
        reject = lambda reason: rejects.append(Reject(str(path), number, reason, shown))
        if not raw.strip():
            continue
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            reject(f"not valid UTF-8 (byte {exc.start})")
            continue
        try:
            obj = json.loads(line)
        except RecursionError:
            reject("JSON nested too deeply")
            continue
        except json.JSONDecodeError as exc:
            truncated = not raw.endswith(b"\n")
            reject(f"malformed JSON ({exc.msg} at column {exc.colno})" + (", last line truncated?" if truncated else ""))
            continue
        post, reason = _check(obj, labels)
        if reason:
            reject(reason)
            continue
        if post["external_id"] in first_line_of:
            reject(f"duplicate id {post['external_id']!r} (first on line {first_line_of[post['external_id']]})")
            continue
        first_line_of[post["external_id"]] = number
        posts.append({**post, "line_no": number})
    return posts, rejects
