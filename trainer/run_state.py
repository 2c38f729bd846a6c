"""Everything needed to resume a training run, in one safetensors file (no pickle anywhere).

After every epoch the trainer replaces `checkpoints/vN.partial/run_state.safetensors` atomically:
current and best weights, AdamW moments, the torch RNG state as tensors; epoch, history, scheduler,
optimizer hyperparameters, config, text pipeline and vocabulary as JSON in the file's metadata.

    save_run_state(folder, model=..., best_state=..., optimizer=..., scheduler=..., progress={...})
    state = load_run_state(folder); state.model_state, state.progress["epoch"]
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

FILE = "run_state.safetensors"


class RunStateError(Exception):
    pass


def partial_dir(root, version: int) -> Path:
    return Path(root) / f"v{version}.partial"


@dataclass
class RunState:
    model_state: dict[str, torch.Tensor]
    best_state: dict[str, torch.Tensor]
    optimizer_state: dict
    scheduler_state: dict
    rng_state: torch.Tensor
    progress: dict  # epoch, best_f1, stale, history, version, config, text, vocab, coverage


def _optimizer_to_flat(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, scalars = {}, {}
    for index, values in state_dict["state"].items():
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"optim.{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def _optimizer_from_flat(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
    for index, values in meta["scalars"].items():
        state.setdefault(int(index), {}).update(values)
    groups = [{**g, "betas": tuple(g["betas"])} if "betas" in g else g for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


def save_run_state(folder: Path, *, model, best_state, optimizer, scheduler, progress: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors.update({f"best.{k}": v.detach().cpu().contiguous() for k, v in best_state.items()})
    optim_tensors, optim_meta = _optimizer_to_flat(optimizer.state_dict())
    tensors.update(optim_tensors)
    tensors["rng.torch"] = torch.get_rng_state()
    metadata = {"progress": json.dumps(progress), "optimizer": json.dumps(optim_meta),
                "scheduler": json.dumps(scheduler.state_dict())}
    tmp = folder / (FILE + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, folder / FILE)


def load_run_state(folder: Path) -> RunState:
    path = folder / FILE
    if not path.is_file():
        raise RunStateError(f"{folder.name.removesuffix('.partial')} has no saved training state "
                            f"({path} is missing): it finished, or never completed an epoch")
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
    tensors = load_file(str(path))
    pick = lambda prefix: {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    return RunState(pick("model."), pick("best."),
                    _optimizer_from_flat(tensors, json.loads(metadata["optimizer"])),
                    json.loads(metadata["scheduler"]), tensors["rng.torch"], json.loads(metadata["progress"]))
