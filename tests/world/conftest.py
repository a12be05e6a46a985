from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def random_model():
    pytest.importorskip("torch")
    from emu_agent.model.random_model import random_emu_model

    return random_emu_model(seed=0)
