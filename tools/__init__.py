"""Built-in tools (installed as ``emu_agent.tools``)."""
