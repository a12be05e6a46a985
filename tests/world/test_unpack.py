"""Training goes on from a shipped checkpoint: ``unpack_checkpoint`` is the inverse of ``assemble``."""

from __future__ import annotations

import json
import shutil

import pytest
from safetensors.torch import load_file

from emu_agent.cli import main
from emu_agent.errors import InputError
from emu_agent.model.loading import builtin_model_dir
from emu_agent.world.train import TrainConfig, assemble, train_lm
from emu_agent.world.unpack import is_unpacked, unpack_checkpoint

TINY = builtin_model_dir("emu-tiny")
pytestmark = pytest.mark.skipif(not TINY.is_dir(), reason="emu-tiny is not shipped in this build")


def _tensors(folder) -> dict:
    return load_file(str(folder / "model.safetensors"))


def test_unpack_then_a_zero_lr_phase_reassembles_the_shipped_checkpoint(tmp_path) -> None:
    run = tmp_path / "run"
    info = unpack_checkpoint("emu-tiny", run)
    assert is_unpacked(run / "encoder") and is_unpacked(run / "decoder")
    shipped = json.loads((TINY / "training.json").read_text())
    assert info["lm_phases"] == len(shipped["lm_phases"])

    # one LM step at lr 0 (AdamW's decay scales with lr too): the LM must come back bit-identical
    phase = TrainConfig(run_dir=run, lm_init=info["lm_init"], lm_steps=1, lm_batch=2, lm_lr=0.0, progress=False)
    train_lm(phase)
    out = assemble(run, tmp_path / "model")
    original, rebuilt = _tensors(TINY), _tensors(out)
    assert original.keys() == rebuilt.keys()
    changed = [k for k in original if not original[k].equal(rebuilt[k])]
    assert not changed, changed[:5]
    unet = "decoder/unet/diffusion_pytorch_model.safetensors"
    assert load_file(str(TINY / unet)).keys() == load_file(str(out / unet)).keys()
    assert all(v.equal(load_file(str(out / unet))[k]) for k, v in load_file(str(TINY / unet)).items())

    training = json.loads((out / "training.json").read_text())
    assert training["lm_phases"][:-1] == shipped["lm_phases"]  # the lineage goes on
    assert training["lm_phases"][-1]["run_dir"] == str(run) and training["lm_phases"][-1]["lr"] == 0.0
    assert training["steps"]["encoder"] == shipped["steps"]["encoder"]
    for stage in ("encoder", "decoder"):  # their phases come back as shipped (one entry for a v4-era checkpoint)
        expected = shipped.get(f"{stage}_phases") or [{"run_dir": "emu-tiny", "steps": shipped["steps"][stage]}]
        assert training[f"{stage}_phases"] == expected


def test_unpack_never_overwrites_a_trained_run(tmp_path) -> None:
    run = tmp_path / "run"
    (run / "lm").mkdir(parents=True)
    (run / "lm" / "weights.safetensors").write_bytes(b"trained")
    with pytest.raises(InputError, match="already holds trained stages"):
        unpack_checkpoint("emu-tiny", run)
    assert (run / "lm" / "weights.safetensors").read_bytes() == b"trained"


