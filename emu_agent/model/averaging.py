"""Average the weights of checkpoints that share one architecture and tokenizer (a "model soup").

Fine-tuning runs that start from one checkpoint stay in one basin of the loss, and the mean of their weights is
often as good as the best of them and steadier across inputs (Wortsman et al., 2022, "Model soups"). The
checkpoints must be ``EmuModel.save_pretrained`` folders of one config and one tokenizer:

* every ``*.safetensors`` file (the model, its shards, the decoder's UNet) is averaged tensor by tensor, in
  float32, and written back in the first checkpoint's dtype; tensors that are the same in every checkpoint (a
  frozen encoder, say) are kept bit-exact;
* every other file (config, tokenizer, scheduler) must be byte-identical, else the checkpoints are not one
  architecture and averaging them is refused;
* ``training.json`` records the merge: the sources' shared training history, then one ``average_of`` phase that
  lists each source, its weight and its own later phases.

The output is written to a temporary sibling folder and renamed into place, so a failure leaves nothing half
written and an existing folder is never touched unless ``overwrite=True``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from emu_agent.errors import InputError, ModelLoadError

__all__ = ["average_checkpoints"]

_TRAINING = "training.json"
_HISTORIES = ("encoder_phases", "decoder_phases", "lm_phases")


def average_checkpoints(
    sources: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    weights: Sequence[float] | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Write the weighted mean of ``sources``' weights to ``out`` and return ``out``.

    Args:
        sources: two or more checkpoint folders (or ``"emu-tiny"``) saved by ``EmuModel.save_pretrained``.
        out: the folder to write; it must not exist yet unless ``overwrite`` is set.
        weights: one non-negative weight per source (normalised to sum to 1); default: equal weights.
        overwrite: replace ``out`` if it exists (never one of the sources).
        progress: show a progress bar over the tensors.

    Raises:
        InputError: fewer than two sources, bad weights, or an ``out`` that exists or is a source.
        ModelLoadError: a source that is not a checkpoint folder, or sources of different architectures,
            tokenizers or tensor shapes (the message names the file or tensor).
    """
    folders = [_checkpoint_folder(source) for source in sources]
    if len(folders) < 2:
        raise InputError(f"average_checkpoints needs at least two checkpoints; got {len(folders)}")
    mix = _normalised(weights, len(folders))
    target = Path(out)
    _check_target(target, folders, overwrite=overwrite)
    files = _matching_files(folders)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        weight_files = [name for name in files if name.endswith(".safetensors")]
        total = sum(_tensor_count(folders[0] / name) for name in weight_files)
        with _progress(total, enabled=progress) as advance:
            for name in files:
                destination = staging / name
                destination.parent.mkdir(parents=True, exist_ok=True)
                if name in weight_files:
                    _average_file([folder / name for folder in folders], mix, destination, advance)
                elif name != _TRAINING:
                    shutil.copyfile(folders[0] / name, destination)
        names = [_display_name(source, folder) for source, folder in zip(sources, folders, strict=True)]
        merged = _merged_training(folders, names, mix)
        (staging / _TRAINING).write_text(json.dumps(merged, indent=2))
        if target.exists():  # overwrite=True was checked above
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return target


# ------------------------------------------------------------------------------------------------ checks
def _checkpoint_folder(source: str | os.PathLike[str]) -> Path:
    from emu_agent.model.loading import checkpoint_dir

    folder = checkpoint_dir(source)
    config = folder / "config.json"
    if not folder.is_dir() or not config.is_file():
        raise ModelLoadError(f"{str(source)!r} is not a checkpoint folder (expected config.json in it)")
    try:
        layout = json.loads(config.read_text()).get("format")
    except (json.JSONDecodeError, AttributeError) as exc:
        raise ModelLoadError(f"{str(config)!r} is not a JSON object: {exc}") from None
    if layout != "emu-agent":
        raise ModelLoadError(
            f"{str(source)!r} is not an emu-agent checkpoint (config.json format={layout!r}); load it and "
            "save_pretrained() it first"
        )
    return folder.resolve()


def _normalised(weights: Sequence[float] | None, count: int) -> list[float]:
    if weights is None:
        return [1.0 / count] * count
    values = [float(w) for w in weights]
    if len(values) != count:
        raise InputError(f"weights={values!r}: expected one weight per checkpoint ({count}), got {len(values)}")
    bad = [w for w in values if not math.isfinite(w) or w < 0]
    if bad:
        raise InputError(f"weights={values!r}: every weight must be finite and >= 0; bad: {bad[0]!r}")
    total = sum(values)
    if total <= 0:
        raise InputError(f"weights={values!r}: at least one weight must be > 0")
    return [w / total for w in values]


def _check_target(target: Path, folders: list[Path], *, overwrite: bool) -> None:
    resolved = target.resolve()
    if any(resolved == folder for folder in folders):
        raise InputError(f"out={str(target)!r} is one of the checkpoints being averaged; pick a new folder")
    if target.exists() and not overwrite:
        raise InputError(f"out={str(target)!r} already exists; pass overwrite=True (--overwrite) to replace it")
    if target.exists() and not target.is_dir():
        raise InputError(f"out={str(target)!r} is a file, not a folder")
    if target.is_dir() and any(target.iterdir()) and not (target / "config.json").is_file():
        raise InputError(
            f"out={str(target)!r} is a folder that holds something other than a checkpoint; not replacing it"
        )


