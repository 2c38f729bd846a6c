"""Render an explanation (han.inference.explain_text) for the terminal and as an HTML page.

Words are shaded by weight relative to the heaviest word of their sentence; each sentence is
prefixed with its sentence weight.
"""
from __future__ import annotations

import html

from rich.text import Text


def _shade(weight: float, top: float) -> float:
    return 0.0 if top <= 0 else min(1.0, weight / top)


def _header(result: dict) -> list[str]:
    top3 = ", ".join(f"{label} {p:.3f}" for label, p in result["top3"])
    flags = [name for name, on in result["flags"].items() if on] or ["none"]
    s = result["summary"]
    lines = [f"post {result['post_id']} (job {result['job']}), model {result['model']}",
             f"predicted: {result['predicted']}" + (f"   true: {result['true_label']}" if result.get("true_label") else ""),
             f"top 3: {top3}",
             f"flags: {', '.join(flags)}",
             f"word entropy {s['word_entropy']:.3f}, mean max word weight {s['word_max_mean']:.3f}, "
             f"sentence entropy {s['sent_entropy']:.3f}, gate (cross path) {s['gate_mean']:.3f}, "
             f"{s['num_sentences']} sentences, {s['num_words']} words"]
    return lines


def explanation_text(result: dict) -> Text:
    text = Text("\n".join(_header(result)) + "\n\n")
    for i, sentence in enumerate(result["sentences"], start=1):
        text.append(f"[{i:>2}] {sentence['weight']:.3f}  ", style="bold" if sentence["weight"] >= 0.2 else "dim")
        top = max(w for _, w in sentence["words"])
        for word, weight in sentence["words"]:
            level = _shade(weight, top)
            style = "bold black on yellow" if level > 0.66 else "black on khaki1" if level > 0.33 else \
                "on grey30" if level > 0.1 else ""
            text.append(word, style=style)
            text.append(" ")
        text.append("\n")
    return text


def explanation_html(result: dict) -> str:
    rows = []
    for i, sentence in enumerate(result["sentences"], start=1):
        top = max(w for _, w in sentence["words"])
        words = " ".join(
            f'<span title="{weight:.4f}" style="background: rgba(255, 200, 0, {_shade(weight, top):.2f})">'
            f"{html.escape(word)}</span>" for word, weight in sentence["words"])
        rows.append(f'<tr><td class="n">{i}</td><td class="w" style="background: rgba(80, 140, 255, '
                    f'{min(1.0, sentence["weight"]):.2f})">{sentence["weight"]:.3f}</td><td>{words}</td></tr>')
    header = "".join(f"<p>{html.escape(line)}</p>" for line in _header(result))
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(str(result['post_id']))}</title>
<style>body {{ font-family: sans-serif; max-width: 60em; margin: 2em auto; }}
td {{ padding: 0.2em 0.5em; vertical-align: top; }} td.n, td.w {{ text-align: right; font-family: monospace; }}
span {{ padding: 0 1px; border-radius: 2px; }}</style></head>
<body>{header}
<table><tr><th>#</th><th>sentence weight</th><th>words (shaded by word weight within the sentence)</th></tr>
{''.join(rows)}</table></body></html>
"""
