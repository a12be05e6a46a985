"""``from_pretrained`` defers the image decoder: diffusers is not imported, nor the UNet built, until first use,
and the deferred decoder paints exactly what an eagerly loaded one does."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from emu_agent.model.emu import EmuModel

PROMPT = "a red circle at top left"


def test_text_only_use_never_imports_diffusers() -> None:
    code = (
        "import sys; from emu_agent.model.emu import EmuModel; m = EmuModel.from_pretrained('emu-tiny'); "
        "print(m.generate_text('describe', max_new_tokens=2)); "
        "print('diffusers' in sys.modules, m.decoder_loaded); d = m.decoder; "
        "print('diffusers' in sys.modules, m.decoder_loaded, type(d).__name__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tempfile.gettempdir()
    )
    lines = out.stdout.strip().splitlines()
    assert lines[-2:] == ["False False", "True True EmuDecoder"], out.stdout + out.stderr


def test_deferred_decoder_paints_what_the_eager_one_does() -> None:
    lazy = EmuModel.from_pretrained("emu-tiny")
    eager = EmuModel.from_pretrained("emu-tiny", lazy_decoder=False)
    assert eager.decoder_loaded and not lazy.decoder_loaded
    assert "decoder.unet.conv_in.weight" not in lazy.state_dict()
    a = np.asarray(lazy.generate_image(PROMPT, seed=3))
    b = np.asarray(eager.generate_image(PROMPT, seed=3))
    assert lazy.decoder_loaded and not lazy.decoder.training
    assert a.shape == (64, 64, 3) and np.array_equal(a, b)
    for key, value in eager.decoder.state_dict().items():
        assert torch.equal(lazy.decoder.state_dict()[key], value), key


def test_deferred_decoder_follows_the_model_dtype_and_mode() -> None:
    model = EmuModel.from_pretrained("emu-tiny").to(torch.float64).train()
    assert model.decoder.dtype == torch.float64 and model.decoder.training


def test_assigning_a_decoder_replaces_the_deferred_one() -> None:
    model = EmuModel.from_pretrained("emu-tiny")
    model.decoder = None
    assert model.decoder is None and not model.decoder_loaded
    with pytest.raises(TypeError, match="decoder must be an EmuDecoder or None; got str"):
        model.decoder = "unet"  # type: ignore[assignment]


def test_save_pretrained_writes_a_deferred_decoder(tmp_path: Path) -> None:
    model = EmuModel.from_pretrained("emu-tiny")
    model.save_pretrained(tmp_path / "copy")
    assert (tmp_path / "copy" / "decoder" / "unet").is_dir()
    again = EmuModel.from_pretrained(tmp_path / "copy")
    for key, value in model.decoder.state_dict().items():
        assert torch.equal(again.decoder.state_dict()[key], value), key
