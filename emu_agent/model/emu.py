"""``EmuModel``: one Emu2-architecture model that encodes images, writes text, regresses visual embeddings and
(with a decoder) paints them into pixels.

Parts, named as BAAI's checkpoint keys map onto them (see :mod:`emu_agent.model.loading`):
- ``visual``: the EVA encoder (:mod:`emu_agent.model.visual`), pooled to ``n_query`` tokens per image;
- ``project_up`` (width -> hidden) writes visual tokens into the LLaMA input sequence;
- ``lm``: transformers' ``LlamaForCausalLM``;
- ``project_down`` (hidden -> width) regresses the next visual embedding from the final-norm hidden state;
- ``decoder`` (optional): the diffusion decoder (:mod:`emu_agent.model.decoder`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from emu_agent.errors import ConfigError, ContextLengthError, InputError, PromptError
from emu_agent.model.config import EmuConfig
from emu_agent.model.generation import (
    GenerationOptions,
    LogitsProcessor,
    beam_search,
    parse_generation_options,
    sample_tokens,
)
from emu_agent.model.prompting import SYSTEM_MESSAGE, PromptPlan, VideoFrames, plan_chat, plan_interleaved
from emu_agent.model.visual import EvaVisionTransformer, pool_visual_tokens, preprocess_images

if TYPE_CHECKING:
    from PIL import Image

    from emu_agent.model.decoder import EmuDecoder
    from emu_agent.model.tokenizer import EmuTokenizer

__all__ = ["EmuModel"]

Prompt = Any  # str | Sequence[str | image | video] | Sequence[Message]
ENCODE_BATCH = 16  # images per visual-encoder forward
_DECODER_LOCK = threading.Lock()  # one thread builds a deferred decoder


def _is_chat(prompt: Any) -> bool:
    if isinstance(prompt, str) or not isinstance(prompt, Sequence) or not prompt:
        return False
    first = prompt[0]
    if isinstance(first, list):  # BAAI's chat form: a list of rounds, user first, alternating
        return True
    return type(first).__name__ == "Message" or (
        isinstance(first, tuple) and len(first) == 2 and isinstance(first[0], str)
    )


class EmuModel(nn.Module):
    """An Emu2-architecture model. Build it with :meth:`from_pretrained` or :meth:`from_config`."""

    def __init__(
        self, config: EmuConfig, tokenizer: EmuTokenizer | None = None, decoder: EmuDecoder | None = None
    ) -> None:
        super().__init__()
        from transformers import LlamaForCausalLM

        self.config = config
        self.tokenizer = tokenizer
        self.visual = EvaVisionTransformer(config.vision)
        self.lm = LlamaForCausalLM(config.text.to_llama_config())
        self.project_up = nn.Linear(config.vision.width, config.text.hidden_size, bias=False)
        self.project_down = nn.Linear(config.text.hidden_size, config.vision.width, bias=False)
        self.__dict__["_decoder_loader"] = None  # builds a checkpoint's decoder on first use (see `decoder`)
        self._modules["decoder"] = decoder
        # Emu2-Chat's default system text; emu-tiny is trained without one.
        self.system_message: str | None = None if config.variant == "emu-tiny" else SYSTEM_MESSAGE
        self.video_loader: Any = load_video_frames  # VideoRef -> VideoFrames
        self._negative_cache: dict[tuple[str, str, torch.dtype], torch.Tensor] = {}

    # ------------------------------------------------------------------------------------------ construction
    @classmethod
    def from_pretrained(
        cls,
        path_or_name: str | os.PathLike[str],
        *,
        config: EmuConfig | None = None,
        dtype: str | torch.dtype = "auto",
        device: str | torch.device = "auto",
        device_map: str | dict[str, Any] | None = None,
        tokenizer: str | os.PathLike[str] | EmuTokenizer | None = None,
        lazy_decoder: bool = True,
    ) -> EmuModel:
        """Load a checkpoint from a local folder or file, in any supported layout (no network, no pickles).

        Layouts: our own (:meth:`save_pretrained`), BAAI's native single file (``.safetensors``, or ``.pth``
        read with ``weights_only=True``), the HF release (``model.`` prefix, sharded with an index), and the
        Emu2-Gen diffusers folder (``multimodal_encoder/``, ``unet/``, ``vae/``, ``scheduler/``). ``config``
        overrides or supplies the dims; ``tokenizer`` points at a tokenizer folder when the checkpoint has none.
        ``lazy_decoder`` (default) builds the image decoder on first use of :attr:`decoder` (diffusers is not
        imported before); ``False`` builds it now, as a ``device_map`` load always does.
        """
        from emu_agent.model.loading import load_model

        return load_model(
            cls,
            path_or_name,
            config=config,
            dtype=dtype,
            device=device,
            device_map=device_map,
            tokenizer=tokenizer,
            lazy_decoder=lazy_decoder,
        )

    @classmethod
    def from_config(
        cls,
        config: EmuConfig | str,
        *,
        tokenizer: EmuTokenizer | None = None,
        decoder: EmuDecoder | None = None,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
        seed: int | None = None,
    ) -> EmuModel:
        """A randomly initialised model (for tests, benchmarks and training from scratch)."""
        if isinstance(config, str):
            config = EmuConfig.preset(config)
        if seed is not None:
            torch.manual_seed(seed)
        model = cls(config, tokenizer=tokenizer, decoder=decoder)
        return model.to(device=device, dtype=dtype).eval()

    def save_pretrained(self, directory: str | os.PathLike[str]) -> None:
        """Write config.json, model.safetensors, the tokenizer and ``decoder/`` (diffusers folders)."""
        from emu_agent.model.loading import save_model

        save_model(self, directory)

    # ------------------------------------------------------------------------------------------ decoder
    @property
    def decoder(self) -> EmuDecoder | None:
        """The diffusion decoder, or ``None`` for a model without one.

        :meth:`from_pretrained` defers a checkpoint's decoder (``lazy_decoder=True``): diffusers is imported and
        the UNet (and VAE) built on first access, on the model's current device and dtype, so a model that only
        reads and writes text never pays for them.
        """
        loader = self.__dict__["_decoder_loader"]
        if loader is not None:
            with _DECODER_LOCK:
                loader = self.__dict__["_decoder_loader"]
                if loader is not None:  # not built by another thread meanwhile
                    built = loader().to(device=self.device, dtype=self.dtype)
                    built.train(self.training)
                    self._modules["decoder"] = built
                    self.__dict__["_decoder_loader"] = None
        return self._modules["decoder"]  # type: ignore[return-value]

    @decoder.setter
    def decoder(self, value: EmuDecoder | None) -> None:
        if value is not None and not isinstance(value, nn.Module):
            raise TypeError(f"decoder must be an EmuDecoder or None; got {type(value).__name__}")
        self.__dict__["_decoder_loader"] = None  # an explicit decoder (or None) replaces a deferred one
        self._modules["decoder"] = value

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "decoder":  # the property's setter, not nn.Module's registration
            object.__setattr__(self, name, value)
            return
        super().__setattr__(name, value)

    def defer_decoder(self, loader: Callable[[], EmuDecoder]) -> None:
        """Build the decoder with ``loader`` on first access of :attr:`decoder` (replacing any decoder now)."""
        self._modules["decoder"] = None
        self.__dict__["_decoder_loader"] = loader

    @property
    def decoder_loaded(self) -> bool:
        """Whether the decoder is built (``False`` while deferred, and for a model without one)."""
        return self._modules["decoder"] is not None

    # ------------------------------------------------------------------------------------------ properties
    @property
    def device(self) -> torch.device:
        return self.project_up.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.project_up.weight.dtype

    def _require_tokenizer(self) -> EmuTokenizer:
        if self.tokenizer is None:
            raise ConfigError("this model has no tokenizer; pass tokenizer= to from_pretrained/from_config")
        return self.tokenizer

    # ------------------------------------------------------------------------------------------ vision
    def _to_pil(self, image: Any) -> Image.Image:
        from PIL import Image

        if isinstance(image, Image.Image):
            return image
        if hasattr(image, "load") and callable(image.load):
            return image.load()
        raise InputError(f"can't use {type(image).__name__} as an image; pass a PIL image or an ImageRef")

    def preprocess(self, images: Sequence[Any]) -> torch.Tensor:
        """Images -> normalised pixels (N, 3, S, S) as Emu2 prepares them."""
        return preprocess_images([self._to_pil(x) for x in images], self.config.vision.image_size)

    @torch.no_grad()
    def encode_images(self, images: Sequence[Any] | torch.Tensor, *, n_query: int | None = None) -> torch.Tensor:
        """Visual embeddings (N, n_query, width): EVA features with CLS dropped, average-pooled.

        ``images`` are PIL images / image refs, or already-normalised pixels (N, 3, S, S).
        """
        n_query = n_query or self.config.vision.n_query
        if isinstance(images, torch.Tensor):
            pixels = images
        else:
            if not images:
                return torch.zeros(0, n_query, self.config.vision.width, device=self.device, dtype=self.dtype)
            pixels = self.preprocess(images)
        chunks = []
        for start in range(0, pixels.shape[0], ENCODE_BATCH):
            batch = pixels[start : start + ENCODE_BATCH].to(self.device, self.dtype)  # (b, 3, S, S)
            chunks.append(pool_visual_tokens(self.visual(batch), n_query))  # (b, n_query, width)
        return torch.cat(chunks)

    # ------------------------------------------------------------------------------------------ prompts
    def plan(self, prompt: Prompt, *, chat: bool | None = None) -> PromptPlan:
        """Expand a prompt into text with image/video slots (chat template for message lists)."""
        vision = self.config.vision
        if chat if chat is not None else _is_chat(prompt):
            from emu_agent.model.message_rendering import messages_to_turns

            return plan_chat(
                messages_to_turns(prompt),
                n_query=vision.n_query,
                v_query=vision.v_query,
                system_message=self.system_message,
                video_loader=self.video_loader,
            )
        if not isinstance(prompt, str | Sequence):
            raise PromptError(f"a prompt must be a str, an interleaved list or messages; got {type(prompt).__name__}")
        return plan_interleaved(prompt, n_query=vision.n_query, v_query=vision.v_query, video_loader=self.video_loader)

    def _regression_plan(self, prompt: Prompt) -> PromptPlan:
        """Emu2-Gen's prompt for regression: the plain interleaved prompt followed by ``[IMG]``."""
        plan = self.plan(prompt, chat=False)
        plan.text += "[IMG]"
        return plan

    def _fill_slots(self, embeds: torch.Tensor, ids: torch.Tensor, token_id: int, media: list[Any], nq: int) -> None:
        slots = ids == token_id  # (B, L)
        count = int(slots.sum())
        if count != len(media) * nq:
            kind = "<image>" if token_id == self._require_tokenizer().image_token_id else "[gIMG]"
            raise PromptError(
                f"the prompt has {count} {kind} slots but {len(media)} image(s) were given "
                f"({len(media)} x {nq} = {len(media) * nq} slots expected)"
            )
        if not media:
            return
        feats = self.project_up(self.encode_images(media, n_query=nq))  # (N, nq, H)
        embeds[slots] = feats.reshape(-1, feats.shape[-1]).to(embeds.dtype)

    def embed_plans(self, plans: Sequence[PromptPlan]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Tokenise (left-padded), embed, and write visual tokens into their slots.

        Returns ``inputs_embeds`` (B, L, H), ``attention_mask`` (B, L) and ``input_ids`` (B, L).
        """
        tokenizer = self._require_tokenizer()
        ids_list, mask_list = tokenizer.batch_encode([p.text for p in plans])
        ids = torch.tensor(ids_list, dtype=torch.long, device=self.device)  # (B, L)
        mask = torch.tensor(mask_list, dtype=torch.long, device=self.device)  # (B, L)
        limit = self.config.text.max_position_embeddings
        if ids.shape[1] > limit:
            raise ContextLengthError(f"the prompt is {ids.shape[1]} tokens; the context window is {limit}")
        embeds = self.lm.get_input_embeddings()(ids)  # (B, L, H)
        images = [x for p in plans for x in p.images]
        frames = [x for p in plans for x in p.frames]
        vision = self.config.vision
        self._fill_slots(embeds, ids, tokenizer.image_token_id, images, vision.n_query)
        self._fill_slots(embeds, ids, tokenizer.frame_token_id, frames, vision.v_query)
        return embeds, mask, ids

    # ------------------------------------------------------------------------------------------ text
    def _prefill(self, embeds: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, Any, torch.Tensor]:
        from transformers import DynamicCache

        positions = _position_ids(mask)  # (B, L)
        cache = DynamicCache()
        out = self.lm(
            inputs_embeds=embeds,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        return out.logits[:, -1, :], cache, positions[:, -1]

    def _decode_ids(
        self, plans: Sequence[PromptPlan], options: GenerationOptions, logits_processor: LogitsProcessor | None = None
    ) -> Iterator[torch.Tensor] | tuple[torch.Tensor, torch.Tensor]:
        tokenizer = self._require_tokenizer()
        if logits_processor is not None and options.num_beams > 1:
            raise InputError("a logits_processor needs greedy or sampled decoding, not beam search")
        embeds, mask, _ = self.embed_plans(plans)
        room = self.config.text.max_position_embeddings - embeds.shape[1]
        if room <= 0:
            raise ContextLengthError(
                f"the prompt is {embeds.shape[1]} tokens, leaving no room in the "
                f"{self.config.text.max_position_embeddings}-token context window"
            )
        options = options.model_copy(update={"max_new_tokens": min(options.max_new_tokens, room)})
        beams = options.num_beams
        if beams > 1:
            embeds = embeds.repeat_interleave(beams, dim=0)  # (B*K, L, H)
            mask = mask.repeat_interleave(beams, dim=0)
        logits, cache, last_pos = self._prefill(embeds, mask)
        state = {"mask": mask, "pos": last_pos}

        def step(tokens: torch.Tensor, origin: torch.Tensor | None) -> torch.Tensor:
            if origin is not None:
                cache.reorder_cache(origin)
                state["mask"] = state["mask"].index_select(0, origin)
                state["pos"] = state["pos"].index_select(0, origin)
            state["mask"] = torch.cat([state["mask"], state["mask"].new_ones(tokens.shape[0], 1)], dim=1)
            state["pos"] = state["pos"] + 1
            out = self.lm(
                input_ids=tokens[:, None],
                attention_mask=state["mask"],
                position_ids=state["pos"][:, None],
                past_key_values=cache,
                use_cache=True,
            )
            return out.logits[:, -1, :]

        if beams > 1:
            return beam_search(
                logits,
                step,
                num_beams=beams,
                max_new_tokens=options.max_new_tokens,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
                bos_token_id=tokenizer.bos_token_id,
                length_penalty=options.length_penalty,
                min_new_tokens=options.min_new_tokens,
            )
        generator = None
        if options.seed is not None:
            generator = torch.Generator(device=self.device).manual_seed(options.seed)
        return sample_tokens(
            logits,
            step,
            options,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            generator=generator,
            logits_processor=logits_processor,
        )

    def _plans_for_text(self, prompts: Sequence[Prompt]) -> list[PromptPlan]:
        plans = [self.plan(p) for p in prompts]
        for index, plan in enumerate(plans):
            if not plan.text.strip() and not plan.images and not plan.frames:
                raise PromptError(f"prompt {index} is empty; text generation needs some text or media")
        return plans

    @torch.no_grad()
    def generate_token_ids(
        self, prompts: Sequence[Prompt], *, return_scores: bool = False, **generation_kwargs: Any
    ) -> Any:
        """Token ids (B, 1 + T) for a batch of prompts, BOS first, as BAAI's reference returns them.

        Rows are right-padded with the pad id after EOS. With beam search and ``return_scores=True`` the
        result is ``(ids, sequence_scores)`` with the length-penalised score of each returned hypothesis.
        """
        processor = generation_kwargs.pop("logits_processor", None)
        options = parse_generation_options(generation_kwargs)
        result = self._decode_ids(self._plans_for_text(prompts), options, processor)
        if isinstance(result, tuple):
            return result if return_scores else result[0]
        if return_scores:
            raise InputError("return_scores=True needs beam search (num_beams > 1)")
        steps = list(result)
        bos = torch.full((len(prompts), 1), self._require_tokenizer().bos_token_id, dtype=torch.long)
        return torch.cat([bos, torch.stack(steps, dim=1).cpu()], dim=1)

    def _finish_text(self, ids: Sequence[int], options: GenerationOptions) -> str:
        tokenizer = self._require_tokenizer()
        ids = list(ids)
        if tokenizer.eos_token_id in ids:
            ids = ids[: ids.index(tokenizer.eos_token_id)]
        ids = [i for i in ids if i != tokenizer.pad_token_id]
        text = tokenizer.decode(ids, skip_special_tokens=options.skip_special_tokens)
        return _cut_at_stop(text, options.stop)[0]

    def generate_texts(self, prompts: Sequence[Prompt], **generation_kwargs: Any) -> list[str]:
        """Generate for several prompts at once (left-padded batch). See :meth:`generate_text`."""
        options = parse_generation_options({k: v for k, v in generation_kwargs.items() if k != "logits_processor"})
        ids = self.generate_token_ids(prompts, **generation_kwargs)
        return [self._finish_text(row[1:].tolist(), options) for row in ids]

    def generate_text(self, prompt: Prompt, **generation_kwargs: Any) -> str:
        """Answer a prompt. Options: ``max_new_tokens``, ``do_sample``, ``temperature``, ``top_p``,
        ``top_k``, ``num_beams``, ``length_penalty``, ``stop`` (strings), ``seed``, ``min_new_tokens``;
        ``logits_processor=fn(generated_ids, logits) -> logits`` constrains decoding (e.g. to a grammar)."""
        return self.generate_texts([prompt], **generation_kwargs)[0]

    @torch.no_grad()
    def stream_text(self, prompt: Prompt, **generation_kwargs: Any) -> Iterator[str]:
        """Yield the answer in pieces as it is generated (greedy or sampling; not beam search).

        ``logits_processor=fn(generated_ids, logits) -> logits`` constrains decoding (e.g. to a grammar).
        """
        processor = generation_kwargs.pop("logits_processor", None)
        options = parse_generation_options(generation_kwargs)
        if options.num_beams > 1:
            raise InputError(f"stream_text can't use beam search (num_beams={options.num_beams})")
        tokenizer = self._require_tokenizer()
        ids: list[int] = []
        emitted = ""
        for tokens in self._decode_ids(self._plans_for_text([prompt]), options, processor):  # type: ignore[union-attr]
            token = int(tokens[0])
            if token == tokenizer.eos_token_id:
                break
            ids.append(token)
            text = tokenizer.decode(ids, skip_special_tokens=options.skip_special_tokens)
            text, stopped = _cut_at_stop(text, options.stop)
            # hold back incomplete multi-byte pieces; emit only once the text extends what was sent
            ready = stopped or not text.endswith("\ufffd")
            if ready and len(text) > len(emitted) and text.startswith(emitted):
                yield text[len(emitted) :]
                emitted = text
            if stopped:
                break

    # ------------------------------------------------------------------------------------------ regression
    @torch.no_grad()
    def regress_visual_embeddings(
        self, prompt: Prompt, *, n_query: int | None = None, use_cache: bool = True
    ) -> torch.Tensor:
        """Regress the visual embeddings of the image that follows ``prompt``: (1, n_query, width).

        Emu2-Gen's loop (``[IMG]`` then one ``<image>`` slot per step, each fed ``project_up`` of the previous
        regression), run incrementally with a KV cache: one prefill plus ``n_query - 1`` one-token steps.
        ``use_cache=False`` reruns the whole sequence for every embedding, as BAAI's reference does (slow; kept
        as the baseline that the cached path is measured and checked against).
        """
        if not use_cache:
            return self._regress_without_cache(prompt, n_query or self.config.vision.n_query)
        return self.batch_regress_visual_embeddings([prompt], n_query=n_query)

    @torch.no_grad()
    def _regress_without_cache(self, prompt: Prompt, n_query: int) -> torch.Tensor:
        vision = self.config.vision
        plan = self._regression_plan(prompt)
        prefix, mask, _ = self.embed_plans([plan])  # (1, L, H)
        regressed = prefix.new_zeros(1, 0, vision.width)  # (1, k, width)
        for k in range(n_query):
            embeds = torch.cat([prefix, self.project_up(regressed)], dim=1)  # (1, L + k, H): k generated slots
            full_mask = torch.cat([mask, mask.new_ones(1, k)], dim=1)
            hidden = self.lm.model(inputs_embeds=embeds, attention_mask=full_mask).last_hidden_state
            regressed = self.project_down(hidden[:, -(k + 1) :, :])  # (1, k + 1, width)
        return regressed

    @torch.no_grad()
    def batch_regress_visual_embeddings(self, prompts: Sequence[Prompt], *, n_query: int | None = None) -> torch.Tensor:
        """:meth:`regress_visual_embeddings` for a left-padded batch: (B, n_query, width)."""
        from transformers import DynamicCache

        n_query = n_query or self.config.vision.n_query
        embeds, mask, _ = self.embed_plans([self._regression_plan(p) for p in prompts])  # (B, L, H)
        positions = _position_ids(mask)
        cache = DynamicCache()
        outputs = []
        inputs, step_positions = embeds, positions
        for _ in range(n_query):
            hidden = self.lm.model(
                inputs_embeds=inputs,
                attention_mask=mask,
                position_ids=step_positions,
                past_key_values=cache,
                use_cache=True,
            ).last_hidden_state[:, -1:, :]  # (B, 1, H), after the final RMSNorm
            regressed = self.project_down(hidden)  # (B, 1, width)
            outputs.append(regressed)
            inputs = self.project_up(regressed)  # (B, 1, H): the next <image> slot
            mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
            step_positions = step_positions[:, -1:] + 1
        return torch.cat(outputs, dim=1)  # (B, n_query, width)

    # ------------------------------------------------------------------------------------------ images
    def _negative_embeddings(self, negative_prompt: Prompt | None) -> torch.Tensor:
        if negative_prompt is None or isinstance(negative_prompt, str):
            key = (negative_prompt or "", str(self.device), self.dtype)
            cached = self._negative_cache.get(key)
            if cached is None:
                cached = self.regress_visual_embeddings(negative_prompt or "")
                self._negative_cache[key] = cached
            return cached
        return self.regress_visual_embeddings(negative_prompt)

    @torch.no_grad()
    def generation_conditioning(
        self, prompt: Prompt, *, negative_prompt: Prompt | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The decoder's conditioning as Emu2-Gen builds it: (cond, negative), each (1, n_query, width).

        One image and no text is autoencoding: the image is encoded directly and the negative is the encoding
        of an all-zero image in normalised space. Otherwise both are regressed by the LM; the default negative
        is the regression of the empty prompt.
        """
        items = [prompt] if isinstance(prompt, str) else list(prompt)
        texts = [x for x in items if isinstance(x, str) and x]
        media = [x for x in items if not isinstance(x, str)]
        if len(media) == 1 and not texts and not isinstance(media[0], VideoFrames):
            cond = self.encode_images(media)
            size = self.config.vision.image_size
            zeros = torch.zeros(1, 3, size, size, device=self.device, dtype=self.dtype)
            return cond, self.encode_images(zeros)
        if not texts and not media:
            raise PromptError("image generation needs a prompt; got an empty one")
        return self.regress_visual_embeddings(items), self._negative_embeddings(negative_prompt)

    def generate_image(
        self,
        prompt: Prompt,
        *,
        negative_prompt: Prompt | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        height: int | None = None,
        width: int | None = None,
        seed: int | None = None,
        callback: Any = None,
    ) -> Image.Image:
        """Text (and images) -> image, as Emu2-Gen does it. Images in the prompt give editing and
        subject-driven generation; a single image alone is autoencoded."""
        if self.decoder is None:
            raise ConfigError("this model has no image decoder; load an Emu2-Gen checkpoint or emu-tiny")
        defaults = self.config.decoder
        cond, negative = self.generation_conditioning(prompt, negative_prompt=negative_prompt)
        generator = None
        if seed is not None:
            generator = torch.Generator(device=self.decoder.device).manual_seed(seed)
        images = self.decoder.decode(
            cond.to(self.decoder.dtype),
            negative.to(self.decoder.dtype),
            height=height or (defaults.default_height if defaults else 1024),
            width=width or (defaults.default_width if defaults else 1024),
            num_inference_steps=num_inference_steps or (defaults.default_num_inference_steps if defaults else 50),
            guidance_scale=guidance_scale
            if guidance_scale is not None
            else (defaults.default_guidance_scale if defaults else 3.0),
            generator=generator,
            callback=callback,
        )
        return images[0]


DEFAULT_VIDEO_FRAMES = 8  # BAAI's demo samples 8 frames at segment mid-points


def load_video_frames(ref: Any, max_frames: int = DEFAULT_VIDEO_FRAMES) -> VideoFrames:
    """Default ``video_loader``: ``max_frames`` frames of a stored video, spread uniformly, with timestamps."""
    frames = ref.load_frames(max_frames=max_frames)
    return VideoFrames([image for _, image in frames], [t for t, _ in frames])


def _position_ids(mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip left padding, as ``generate`` derives them: (B, L)."""
    return (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)


def _cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)
