"""Checkpoint loading and saving for :class:`~emu_agent.model.emu.EmuModel`.

Layouts recognised, all from local files (no network, no ``trust_remote_code``, no unpickling):

=========================  =========================================================================
our own                    ``config.json`` (``"format": "emu-agent"``), ``model.safetensors`` (or shards
                           + ``model.safetensors.index.json``), tokenizer files, optional ``decoder/``
BAAI native                one file, ``visual.*``, ``decoder.lm.*``, ``project_{up,down}.weight``
                           (``.safetensors``, or ``.pth``/``.bin`` via ``torch.load(weights_only=True)``)
BAAI native Emu2-Gen       one file, the native keys under ``multimodal_encoder.``, plus ``unet.``,
                           ``vae.``, ``safety_checker.``
HF release                 ``config.json`` with ``vision_config``, keys ``model.visual.*``,
                           ``model.decoder.lm.*``, ``project_*``; sharded with an index
Emu2-Gen diffusers folder  ``multimodal_encoder/`` (HF release), ``unet/``, ``vae/``, ``scheduler/``
=========================  =========================================================================

Stale ``rotary_emb.inv_freq`` buffers are dropped (RoPE is recomputed from theta). The safety checker is not
part of this SDK's pipeline; its ``safety_checker.*`` keys are skipped and counted in ``model.load_report``.
Everything else must match exactly: missing, unexpected or mis-shaped keys raise ``ModelLoadError`` naming them.
Parameters are created on the meta device and the loaded tensors are assigned in place, so there is no second
full copy in RAM (when the file dtype equals the requested dtype, tensors stay memory-mapped).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from emu_agent.errors import ConfigError, DeviceError, ModelLoadError
from emu_agent.model.config import EmuConfig
from emu_agent.model.state_keys import key_mismatches, name_list

if TYPE_CHECKING:
    from emu_agent.model.emu import EmuModel
    from emu_agent.model.tokenizer import EmuTokenizer

__all__ = ["LoadReport", "load_model", "resolve_device", "resolve_dtype", "save_model"]

_INV_FREQ = re.compile(r"(^|\.)rotary_emb\.inv_freq$")
_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
           "float16": torch.float16, "fp16": torch.float16}  # fmt: skip
BUILTIN_MODELS = {"emu-tiny"}
SHARD_BYTES = 4 * 1024**3


@dataclass
class LoadReport:
    """What the loader did besides the 1:1 key mapping."""

    layout: str
    source: str
    dropped_inv_freq: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # prefix -> count (e.g. safety_checker)


# ------------------------------------------------------------------------------------------------ device/dtype
def resolve_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise DeviceError(f"unknown device {device!r}") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device {device!r} was requested but no CUDA GPU is available")
    return resolved


def resolve_dtype(dtype: str | torch.dtype, device: torch.device, file_dtype: torch.dtype | None) -> torch.dtype:
    """``"auto"``: the checkpoint's dtype on a GPU, float32 on a CPU. Checks the device can run it."""
    if isinstance(dtype, str):
        if dtype == "auto":
            resolved = (file_dtype or torch.float32) if device.type == "cuda" else torch.float32
        elif dtype in _DTYPES:
            resolved = _DTYPES[dtype]
        else:
            raise DeviceError(f"unsupported dtype {dtype!r}; use one of auto, {', '.join(_DTYPES)}")
    elif dtype in (torch.float32, torch.bfloat16, torch.float16):
        resolved = dtype
    else:
        raise DeviceError(f"unsupported dtype {dtype!r}; use float32, bfloat16 or float16")
    _probe_dtype(resolved, device)
    return resolved


