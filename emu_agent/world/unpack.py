"""Turn an assembled emu-tiny checkpoint back into a training run dir, so training can go on from it.

A run dir holds each stage's weights (``encoder/``, ``decoder/``, ``lm/``) and the tokenizer; :func:`assemble`
merges them into one checkpoint. Run dirs do not travel (they hold optimizer state and are large); the
checkpoint does. :func:`unpack_checkpoint` is the inverse of ``assemble``: the encoder, tokenizer and decoder
come back as finished stages, and the LM comes back as a run that a new LM phase starts from
(``TrainConfig.lm_init``), with its full lineage, so the next checkpoint's ``training.json`` still lists every
phase behind it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["checkpoint_fingerprint", "is_unpacked", "unpack_checkpoint", "unpacked_fingerprint", "unpacked_from"]

_UNPACKED = "unpacked.json"  # marks a stage restored from a checkpoint (weights only, no optimizer state)


def unpack_checkpoint(checkpoint: str | Path, run_dir: str | Path) -> dict[str, Any]:
    """Write ``checkpoint``'s parts (``"emu-tiny"`` or a ``save_pretrained`` folder) into ``run_dir``.

    Writes ``encoder/``, ``decoder/`` and ``tokenizer/`` as finished stages, and ``run_dir/checkpoint-lm/lm/``
    as the LM to start a new phase from, with its tokenizer (pass ``run_dir / "checkpoint-lm"`` as ``lm_init``). Returns
    ``{"lm_init": path, "steps": {...}, "lm_phases": n}``. Refuses (``InputError``) a ``run_dir`` that
    already holds trained stages, so nothing trained is overwritten.
    """
    import torch
    from safetensors.torch import save_file

    from emu_agent.errors import InputError
    from emu_agent.model.emu import EmuModel

    run_dir = Path(run_dir)
    taken = [name for name in ("encoder", "decoder", "lm") if (run_dir / name / "weights.safetensors").exists()]
    if taken:
        raise InputError(f"run_dir={str(run_dir)!r} already holds trained stages {taken}; unpack into a new one")
    model = EmuModel.from_pretrained(str(checkpoint), dtype="float32", device="cpu")
    if model.decoder is None:
        raise InputError(f"checkpoint={str(checkpoint)!r} has no decoder: emu-tiny training needs all its parts")
    info = _training_info(checkpoint)
    steps = info.get("steps", {})
    fingerprint = checkpoint_fingerprint(checkpoint)

    def write_stage(stage_dir: Path, state: dict[str, torch.Tensor], step: int) -> None:
        stage_dir.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().contiguous() for k, v in state.items()}, str(stage_dir / "weights.safetensors"))
        (stage_dir / "state.json").write_text(json.dumps({"step": step, "log": []}))
        (stage_dir / _UNPACKED).write_text(json.dumps({"checkpoint": str(checkpoint), "sha256": fingerprint}))

    model.tokenizer.save_pretrained(run_dir / "tokenizer")
    write_stage(run_dir / "encoder", _prefixed("visual", model.visual.state_dict()), int(steps.get("encoder", 0)))
    write_stage(run_dir / "decoder", model.decoder.unet.state_dict(), int(steps.get("decoder", 0)))
    for stage in ("encoder", "decoder"):  # their phases as shipped (a checkpoint from before phases: one entry)
        shipped = info.get(f"{stage}_phases") or [{"run_dir": str(checkpoint), "steps": steps.get(stage)}]
        (run_dir / stage / "lineage.json").write_text(json.dumps(shipped))
    lm_state = {
        **_prefixed("lm", model.lm.state_dict()),
        **_prefixed("project_up", model.project_up.state_dict()),
        **_prefixed("project_down", model.project_down.state_dict()),
    }
    lm_run = run_dir / "checkpoint-lm"
    model.tokenizer.save_pretrained(lm_run / "tokenizer")  # an LM's vocabulary is its tokenizer's: they travel together
    phases = list(info.get("lm_phases") or [{"run_dir": str(checkpoint), "steps": steps.get("lm")}])
    write_stage(lm_run / "lm", lm_state, int(phases[-1].get("steps") or 0))
    (lm_run / "lm" / "lineage.json").write_text(json.dumps(phases))  # the whole lineage, as shipped
    return {"lm_init": str(lm_run), "steps": steps, "lm_phases": len(phases)}


def _prefixed(prefix: str, state: dict[str, Any]) -> dict[str, Any]:
    return {f"{prefix}.{key}": value for key, value in state.items()}


def _training_info(checkpoint: str | Path) -> dict[str, Any]:
    """The checkpoint's ``training.json`` (stages and LM phases), or ``{}`` when it has none."""
    from emu_agent.model.loading import checkpoint_dir

    path = checkpoint_dir(checkpoint) / "training.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def checkpoint_fingerprint(checkpoint: str | Path) -> str:
    """SHA-256 over a checkpoint's weight files (names and bytes), so a name such as ``"emu-tiny"``, which
    points at whatever build is installed, can be told apart from the checkpoint a run dir was unpacked from."""
    import hashlib

    from emu_agent.model.loading import checkpoint_dir

    root = checkpoint_dir(checkpoint)
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.safetensors")):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _marker(stage_dir: Path) -> dict[str, Any]:
    """What :func:`unpack_checkpoint` recorded in ``stage_dir`` (``{}`` if it was not unpacked)."""
    marker = Path(stage_dir) / _UNPACKED
    return json.loads(marker.read_text()) if marker.is_file() else {}


def unpacked_fingerprint(stage_dir: Path) -> str | None:
    """The :func:`checkpoint_fingerprint` recorded when ``stage_dir`` was unpacked (None if not unpacked, or
    unpacked before fingerprints were recorded)."""
    return _marker(stage_dir).get("sha256")


def unpacked_from(stage_dir: Path) -> str | None:
    """The checkpoint ``stage_dir`` was restored from by :func:`unpack_checkpoint`, or ``None`` if it was not."""
    checkpoint = _marker(stage_dir).get("checkpoint")
    return None if checkpoint is None else str(checkpoint)


def is_unpacked(stage_dir: Path) -> bool:
    """Whether ``stage_dir`` was restored by :func:`unpack_checkpoint` (weights only: not resumable)."""
    return unpacked_from(stage_dir) is not None
