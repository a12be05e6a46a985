"""The agent: a tool-using loop over interleaved text, image and video conversations."""
