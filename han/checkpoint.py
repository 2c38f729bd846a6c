"""Versioned checkpoints: `checkpoints/vN/` with safetensors weights and JSON for everything else.

A checkpoint describes itself: the architecture, text pipeline (with Punkt parameters), vocabulary,
label names and failure thresholds all come from its files, never from current defaults. It is
written to a temporary folder and renamed into place, and its weights' sha256 is checked on load.

    path = save_checkpoint(root, version=3, model=model, pipeline=pipeline, vocab=vocab, ...)
    loaded = load_checkpoint(path, expected_sha256=row.sha256)
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from safetensors.torch import load_file, save_file

from han.model import HAN, HANConfig
from han.text import TextPipeline, Vocabulary
from han.versions import VERSION, parse_version, version_name

FORMAT_VERSION = 1
WEIGHTS, CONFIG, VOCAB, METRICS, HISTORY = "model.safetensors", "config.json", "vocab.json", "metrics.json", "history.json"


class CheckpointError(Exception):
    """A checkpoint is missing, corrupt, tampered with or of an unknown format."""


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def existing_versions(root) -> list[int]:
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(int(m.group(1)) for p in root.iterdir() if p.is_dir() and (m := VERSION.match(p.name)))


def _write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n", encoding="utf-8")


def _share_like_new_files(folder: Path) -> None:
    """Permissions of a folder made by mkdtemp (0700, and whatever its writers chose inside) set to
    what the process's umask gives new files: a worker running as another user can read them."""
    mask = os.umask(0)
    os.umask(mask)
    for path in [folder, *folder.rglob("*")]:
        path.chmod((0o777 if path.is_dir() else 0o666) & ~mask)


def save_checkpoint(root, *, version: int, model: HAN, pipeline: TextPipeline, vocab: Vocabulary,
                    label_names: list[str], thresholds: dict, extra_config: dict, metrics: dict,
                    history: list[dict], report_dir: Path | None = None) -> Path:
    """Write `root/vN/` atomically (temporary folder, then rename); returns its path.

    `report_dir`, when given, is moved in as `vN/report/`.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / version_name(version)
    if final.exists():
        raise CheckpointError(f"{final} already exists")
    tmp = Path(tempfile.mkdtemp(prefix=f".{version_name(version)}-", dir=root))
    try:
        state = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS), metadata={"format_version": str(FORMAT_VERSION)})
        _write_json(tmp / CONFIG, {
            "format_version": FORMAT_VERSION,
            "version": version_name(version),
            "model": model.config.to_json(),
            "label_names": list(label_names),
            "failure_thresholds": thresholds,
            **extra_config,
            "text": pipeline.to_json(),
        })
        _write_json(tmp / VOCAB, vocab.words)
        _write_json(tmp / METRICS, metrics)
        _write_json(tmp / HISTORY, history)
        if report_dir is not None:
            shutil.move(str(report_dir), str(tmp / "report"))
        _share_like_new_files(tmp)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


@dataclass
class LoadedModel:
    version: int
    path: Path
    model: HAN
    pipeline: TextPipeline
    vocab: Vocabulary
    label_names: list[str]
    thresholds: dict
    config: dict


def load_checkpoint(path, *, expected_sha256: str | None = None) -> LoadedModel:
    path = Path(path)
    name = path.name
    for required in (WEIGHTS, CONFIG, VOCAB):
        if not (path / required).is_file():
            raise CheckpointError(f"checkpoint {name}: {path / required} is missing")
    if expected_sha256 is not None:
        actual = file_sha256(path / WEIGHTS)
        if actual != expected_sha256:
            raise CheckpointError(f"checkpoint {name}: weights sha256 {actual[:12]}... differs from the "
                                  f"registry's {expected_sha256[:12]}... (corrupted or replaced)")
    try:
        config = json.loads((path / CONFIG).read_text(encoding="utf-8"))
        words = json.loads((path / VOCAB).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {name}: unreadable JSON ({exc})") from exc
    if config.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {name}: format version {config.get('format_version')!r}, "
                              f"this code reads {FORMAT_VERSION}")
    try:
        model = HAN(HANConfig(**config["model"]))
        model.load_state_dict(load_file(str(path / WEIGHTS)))
    except Exception as exc:  # safetensors and torch raise several types for bad files
        raise CheckpointError(f"checkpoint {name}: cannot load weights ({exc})") from exc
    model.eval()
    return LoadedModel(parse_version(config["version"]), path, model, TextPipeline.from_json(config["text"]),
                       Vocabulary(words), config["label_names"], config["failure_thresholds"], config)
