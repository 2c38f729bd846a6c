"""Line-by-line validation of submitted files (no services needed)."""
from __future__ import annotations

import gzip
import json

import pytest

from worker.intake import IntakeError, read_posts

LABELS = ["sci.med", "sci.space"]


def write(tmp_path, name, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_bom_crlf_blank_lines_and_gzip(tmp_path):
    lines = [json.dumps({"id": i, "text": f"post {i}", "label": "sci.med"}) for i in range(3)]
    body = ("\r\n".join(lines[:2]) + "\r\n\r\n" + lines[2] + "\r\n").encode()
    plain = write(tmp_path, "a.jsonl", b"\xef\xbb\xbf" + body)
    packed = write(tmp_path, "a.jsonl.gz", gzip.compress(b"\xef\xbb\xbf" + body))
    for path in (plain, packed):
        posts, rejects = read_posts(path, LABELS)
        assert rejects == []
        assert [(p["external_id"], p["line_no"], p["true_label"]) for p in posts] == \
            [("0", 1, "sci.med"), ("1", 2, "sci.med"), ("2", 4, "sci.med")]


def test_each_bad_line_has_its_reason(tmp_path):
    path = write(tmp_path, "b.jsonl", b"\n".join([
        b'{"id": "a", "text": "fine"}',
        b'{"id": "x" * 300}',
        json.dumps({"id": "x" * 300, "text": "t"}).encode(),
        b'{"text": "no id"}',
        b'{"id": true, "text": "bool id"}',
        b'{"id": "big", "text": "' + b"a" * 1_000_001 + b'"}',
        b'{"id": "tr", "text": "trunc',
    ]))
    posts, rejects = read_posts(path, LABELS)
    assert [p["external_id"] for p in posts] == ["a"]
    assert [(r.line, r.reason.split(" (")[0]) for r in rejects] == [
        (2, "malformed JSON"),
        (3, "field 'id' is 300 characters long"),
        (4, "missing field 'id'"),
        (5, "field 'id' must be a string or an integer, not bool"),
        (6, "field 'text' has 1,000,001 characters"),
        (7, "malformed JSON"),
    ]
    assert rejects[-1].reason.endswith("last line truncated?")


def test_whole_file_errors(tmp_path):
    with pytest.raises(IntakeError, match="no such file"):
        read_posts(tmp_path / "missing.jsonl", LABELS)
    with pytest.raises(IntakeError, match="is a directory"):
        read_posts(tmp_path, LABELS)
    assert read_posts(write(tmp_path, "empty.jsonl", b""), LABELS) == ([], [])


def test_hostile_text_and_sizes(tmp_path):
    ten_mb = "word " * 2_000_000
    lines = [
        json.dumps({"id": "ok", "text": "fine"}),
        '{"id": "surrogate", "text": "bad \\ud800 half"}',
        json.dumps({"id": "huge", "text": ten_mb}),
        json.dumps({"id": "nul", "text": "nul \u0000 byte"}),
    ]
    posts, rejects = read_posts(write(tmp_path, "h.jsonl", "\n".join(lines).encode()), LABELS)
    assert [p["external_id"] for p in posts] == ["ok"]
    assert [(r.line, r.reason.split(" (")[0]) for r in rejects] == [
        (2, "field 'text' is not valid Unicode"), (3, "field 'text' has 10,000,000 characters"),
        (4, "field 'text' holds a NUL character")]
