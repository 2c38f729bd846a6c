"""Load the 20 Newsgroups "bydate" corpus from its archive or an unpacked folder.

Each post is kept raw (as the list carried it) and stripped by one of two protocols (see the data
README and han.stripping): `seed`, the reference experiment's own loader, and `sklearn`. Posts are
read in a fixed order (group, then numeric file name) so splits and results do not depend on the
file system.

    corpus = load_corpus("../shared/data/20news-bydate.tar.gz", protocol="seed")
    corpus.train.texts[0], corpus.train.raw[0], corpus.train.labels[0], corpus.label_names
"""
from __future__ import annotations

import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from han.stripping import PROTOCOLS, strip_post

SPLITS = ("train", "test")
LABEL_NAMES = [
    "alt.atheism", "comp.graphics", "comp.os.ms-windows.misc", "comp.sys.ibm.pc.hardware",
    "comp.sys.mac.hardware", "comp.windows.x", "misc.forsale", "rec.autos", "rec.motorcycles",
    "rec.sport.baseball", "rec.sport.hockey", "sci.crypt", "sci.electronics", "sci.med",
    "sci.space", "soc.religion.christian", "talk.politics.guns", "talk.politics.mideast",
    "talk.politics.misc", "talk.religion.misc",
]


class DataError(Exception):
    """The corpus path is missing or does not look like 20news-bydate."""


@dataclass
class Split:
    ids: list[str]  # "train/sci.med/58043": split, group and file name
    raw: list[str]  # the post as the list carried it, headers included
    texts: list[str]  # stripped by the corpus protocol
    labels: np.ndarray  # (n,) class ids into LABEL_NAMES

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, index) -> "Split":
        index = np.asarray(index)
        pick = lambda items: [items[i] for i in index]
        return Split(pick(self.ids), pick(self.raw), pick(self.texts), self.labels[index])


@dataclass
class Corpus:
    train: Split
    test: Split
    protocol: str
    label_names: list[str]


def decode_post(data: bytes) -> str:
    """Latin-1 with universal newlines, as Python's text mode reads it (the README's numbers do)."""
    return data.decode("latin-1").replace("\r\n", "\n").replace("\r", "\n")


def _file_key(name: str):
    return (0, int(name), "") if name.isdigit() else (1, 0, name)


def _read_raw(path: Path) -> dict[str, dict[str, list[tuple[str, bytes]]]]:
    """{split: {group: [(file name, bytes), ...]}} from the archive or the unpacked folder."""
    found: dict[str, dict[str, list[tuple[str, bytes]]]] = {s: {} for s in SPLITS}

    def add(parts, read):
        if len(parts) >= 3 and parts[-3].startswith("20news-bydate-"):
            split = parts[-3].removeprefix("20news-bydate-")
            if split in found and parts[-2] in LABEL_NAMES:
                found[split].setdefault(parts[-2], []).append((parts[-1], read()))

    if path.is_file():
        try:
            with tarfile.open(path, "r:*") as archive:
                for member in archive:
                    if member.isfile():
                        add(member.name.split("/"), lambda: archive.extractfile(member).read())
        except (tarfile.TarError, EOFError, OSError) as exc:  # EOFError: a truncated gzip stream
            detail = " ".join(str(exc).split())  # one line, whatever the decompressors said
            raise DataError(f"{path}: not a readable tar archive ({detail})") from exc
    elif path.is_dir():
        for root, _dirs, files in os.walk(path):
            for name in files:
                full = Path(root) / name
                add(full.parts, full.read_bytes)
    else:
        raise DataError(f"{path}: no such file or folder (set --data or HAN_DATA to the 20news-bydate archive)")
    for split in SPLITS:
        if not found[split]:
            raise DataError(f"{path}: no 20news-bydate-{split}/<group>/<post> files found")
    return found


def load_corpus(path, protocol: str = "seed") -> Corpus:
    if protocol not in PROTOCOLS:
        raise DataError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    raw = _read_raw(Path(path))
    splits = {}
    for split in SPLITS:
        ids, posts, labels = [], [], []
        for label, group in enumerate(LABEL_NAMES):
            for name, data in sorted(raw[split].get(group, []), key=lambda item: _file_key(item[0])):
                ids.append(f"{split}/{group}/{name}")
                posts.append(decode_post(data))
                labels.append(label)
        texts = [strip_post(post, protocol) for post in posts]
        splits[split] = Split(ids, posts, texts, np.asarray(labels, dtype=np.int64))
    return Corpus(splits["train"], splits["test"], protocol, list(LABEL_NAMES))


def train_validation_split(n: int, *, seed: int = 42, validation_share: float = 0.1):
    """Indices of the reference's 90/10 split: torch's random_split with a seeded generator."""
    import torch

    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
    n_train = int((1 - validation_share) * n)
    if n_train == 0 or n_train == n:
        raise DataError(f"validation_share={validation_share} of {n} training posts leaves "
                        f"{'no training' if n_train == 0 else 'no validation'} posts")
    return order[:n_train], order[n_train:]
