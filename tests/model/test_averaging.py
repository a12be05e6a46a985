"""``average_checkpoints`` / ``emu-agent average-checkpoints``: the weighted mean of real saved checkpoints."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from emu_agent.cli import main
from emu_agent.errors import InputError, ModelLoadError
from emu_agent.model.averaging import average_checkpoints
from emu_agent.model.emu import EmuModel
from emu_agent.model.random_model import random_emu_model

UNET = "decoder/unet/diffusion_pytorch_model.safetensors"


def _history(last_lm_run: str) -> dict:
    shared = [{"run_dir": "base", "steps": 100}]
    return {
        "steps": {"encoder": 10, "lm": 7 if last_lm_run == "a" else 9},
        "encoder_phases": [{"run_dir": "enc", "steps": 10}],
        "lm_phases": [*shared, {"run_dir": last_lm_run, "steps": 7 if last_lm_run == "a" else 9}],
    }


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("soup")
    a, b = root / "a", root / "b"
    random_emu_model(seed=0).save_pretrained(a)
    random_emu_model(seed=1).save_pretrained(b)
    (a / "training.json").write_text(json.dumps(_history("a")))
    (b / "training.json").write_text(json.dumps(_history("b")))
    return a, b


def _copy(folder: Path, to: Path) -> Path:
    shutil.copytree(folder, to)
    return to


def _tensors(folder: Path) -> dict[str, torch.Tensor]:
    return {**load_file(folder / "model.safetensors"), **{f"unet.{k}": v for k, v in load_file(folder / UNET).items()}}


def test_the_average_is_the_weighted_mean_of_every_tensor(pair: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = pair
    out = average_checkpoints([a, b], tmp_path / "soup", weights=[3, 1])
    ta, tb, mean = _tensors(a), _tensors(b), _tensors(out)
    assert mean.keys() == ta.keys()
    differing = [key for key in ta if not torch.equal(ta[key], tb[key])]
    assert len(differing) > len(ta) // 2  # the two random models really differ (the decoder too)
    assert any(key.startswith("unet.") for key in differing)
    for key, value in mean.items():
        assert value.dtype == ta[key].dtype, key
        torch.testing.assert_close(value, 0.75 * ta[key] + 0.25 * tb[key], rtol=1e-6, atol=1e-6, msg=key)
    model = EmuModel.from_pretrained(out)  # a checkpoint like any other: it loads and runs
    assert model.generate_text("describe the scene.", max_new_tokens=3) is not None
    assert (out / "tokenizer.json").read_bytes() == (a / "tokenizer.json").read_bytes()


def test_all_weight_on_one_checkpoint_gives_that_model_back(pair: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = pair
    out = average_checkpoints([a, b], tmp_path / "soup", weights=[1, 0])
    for key, value in _tensors(out).items():
        assert torch.equal(value, _tensors(a)[key]), key
    original, averaged = EmuModel.from_pretrained(a), EmuModel.from_pretrained(out)
    prompt = "draw a green triangle at center."
    assert averaged.generate_text(prompt, max_new_tokens=6) == original.generate_text(prompt, max_new_tokens=6)


def test_tensors_shared_by_every_checkpoint_stay_bit_exact(pair: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = pair
    frozen = _copy(b, tmp_path / "frozen")
    state_a, state_b = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    shared = [key for key in state_a if key.startswith("visual.")]  # as if both runs froze the encoder
    save_file({**state_b, **{key: state_a[key] for key in shared}}, str(frozen / "model.safetensors"))
    out = average_checkpoints([a, frozen], tmp_path / "soup", weights=[1, 2])
    mean = load_file(out / "model.safetensors")
    assert shared and all(torch.equal(mean[key], state_a[key]) for key in shared)
    lm = next(key for key in state_a if key.startswith("lm.") and not torch.equal(state_a[key], state_b[key]))
    torch.testing.assert_close(mean[lm], (state_a[lm] + 2 * state_b[lm]) / 3)


def test_training_json_keeps_the_shared_history_and_records_the_merge(pair: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = pair
    out = average_checkpoints([a, b], tmp_path / "soup")
    info = json.loads((out / "training.json").read_text())
    assert info["encoder_phases"] == [{"run_dir": "enc", "steps": 10}]  # the same in both: kept as is
    assert info["lm_phases"][0] == {"run_dir": "base", "steps": 100}  # shared, then the merge
    merge = info["lm_phases"][1]["average_of"]
    assert [m["weight"] for m in merge] == [0.5, 0.5]
    assert [m["phases"] for m in merge] == [[{"run_dir": "a", "steps": 7}], [{"run_dir": "b", "steps": 9}]]
    assert info["steps"] == {"encoder": 10}  # the LM's step counts differ, so no single count is claimed
    assert info["averaged"]["checkpoints"] == [str(a.resolve()), str(b.resolve())]


def test_checkpoints_of_different_architectures_are_refused(pair: tuple[Path, Path], tmp_path: Path) -> None:
    a, _ = pair
    other = tmp_path / "other"
    model = random_emu_model(seed=0)
    model.config.text.num_hidden_layers = 3  # the saved config differs
    model.save_pretrained(other)
    with pytest.raises(ModelLoadError, match=r"'config\.json' differs"):
        average_checkpoints([a, other], tmp_path / "soup")
    assert not (tmp_path / "soup").exists()


def test_a_mis_shaped_tensor_is_named_and_nothing_is_left_behind(pair: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = pair
    broken = _copy(b, tmp_path / "broken")
    state = load_file(b / "model.safetensors")
    key = next(k for k in sorted(state) if k.endswith("proj.weight"))
    state[key] = torch.zeros(3, 3)
    save_file(state, str(broken / "model.safetensors"))
    with pytest.raises(ModelLoadError, match=key.replace(".", r"\.") + r".*shape \(3, 3\)"):
        average_checkpoints([a, broken], tmp_path / "out" / "soup")
    assert list((tmp_path / "out").iterdir()) == []  # no soup, no half-written staging folder


@pytest.mark.parametrize(
    ("weights", "match"),
    [
        ([1.0], "one weight per checkpoint"),
        ([1.0, -0.5], "bad: -0.5"),
        ([0.0, 0.0], "at least one weight"),
        ([float("nan"), 1.0], "bad: nan"),
    ],
)
def test_bad_weights_are_refused(pair: tuple[Path, Path], tmp_path: Path, weights: list[float], match: str) -> None:
    with pytest.raises(InputError, match=match):
        average_checkpoints(list(pair), tmp_path / "soup", weights=weights)


def test_existing_folders_and_the_sources_are_never_overwritten(pair: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = pair
    keep = tmp_path / "notes"
    keep.mkdir()
    (keep / "mine.txt").write_text("keep me")
    with pytest.raises(InputError, match="already exists"):
        average_checkpoints([a, b], keep)
    with pytest.raises(InputError, match="something other than a checkpoint"):
        average_checkpoints([a, b], keep, overwrite=True)
    assert (keep / "mine.txt").read_text() == "keep me"
    before = (a / "model.safetensors").read_bytes()
    with pytest.raises(InputError, match="one of the checkpoints"):
        average_checkpoints([a, b], a, overwrite=True)
    assert (a / "model.safetensors").read_bytes() == before
    soup = average_checkpoints([a, b], tmp_path / "soup")
    again = average_checkpoints([a, b], soup, weights=[1, 0], overwrite=True)  # an earlier soup may be replaced
    assert _tensors(again).keys() == _tensors(a).keys()
    assert all(torch.equal(value, _tensors(a)[key]) for key, value in _tensors(again).items())


def test_a_single_checkpoint_or_a_non_checkpoint_is_refused(pair: tuple[Path, Path], tmp_path: Path) -> None:
    a, _ = pair
    with pytest.raises(InputError, match="at least two"):
        average_checkpoints([a], tmp_path / "soup")
    with pytest.raises(ModelLoadError, match="not a checkpoint folder"):
        average_checkpoints([a, tmp_path / "missing"], tmp_path / "soup")


def test_cli_json(pair: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = pair
    command = ["average-checkpoints", str(a), str(b), "--out", str(tmp_path / "s"), "--json"]
    assert main([*command, "--weights", "1", "3"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["weights"] == [0.25, 0.75] and summary["out"] == str(tmp_path / "s")
    assert main(command) == 1  # --out exists now
    error = json.loads(capsys.readouterr().out)
    assert error["error"] == "InputError" and "already exists" in error["message"]


def test_training_can_go_on_from_an_average_with_its_lineage(pair: tuple[Path, Path], tmp_path: Path) -> None:
    from emu_agent.world.unpack import unpack_checkpoint

    soup = average_checkpoints(list(pair), tmp_path / "soup")
    unpacked = unpack_checkpoint(soup, tmp_path / "run")
    lineage = json.loads((Path(unpacked["lm_init"]) / "lm" / "lineage.json").read_text())
    assert lineage == json.loads((soup / "training.json").read_text())["lm_phases"]
    assert "average_of" in lineage[-1]


def test_progress_counts_every_tensor(
    pair: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = pair
    average_checkpoints([a, b], tmp_path / "soup", progress=True)
    total = len(_tensors(a))
    assert f"{total}/{total}" in capsys.readouterr().err
