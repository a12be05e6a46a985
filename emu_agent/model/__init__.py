"""The Emu model: config, visual encoder, tokenizer, prompting, generation, loading and the diffusion decoder."""