def _probe_dtype(dtype: torch.dtype, device: torch.device) -> None:
    """Run the kinds of kernels the model needs (linear, conv, softmax, layer norm) in ``dtype``."""
    if device.type == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise DeviceError(f"dtype bfloat16 is not supported on {device} (GPU without bf16)")
    try:
        x = torch.ones(1, 3, 4, 4, device=device, dtype=dtype)
        conv = torch.nn.functional.conv2d(x, torch.ones(2, 3, 2, 2, device=device, dtype=dtype))
        y = torch.nn.functional.linear(conv.flatten(1), torch.ones(2, conv[0].numel(), device=device, dtype=dtype))
        torch.nn.functional.layer_norm(y.softmax(-1), (2,))
    except (RuntimeError, NotImplementedError) as exc:
        raise DeviceError(f"dtype {dtype} can't run on {device}: {exc}") from exc


# ------------------------------------------------------------------------------------------------ reading
def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own SafetensorError and OSError
        raise ModelLoadError(f"can't read safetensors file {path}: {exc}") from exc


def _read_pth(path: Path) -> dict[str, torch.Tensor]:
    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # weights_only refuses anything that needs unpickling code
        raise ModelLoadError(f"can't read {path} as a plain tensor checkpoint (weights_only=True): {exc}") from exc
    if isinstance(data, Mapping) and "state_dict" in data and isinstance(data["state_dict"], Mapping):
        data = data["state_dict"]
    if not isinstance(data, Mapping) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ModelLoadError(f"{path} does not hold a flat dict of tensors")
    return dict(data)