def _relative_files(folder: Path) -> set[str]:
    return {path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()}


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def _matching_files(folders: list[Path]) -> list[str]:
    """The files of the first checkpoint, after checking the others have the same ones and the same config."""
    first = _relative_files(folders[0])
    for folder in folders[1:]:
        other = _relative_files(folder)
        extra = sorted((first ^ other) - {_TRAINING})
        if extra:
            raise ModelLoadError(
                f"{folders[0]} and {folder} do not have the same files ({extra[0]!r} is in only one): "
                "averaging needs checkpoints of one architecture"
            )
    for name in sorted(first):
        if name.endswith(".safetensors") or name == _TRAINING:
            continue
        digests = {_digest(folder / name) for folder in folders}
        if len(digests) > 1:
            raise ModelLoadError(
                f"{name!r} differs between the checkpoints: averaging needs one architecture, tokenizer and "
                f"decoder setup ({', '.join(str(folder) for folder in folders)})"
            )
    return sorted(first)


# ------------------------------------------------------------------------------------------------ averaging
def _tensor_count(path: Path) -> int:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return len(list(handle.keys()))


def _average_file(paths: list[Path], mix: list[float], destination: Path, advance: Callable[[int], Any]) -> None:
    """Average one safetensors file across checkpoints, tensor by tensor (one file in memory at a time);
    ``advance(n)`` is called as tensors are done."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with ExitStack() as stack:
        handles = [stack.enter_context(safe_open(str(path), framework="pt")) for path in paths]
        keys = list(handles[0].keys())
        for path, handle in zip(paths[1:], handles[1:], strict=True):
            if set(handle.keys()) != set(keys):
                missing = sorted(set(keys) ^ set(handle.keys()))[0]
                raise ModelLoadError(f"tensor {missing!r} is in only one of {paths[0]} and {path}")
        averaged = {}
        for key in keys:
            averaged[key] = _average_tensor(key, [handle.get_tensor(key) for handle in handles], mix, paths)
            advance(1)
        metadata = handles[0].metadata() or {"format": "pt"}
    save_file(averaged, str(destination), metadata=metadata)


def _average_tensor(key: str, tensors: list[Any], mix: list[float], paths: list[Path]) -> Any:
    import torch

    first = tensors[0]
    for path, tensor in zip(paths[1:], tensors[1:], strict=True):
        if tensor.shape != first.shape:
            raise ModelLoadError(
                f"tensor {key!r} has shape {tuple(tensor.shape)} in {path} but {tuple(first.shape)} in {paths[0]}"
            )
    if all(torch.equal(tensor, first) for tensor in tensors[1:]):  # a shared (e.g. frozen) tensor stays bit-exact
        return first.contiguous()
    if not first.is_floating_point():  # integer buffers (counters, ids) can't be averaged: they must agree
        raise ModelLoadError(f"integer tensor {key!r} differs between the checkpoints; it can't be averaged")
    total = torch.zeros(first.shape, dtype=torch.float32)
    for weight, tensor in zip(mix, tensors, strict=True):
        total.add_(tensor.to(torch.float32), alpha=weight)
    return total.to(first.dtype).contiguous()


@contextmanager
def _progress(total: int, *, enabled: bool) -> Iterator[Callable[[int], Any]]:
    """A tqdm bar over ``total`` tensors (closed on exit), or a no-op when disabled."""
    if not enabled:
        yield lambda _n: None
        return
    from tqdm.auto import tqdm

    with tqdm(total=total, desc="average", unit="tensor") as bar:
        yield bar.update


# ------------------------------------------------------------------------------------------------ lineage
def _display_name(source: str | os.PathLike[str], folder: Path) -> str:
    """How ``training.json`` names a source: a built-in model by its name, a folder by its absolute path."""
    from emu_agent.model.loading import BUILTIN_MODELS

    return str(source) if str(source) in BUILTIN_MODELS else str(folder)


def _merged_training(folders: list[Path], names: list[str], mix: list[float]) -> dict[str, Any]:
    """``training.json`` of the average: the shared history of each stage, then one ``average_of`` phase."""
    infos = [_read_training(folder) for folder in folders]
    steps = [info.get("steps") or {} for info in infos]
    merged: dict[str, Any] = {  # a stage's step count, where every source agrees on it
        "steps": {stage: count for stage, count in steps[0].items() if all(s.get(stage) == count for s in steps)}
    }
    for history in _HISTORIES:
        lineages = [list(info.get(history) or []) for info in infos]
        shared = _common_prefix(lineages)
        if all(len(lineage) == len(shared) for lineage in lineages):
            merged[history] = shared  # this stage is the same in every source
            continue
        merged[history] = [
            *shared,
            {
                "average_of": [
                    {"checkpoint": name, "weight": round(weight, 6), "phases": lineage[len(shared) :]}
                    for name, weight, lineage in zip(names, mix, lineages, strict=True)
                ]
            },
        ]
    merged["averaged"] = {
        "method": "weighted mean of every floating-point tensor, in float32",
        "checkpoints": names,
        "weights": [round(weight, 6) for weight in mix],
        "steps": steps,
    }
    return merged


def _read_training(folder: Path) -> dict[str, Any]:
    path = folder / _TRAINING
    if not path.is_file():
        return {}
    try:
        info = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"{str(path)!r} is not valid JSON: {exc}") from None
    return info if isinstance(info, dict) else {}


def _common_prefix(lineages: list[list[Any]]) -> list[Any]:
    shared: list[Any] = []
    for phases in zip(*lineages, strict=False):
        if any(phase != phases[0] for phase in phases[1:]):
            break
        shared.append(phases[0])
    return shared