def test_train_tiny_from_checkpoint_on_the_command_line(tmp_path, capsys) -> None:
    run, model = tmp_path / "run", tmp_path / "model"
    argv = [
        "train-tiny", "--run-dir", str(run), "--from-checkpoint", "emu-tiny", "--out", str(model),
        "--lm-steps", "2", "--lm-batch", "2", "--threads", "1", "--json",
    ]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert set(summary) == {"lm", "checkpoint"} and summary["lm"]["steps"] == 2  # encoder and decoder are final
    training = json.loads((model / "training.json").read_text())
    assert training["lm_phases"][-1]["steps"] == 2
    assert len(training["lm_phases"]) == len(json.loads((TINY / "training.json").read_text())["lm_phases"]) + 1

    # the unpacked encoder has no optimizer state: asking to train it is refused by name, nothing is touched
    before = (run / "encoder" / "weights.safetensors").read_bytes()
    assert main([*argv[:5], "--stage", "encoder", "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["error"] == "InputError" and "--stage encoder" in out["message"]
    assert (run / "encoder" / "weights.safetensors").read_bytes() == before

    # going on in the same run dir from another checkpoint is refused: the run would mix two models
    argv_other = [*argv[:4], str(tmp_path / "other-checkpoint"), "--lm-steps", "1", "--json"]
    assert main(argv_other) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["error"] == "InputError" and "other-checkpoint" in out["message"] and "emu-tiny" in out["message"]


def test_a_run_dir_unpacked_from_other_weights_under_the_same_name_is_refused(tmp_path, capsys) -> None:
    """A run dir unpacked from a folder whose weights have changed since (as an installed "emu-tiny" changes
    between builds) must not quietly go on from the old weights."""
    from safetensors.torch import save_file

    from emu_agent.world.unpack import checkpoint_fingerprint, unpacked_fingerprint

    checkpoint, run = tmp_path / "ckpt", tmp_path / "run"
    shutil.copytree(TINY, checkpoint)
    unpack_checkpoint(str(checkpoint), run)
    assert unpacked_fingerprint(run / "encoder") == checkpoint_fingerprint(checkpoint)
    weights = _tensors(checkpoint)
    name = sorted(weights)[0]
    weights[name] = weights[name] + 1.0
    save_file(weights, str(checkpoint / "model.safetensors"))  # a new build under the same path
    argv = ["train-tiny", "--run-dir", str(run), "--from-checkpoint", str(checkpoint), "--lm-steps", "1", "--json"]
    assert main(argv) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["error"] == "InputError" and "now has" in out["message"] and str(checkpoint) in out["message"]
    assert not (run / "lm").exists()  # nothing was trained from the stale weights


def test_an_unpacked_stage_cannot_be_resumed(tmp_path) -> None:
    from emu_agent.world.train import train_decoder

    run = tmp_path / "run"
    unpack_checkpoint("emu-tiny", run)
    with pytest.raises(InputError, match="without optimizer state"):
        train_decoder(TrainConfig(run_dir=run, decoder_steps=10_000, progress=False))


def test_an_lm_phase_takes_the_tokenizer_its_init_lm_was_trained_with(tmp_path) -> None:
    from emu_agent.model.tokenizer import EmuTokenizer
    from emu_agent.world.tiny import TOOL_TOKENS

    shipped = EmuTokenizer.from_pretrained(TINY)
    run = tmp_path / "run"
    lm_init = unpack_checkpoint("emu-tiny", run)["lm_init"]
    text = "[USER]: what colour is the red circle? [ASSISTANT]: red"

    # a run dir holding only a new encoder (as an encoder phase leaves it) and no tokenizer: the LM phase must not
    # train a fresh tokenizer (whose vocabulary would not match the LM's embeddings) but take lm_init's
    fresh = tmp_path / "fresh"
    shutil.copytree(run / "encoder", fresh / "encoder")
    train_lm(TrainConfig(run_dir=fresh, lm_init=lm_init, lm_steps=1, lm_batch=2, lm_lr=0.0, progress=False))
    inherited = EmuTokenizer.from_pretrained(fresh / "tokenizer")
    assert len(inherited) == len(shipped) and inherited.encode(text) == shipped.encode(text)

    # a tokenizer that disagrees with the LM's vocabulary is refused by name, before anything is trained
    other = tmp_path / "other"
    shutil.copytree(run / "encoder", other / "encoder")
    small = EmuTokenizer.train(["a red circle"] * 4, vocab_size=300, instruct=True, extra_special_tokens=TOOL_TOKENS)
    small.save_pretrained(other / "tokenizer")
    with pytest.raises(InputError, match=f"vocabulary of {len(shipped)} tokens.*has {len(small)}"):
        train_lm(TrainConfig(run_dir=other, lm_init=lm_init, lm_steps=1, lm_batch=2, progress=False))
    assert not (other / "lm").exists()