def _read_weights_file(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    if path.suffix in (".pth", ".bin", ".pt"):
        return _read_pth(path)
    raise ModelLoadError(f"unknown checkpoint file type {path.name!r}; expected .safetensors, .pth or .bin")


def _read_sharded(folder: Path, index_name: str) -> dict[str, torch.Tensor]:
    index_path = folder / index_name
    try:
        weight_map = json.loads(index_path.read_text())["weight_map"]
    except (OSError, KeyError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"can't read shard index {index_path}: {exc}") from exc
    state: dict[str, torch.Tensor] = {}
    for shard in sorted(set(weight_map.values())):
        shard_path = folder / shard
        if not shard_path.is_file():
            raise ModelLoadError(f"shard {shard!r} listed in {index_path} is missing")
        state.update(_read_weights_file(shard_path))
    missing = sorted(set(weight_map) - set(state))
    if missing:
        raise ModelLoadError(f"keys listed in {index_path} are absent from the shards: {name_list(missing)}")
    return state


def _read_folder_weights(folder: Path, stem: str) -> dict[str, torch.Tensor]:
    index_name = f"{stem}.safetensors.index.json"
    if (folder / index_name).is_file():
        return _read_sharded(folder, index_name)
    single = folder / f"{stem}.safetensors"
    if single.is_file():
        return _read_safetensors(single)
    raise ModelLoadError(f"no {stem}.safetensors (or sharded index) in {folder}")


# ------------------------------------------------------------------------------------------------ key maps
def _map_native(state: Mapping[str, torch.Tensor], report: LoadReport, prefix: str = "") -> dict[str, torch.Tensor]:
    """BAAI native keys (optionally under ``prefix``) -> our keys; ``decoder.lm.`` becomes ``lm.``."""
    mapped: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        if not key.startswith(prefix):
            continue
        key = key[len(prefix) :]
        if _INV_FREQ.search(key):
            report.dropped_inv_freq += 1
            continue
        if key.startswith("decoder.lm."):
            key = "lm." + key[len("decoder.lm.") :]
        mapped[key] = tensor
    return mapped


def _map_hf(state: Mapping[str, torch.Tensor], report: LoadReport) -> dict[str, torch.Tensor]:
    """HF-release keys: ``model.visual.*``, ``model.decoder.lm.*``, ``project_*`` -> our keys."""
    renamed = {}
    for key, tensor in state.items():
        if key.startswith(("model.visual.", "model.decoder.")):
            key = key[len("model.") :]
        renamed[key] = tensor
    return _map_native(renamed, report)


def _split_gen(state: Mapping[str, torch.Tensor], report: LoadReport) -> tuple[dict, dict]:
    """Native Emu2-Gen file -> (encoder keys, decoder keys ``unet.*``/``vae.*``)."""
    encoder = _map_native(state, report, prefix="multimodal_encoder.")
    decoder = {k: v for k, v in state.items() if k.startswith(("unet.", "vae."))}
    skipped = [k for k in state if k.startswith("safety_checker.")]
    if skipped:
        report.skipped["safety_checker"] = len(skipped)
    other = [k for k in state if not k.startswith(("multimodal_encoder.", "unet.", "vae.", "safety_checker."))]
    if other:
        raise ModelLoadError(f"unexpected keys in the Emu2-Gen file: {name_list(sorted(other))}")
    return encoder, decoder


# ------------------------------------------------------------------------------------------------ configs
def _infer_native_config(state: Mapping[str, torch.Tensor], source: Path) -> EmuConfig:
    """Match tensor shapes against the presets; other dims need ``config=``."""
    from emu_agent.model.config import PRESETS

    embed = state.get("lm.model.embed_tokens.weight")
    width = state.get("visual.cls_token")
    if embed is None or width is None:
        raise ModelLoadError(f"{source} does not look like an Emu2 checkpoint (no embed_tokens / cls_token)")
    for name in ("emu2", "emu2-chat"):
        preset = PRESETS[name]()
        if (
            tuple(embed.shape) == (preset.text.vocab_size, preset.text.hidden_size)
            and width.shape[-1] == preset.vision.width
        ):
            return preset
    raise ModelLoadError(
        f"the dims in {source} (embed {tuple(embed.shape)}, vision width {width.shape[-1]}) match no preset; "
        "pass config=EmuConfig(...) or EmuConfig.from_baai(...)"
    )


def _decoder_config_from_folder(folder: Path) -> dict[str, Any]:
    def read(name: str, file: str) -> dict[str, Any] | None:
        path = folder / name / file
        return json.loads(path.read_text()) if path.is_file() else None

    return {
        "unet": read("unet", "config.json"),
        "scheduler": read("scheduler", "scheduler_config.json"),
        "vae": read("vae", "config.json"),
    }


# ------------------------------------------------------------------------------------------------ layouts
@dataclass
class _Resolved:
    state: dict[str, torch.Tensor]
    config: EmuConfig | None
    report: LoadReport
    tokenizer_dir: Path | None = None
    decoder_folder: Path | None = None
    decoder_state: dict[str, torch.Tensor] | None = None


def builtin_model_dir(name: str) -> Path:
    return Path(__file__).resolve().parent.parent / "weights" / name


def checkpoint_dir(path_or_name: str | os.PathLike[str]) -> Path:
    """The folder a checkpoint spec names: a built-in model's (``"emu-tiny"``) or the given path."""
    name = str(path_or_name)
    return builtin_model_dir(name) if name in BUILTIN_MODELS else Path(path_or_name).expanduser()


def _resolve(path: Path) -> _Resolved:
    if path.is_file():
        state = _read_weights_file(path)
        if any(k.startswith("multimodal_encoder.") for k in state):
            report = LoadReport("baai-native-gen", str(path))
            encoder, decoder = _split_gen(state, report)
            return _Resolved(encoder, None, report, path.parent, decoder_state=decoder)
        report = LoadReport("baai-native", str(path))
        return _Resolved(_map_native(state, report), None, report, path.parent)
    if not path.is_dir():
        raise ModelLoadError(f"checkpoint path {str(path)!r} does not exist")
    config_path = path / "config.json"
    config_data = json.loads(config_path.read_text()) if config_path.is_file() else {}
    if config_data.get("format") == "emu-agent":
        report = LoadReport("emu-agent", str(path))
        state = _read_folder_weights(path, "model")
        decoder = path / "decoder" if (path / "decoder" / "unet").is_dir() else None
        return _Resolved(dict(state), EmuConfig.from_dict(config_data), report, path, decoder)
    if (path / "multimodal_encoder").is_dir():
        inner = _resolve(path / "multimodal_encoder")
        inner.report.layout = "emu2-gen-diffusers"
        inner.report.source = str(path)
        if (path / "safety_checker").is_dir():
            inner.report.skipped["safety_checker"] = 1
        inner.decoder_folder = path
        inner.tokenizer_dir = path / "tokenizer" if (path / "tokenizer").is_dir() else inner.tokenizer_dir
        return inner
    if "vision_config" in config_data:
        report = LoadReport("hf-release", str(path))
        state = _read_folder_weights(path, "model")
        return _Resolved(_map_hf(state, report), EmuConfig.from_hf_config(config_data), report, path)
    natives = sorted(p for p in path.iterdir() if p.suffix in (".safetensors", ".pth", ".bin"))
    if len(natives) == 1:
        return _resolve(natives[0])
    raise ModelLoadError(
        f"no checkpoint found in {path}: expected config.json + model.safetensors, a BAAI native file, "
        "an HF-release folder or an Emu2-Gen folder"
    )


def _check_keys(model: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    expected = {k: v for k, v in model.state_dict().items() if not k.startswith("decoder.")}
    problems = key_mismatches(expected, state)
    if problems:
        raise ModelLoadError(f"checkpoint {source} does not fit the model config; " + "; ".join(problems))


def _load_tokenizer(spec: Any, resolved: _Resolved, config: EmuConfig) -> EmuTokenizer:
    from emu_agent.model.tokenizer import EmuTokenizer

    if isinstance(spec, EmuTokenizer):
        return spec
    folder = Path(spec) if spec is not None else resolved.tokenizer_dir
    has_files = folder is not None and any((folder / f).is_file() for f in ("tokenizer.model", "tokenizer.json"))
    if not has_files:
        raise ModelLoadError(
            f"no tokenizer (tokenizer.model or tokenizer.json) next to {resolved.report.source}; "
            "pass tokenizer=<folder>"
        )
    tokenizer = EmuTokenizer.from_pretrained(folder, instruct=config.instruct)
    if len(tokenizer) != config.text.vocab_size:
        raise ModelLoadError(
            f"tokenizer in {folder} has {len(tokenizer)} tokens but the model's vocabulary is {config.text.vocab_size}"
        )
    return tokenizer


def load_model(
    cls: type[EmuModel],
    path_or_name: str | os.PathLike[str],
    *,
    config: EmuConfig | None,
    dtype: str | torch.dtype,
    device: str | torch.device,
    device_map: str | dict[str, Any] | None,
    tokenizer: Any,
    lazy_decoder: bool = True,
) -> EmuModel:
    """Implementation of :meth:`EmuModel.from_pretrained`."""
    from accelerate import init_empty_weights

    name = str(path_or_name)
    if name in BUILTIN_MODELS:
        path = builtin_model_dir(name)
        if not path.is_dir():
            raise ModelLoadError(f"the built-in model {name!r} is not installed at {path}")
    elif name in ("emu2", "emu2-chat", "emu2-gen") and not Path(name).exists():
        raise ModelLoadError(
            f"{name!r} is a preset, not a local checkpoint: download BAAI's weights and pass their folder "
            "(this SDK never downloads at run time)"
        )
    else:
        path = Path(path_or_name).expanduser()
    resolved = _resolve(path)
    config = config or resolved.config or _infer_native_config(resolved.state, path)
    target_device = resolve_device(device if device_map is None else "cpu")
    file_dtype = next(iter(resolved.state.values())).dtype if resolved.state else None
    target_dtype = resolve_dtype(dtype, target_device, file_dtype)
    tok = _load_tokenizer(tokenizer, resolved, config)

    with init_empty_weights(include_buffers=False):
        model = cls(config, tokenizer=tok)
    _check_keys(model, resolved.state, resolved.report.source)
    state = {k: v.to(target_dtype) for k, v in resolved.state.items()}
    model.load_state_dict(state, strict=False, assign=True)
    del state, resolved.state
    decoder_loader = _decoder_loader(resolved, config, target_dtype)
    if decoder_loader is not None:
        if lazy_decoder and device_map is None:
            model.defer_decoder(decoder_loader)
        else:
            model.decoder = decoder_loader()
    model.load_report = resolved.report
    model.to(target_device)
    if device_map is not None:
        model = _dispatch(model, device_map, target_dtype)
    return model.eval()


def _decoder_loader(resolved: _Resolved, config: EmuConfig, dtype: torch.dtype) -> Callable[[], Any] | None:
    """What builds the checkpoint's decoder (``None``: it has none). ``config.decoder`` is filled in now, from
    JSON only; the loader imports diffusers and reads the weights when called."""
    if resolved.decoder_folder is None and not resolved.decoder_state:
        return None  # no decoder: don't import diffusers at all
    from emu_agent.model.config import DecoderConfig

    folder, state = resolved.decoder_folder, resolved.decoder_state
    if folder is not None:
        if config.decoder is None:
            found = _decoder_config_from_folder(folder)
            config.decoder = DecoderConfig(unet=found["unet"], scheduler=found["scheduler"], vae=found["vae"])

        def load_folder() -> Any:
            from emu_agent.model.decoder import EmuDecoder

            return EmuDecoder.from_pretrained(folder, dtype=dtype)

        return load_folder
    decoder_config = config.decoder or EmuConfig.preset("emu2-gen").decoder
    if decoder_config is None:  # pragma: no cover - the preset always has one
        raise ConfigError("no decoder config for the Emu2-Gen file")
    config.decoder = decoder_config
    resolved.decoder_state = None  # the loader holds the tensors until it runs

    def load_state() -> Any:
        from emu_agent.model.decoder import EmuDecoder

        return EmuDecoder.from_state_dict(
            state or {},
            unet_config=decoder_config.unet,
            scheduler_config=decoder_config.scheduler,
            vae_config=decoder_config.vae,
            dtype=dtype,
        )

    return load_state


def _dispatch(model: EmuModel, device_map: str | dict[str, Any], dtype: torch.dtype) -> EmuModel:
    """Spread the model over the available devices with accelerate (no-split: EVA blocks, LLaMA layers)."""
    from accelerate import dispatch_model, infer_auto_device_map

    if device_map == "auto":
        device_map = infer_auto_device_map(
            model, no_split_module_classes=["EvaBlock", "LlamaDecoderLayer"], dtype=dtype
        )
    if not isinstance(device_map, dict):
        raise DeviceError(f"device_map must be 'auto' or a dict; got {device_map!r}")
    return dispatch_model(model, device_map=device_map)


# ------------------------------------------------------------------------------------------------ saving
def _shards(state: dict[str, torch.Tensor]) -> Iterator[tuple[str, dict[str, torch.Tensor]]]:
    from huggingface_hub import split_torch_state_dict_into_shards

    split = split_torch_state_dict_into_shards(
        state, filename_pattern="model{suffix}.safetensors", max_shard_size=SHARD_BYTES
    )
    for filename, keys in split.filename_to_tensors.items():
        yield filename, {k: state[k] for k in keys}
    if split.is_sharded:
        yield "model.safetensors.index.json", {"weight_map": split.tensor_to_filename}  # type: ignore[misc]


def save_model(model: EmuModel, directory: str | os.PathLike[str]) -> None:
    """Implementation of :meth:`EmuModel.save_pretrained`."""
    from safetensors.torch import save_file

    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items() if not k.startswith("decoder.")}
    for filename, part in _shards(state):
        if filename.endswith(".json"):
            (folder / filename).write_text(json.dumps({"metadata": {}, **part}, indent=2))
        else:
            save_file(part, str(folder / filename), metadata={"format": "pt"})
    model.config.to_json_file(folder / "config.json")
    if model.tokenizer is not None:
        model.tokenizer.save_pretrained(folder)
    if model.decoder is not None:
        model.decoder.save_pretrained(folder / "decoder")
