"""Multimodal conversation memory (installed as ``emu_agent.memory``)."""
