"""Training presets: every hyperparameter of a run in one dataclass.

`seed` is the reference experiment exactly; `small` is what 2 CPU cores train in about ten minutes;
`tiny` trains on a slice of the corpus in seconds and is what the tests use.

    config = preset("small", overrides=["epochs=3", "word_hidden=96"])
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace


@dataclass(frozen=True)
class TrainConfig:
    preset: str = "seed"  # name of the preset this config started from
    protocol: str = "seed"  # corpus stripping protocol: seed or sklearn
    embeddings: str = "glove-6b-50d"  # packaged GloVe 6B 50-d, or none
    embed_dim: int = 50  # the word vectors' size; a run follows the vectors it is given
    word_hidden: int = 256  # word BiLSTM size per direction
    sent_hidden: int = 256  # sentence BiLSTM size per direction
    attention_dim: int = 128  # additive attention size
    num_layers: int = 2  # BiLSTM layers
    num_heads: int = 8  # cross-attention heads
    top_k: int = 15  # query words per sentence
    dropout: float = 0.4
    word_dropout: float = 0.0  # share of real training words replaced by <UNK> (not in the reference: 0)
    embed_lr_scale: float = 1.0  # word vectors' learning rate relative to lr; 0 freezes them (reference: 1)
    precision: str = "fp32"  # training step arithmetic: fp32, or bf16 (autocast); evaluation and serving are fp32
    lr: float = 1e-3  # AdamW learning rate
    weight_decay: float = 1e-4
    label_smoothing: float = 0.1
    epochs: int = 20  # cosine annealing period and epoch cap
    min_lr: float = 1e-6  # cosine floor
    grad_clip: float = 1.0
    batch_size: int = 32
    patience: int = 5  # epochs without a better validation weighted F1 before stopping
    validation_share: float = 0.1
    seed: int = 42
    max_sents: int = 30
    max_words: int = 50
    min_count: int = 2  # vocabulary: words seen at least this often in the training split
    max_vocab: int = 50_000
    train_limit: int = 0  # use only the first N training posts (spread over all groups); 0 = all
    test_limit: int = 0  # evaluate on only N test posts; 0 = all

    def to_json(self) -> dict:
        return asdict(self)


PRESETS = {
    # the reference's 300-d GloVe; with the packaged 50-d vectors (the default) the trainer sets
    # embed_dim to theirs and says so
    "seed": TrainConfig(preset="seed", embed_dim=300),
    # hidden 96 and 12 epochs measured best of what 2 cores train in about ten minutes; word vectors
    # at 3x the learning rate: +1.1-1.2 points of test accuracy side by side with 1x on seeds 42 and 7,
    # ahead of the best baseline in 8 of 9 runs (README, Results)
    "small": TrainConfig(preset="small", word_hidden=96, sent_hidden=96, attention_dim=64, num_layers=1,
                         num_heads=4, dropout=0.3, lr=2e-3, embed_lr_scale=3.0, epochs=12, batch_size=64),
    "tiny": TrainConfig(preset="tiny", word_hidden=16, sent_hidden=16, attention_dim=16, num_layers=1,
                        num_heads=2, top_k=5, dropout=0.0, lr=1e-2, epochs=4, batch_size=32,
                        max_sents=12, max_words=30, train_limit=2000, test_limit=200),
}


class PresetError(ValueError):
    pass


def preset(name: str, overrides=()) -> TrainConfig:
    """A named preset with `key=value` overrides; unknown keys and bad values are refused."""
    if name not in PRESETS:
        raise PresetError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    config = PRESETS[name]
    types = {f.name: f.type for f in fields(TrainConfig)}
    changes = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in types or key == "preset":
            raise PresetError(f"bad override {item!r}: expected key=value with key one of "
                              f"{', '.join(k for k in types if k != 'preset')}")
        kind = {"int": int, "float": float, "str": str}[types[key]]
        try:
            changes[key] = kind(value.strip())
        except ValueError:
            raise PresetError(f"bad override {item!r}: {key} takes a {types[key]}") from None
    config = replace(config, **changes)
    problem = validate(config)
    if problem:
        raise PresetError(f"bad value: {problem}")
    return config


POSITIVE = ("embed_dim", "word_hidden", "sent_hidden", "attention_dim", "num_layers", "num_heads", "top_k",
            "epochs", "batch_size", "patience", "max_sents", "max_words", "min_count", "max_vocab")


PRECISIONS = ("fp32", "bf16")


def validate(config: TrainConfig) -> str | None:
    """The first field with a value no run can use, as a message; None when all are usable."""
    for field in fields(config):  # nan and inf pass every comparison below unnoticed
        value = getattr(config, field.name)
        if isinstance(value, float) and not math.isfinite(value):
            return f"{field.name}={value} must be a finite number"
    for name in POSITIVE:
        if getattr(config, name) < 1:
            return f"{name}={getattr(config, name)} must be at least 1"
    if not 0 <= config.seed < 2 ** 32:
        return f"seed={config.seed} must be between 0 and 2**32 - 1"
    if (2 * config.sent_hidden) % config.num_heads:
        return f"num_heads={config.num_heads} must divide 2 * sent_hidden = {2 * config.sent_hidden}"
    if not 0.0 <= config.dropout < 1.0:
        return f"dropout={config.dropout} must be in [0, 1)"
    if not 0.0 <= config.word_dropout < 1.0:
        return f"word_dropout={config.word_dropout} must be in [0, 1)"
    if not 0.0 < config.validation_share < 1.0:
        return f"validation_share={config.validation_share} must be between 0 and 1"
    if config.train_limit < 0 or config.test_limit < 0:
        return "train_limit and test_limit must be 0 (all) or positive"
    if not (config.lr > 0 and config.min_lr >= 0 and config.weight_decay >= 0 and config.grad_clip > 0
            and 0.0 <= config.label_smoothing < 1.0):
        return "lr and grad_clip must be positive; min_lr, weight_decay >= 0; label_smoothing in [0, 1)"
    if config.min_lr > config.lr:
        return f"min_lr={config.min_lr} must not exceed lr={config.lr} (the cosine schedule falls from lr to min_lr)"
    if config.embed_lr_scale < 0:
        return f"embed_lr_scale={config.embed_lr_scale} must be 0 (frozen word vectors) or positive"
    if 0 < config.lr * config.embed_lr_scale < config.min_lr:  # the cosine would raise it towards min_lr
        return (f"embed_lr_scale={config.embed_lr_scale} puts the word vectors' learning rate below "
                f"min_lr={config.min_lr}; use 0 to freeze them")
    if config.precision not in PRECISIONS:
        return f"precision={config.precision} must be one of {', '.join(PRECISIONS)}"
    from han.stripping import PROTOCOLS

    if config.protocol not in PROTOCOLS:
        return f"protocol={config.protocol} must be one of {', '.join(PROTOCOLS)}"
    return None
