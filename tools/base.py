"""The tool interface: :class:`Tool`, the :func:`tool` decorator, :class:`ToolOutput` and :class:`ToolContext`.

A tool has a name, a one-line description and a pydantic input model; the agent advertises it to the model as a
:class:`~emu_agent.tools.spec.ToolSpec`, validates the model's arguments against the input model and runs it::

    @tool
    def count_shapes(image: str, colour: str = "red", context: ToolContext | None = None) -> str:
        '''Count the shapes of one colour in an image.'''
        picture = context.resolve_image(image).load()
        ...

    class Blur(Tool):
        name = "blur_image"
        description = "Blur an image."
        input_model = BlurInput

        def run(self, arguments: BlurInput, context: ToolContext) -> ToolOutput:
            ...

A tool returns a :class:`ToolOutput` (text and/or images), or a ``str``, a PIL image (stored in the media store),
an :class:`~emu_agent.media.ImageRef`, or a list of those; :func:`to_tool_output` normalises all of them.
Tools refer to images and videos by the handles the agent shows the model (``image_1``, ``video_1``), which
:meth:`ToolContext.resolve_image` / :meth:`ToolContext.resolve_video` turn back into references.

Errors: a tool signals failure by raising (preferably :class:`~emu_agent.errors.ToolError` with a message the
model can act on). The agent turns the failure into an observation (``ToolResultPart(is_error=True)``) unless
it was configured to raise.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import tempfile
import threading
from abc import ABC
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from emu_agent.errors import InputError, ToolError
from emu_agent.media import ImageRef, MediaStore, VideoRef
from emu_agent.tools.spec import ToolSpec

if TYPE_CHECKING:
    from emu_agent.agent.prompt import MediaHandles

__all__ = ["Tool", "ToolContext", "ToolOutput", "to_tool_output", "tool"]

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,63}$")
ProgressCallback = Callable[[float, str], None]


class ToolOutput(BaseModel):
    """What a tool returns. The agent shows ``text`` and ``images`` (as images) to the model; ``data`` is kept
    in the event and the step record for the caller but is not shown to the model."""

    model_config = ConfigDict(extra="forbid")

    text: str = ""
    images: list[ImageRef] = Field(default_factory=list)
    data: dict[str, Any] = Field(default_factory=dict)


class ToolContext:
    """What a running tool may use: the model, the media store, the conversation's media handles, a progress
    callback and a cancellation flag.

    Args:
        model: the agent's model (an ``EmuModel``), or None.
        media_store: where tools read and store images and videos (a temporary store if None).
        handles: the conversation's media handles (a fresh, empty set if None).
        on_progress: called as ``on_progress(fraction, message)`` by :meth:`report_progress`.
        cancelled: set when the run is cancelled or the tool timed out; long tools should poll it.
        tool_name: the name of the tool this context is for (used in error messages).
    """

    def __init__(
        self,
        *,
        model: Any | None = None,
        media_store: MediaStore | None = None,
        handles: MediaHandles | None = None,
        on_progress: ProgressCallback | None = None,
        cancelled: threading.Event | None = None,
        tool_name: str = "",
    ) -> None:
        if handles is None:
            from emu_agent.agent.prompt import MediaHandles

            handles = MediaHandles()
        self.model = model
        self.media_store = media_store if media_store is not None else MediaStore(tempfile.mkdtemp(prefix="emu-"))
        self.handles = handles
        self.cancelled = cancelled if cancelled is not None else threading.Event()
        self.tool_name = tool_name
        self._on_progress = on_progress

    def resolve_image(self, handle: str) -> ImageRef:
        """The image a handle (``image_1``) names, bound to the media store.

        Raises:
            ToolError: the handle is unknown or names a video; the message lists the known image handles.
        """
        return self._resolve(handle, "image", ImageRef)

    def resolve_video(self, handle: str) -> VideoRef:
        """The video a handle (``video_1``) names, bound to the media store.

        Raises:
            ToolError: the handle is unknown or names an image; the message lists the known video handles.
        """
        return self._resolve(handle, "video", VideoRef)

    def _resolve(self, handle: str, kind: str, ref_type: type) -> Any:
        ref = self.handles.resolve(str(handle))
        if not isinstance(ref, ref_type):
            known = ", ".join(self.handles.names(kind)) or "none"
            raise ToolError(f"unknown {kind} {handle!r}; the {kind}s in this conversation are: {known}")
        return ref if ref.store is not None else ref.bind(self.media_store)

    def report_progress(self, fraction: float, message: str = "") -> None:
        """Report progress (``fraction`` in [0, 1]); the agent emits it as a ``tool_progress`` event."""
        if self._on_progress is not None:
            self._on_progress(min(max(float(fraction), 0.0), 1.0), message)

    def raise_if_cancelled(self) -> None:
        """Raise :class:`ToolError` if the run was cancelled or the tool timed out."""
        if self.cancelled.is_set():
            raise ToolError(f"tool {self.tool_name or 'call'} was cancelled")


class Tool(ABC):
    """Base class of tools. Subclasses set ``name``, ``description`` and ``input_model`` and override
    :meth:`run` (sync) or :meth:`arun` (async).

    ``timeout`` (seconds, None for none) is enforced by the agent; on timeout the context's ``cancelled`` event
    is set and the call becomes an error observation.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    input_model: ClassVar[type[BaseModel]]
    timeout: float | None = 120.0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("name")
        if isinstance(name, str) and not _NAME_RE.match(name):
            raise InputError(f"tool name {name!r} must be letters, digits, '_' or '-', starting with a letter")

    @property
    def spec(self) -> ToolSpec:
        """What the model is told about this tool."""
        return ToolSpec.from_input_model(self.name, self.description, self.input_model)

    @property
    def is_async(self) -> bool:
        """Whether the tool implements :meth:`arun` itself (and not :meth:`run`)."""
        cls = type(self)
        return cls.arun is not Tool.arun and cls.run is Tool.run

    def validate_arguments(self, raw: Any) -> BaseModel:
        """Validate the model's raw arguments against :attr:`input_model`.

        Raises:
            ToolError: not an object, a missing/unknown argument or a bad value; the message names each one.
        """
        if isinstance(raw, BaseModel) and isinstance(raw, self.input_model):
            return raw
        if not isinstance(raw, dict):
            raise ToolError(f"arguments of {self.name} must be a JSON object, got {type(raw).__name__}")
        try:
            return self.input_model.model_validate(raw)
        except ValidationError as exc:
            raise ToolError(f"invalid arguments for {self.name}: {describe_validation_error(exc)}") from exc

    def run(self, arguments: BaseModel, context: ToolContext) -> Any:
        """Run the tool synchronously. Sync tools override this."""
        if self.is_async:
            return _run_coroutine(self.arun(arguments, context))
        raise NotImplementedError(f"tool {self.name} implements neither run() nor arun()")

    async def arun(self, arguments: BaseModel, context: ToolContext) -> Any:
        """Run the tool asynchronously. Async tools override this; the default runs :meth:`run` in a thread."""
        return await asyncio.to_thread(self.run, arguments, context)

    def __call__(
        self, arguments: dict[str, Any] | None = None, /, *, context: ToolContext | None = None, **kwargs: Any
    ) -> ToolOutput:
        """Validate and run outside an agent: ``tool(prompt="a red circle")`` -> :class:`ToolOutput`."""
        context = context or ToolContext(tool_name=self.name)
        parsed = self.validate_arguments({**(arguments or {}), **kwargs})
        return to_tool_output(self.run(parsed, context), context.media_store)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


def describe_validation_error(exc: ValidationError) -> str:
    """A pydantic error as one line naming each offending argument and value."""
    reasons = []
    for err in exc.errors():
        where = ".".join(str(x) for x in err.get("loc", ())) or "arguments"
        message = str(err.get("msg", "invalid"))
        if err.get("type") == "missing":
            reasons.append(f"{where!r} is required")
        elif err.get("type") == "extra_forbidden":
            reasons.append(f"{where!r} is not an argument")
        else:
            reasons.append(f"{where!r}={err.get('input')!r:.60}: {message}")
    return "; ".join(reasons)


def to_tool_output(value: Any, media_store: MediaStore | None = None) -> ToolOutput:
    """Normalise what a tool returned: ToolOutput, str, ImageRef, PIL image (stored in ``media_store``), None or a
    list/tuple of those.

    Raises:
        ToolError: an unsupported value (e.g. a number or a dict), naming its type.
    """
    if isinstance(value, ToolOutput):
        return value
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    texts: list[str] = []
    images: list[ImageRef] = []
    for item in items:
        if item is None:
            continue
        if isinstance(item, ToolOutput):
            texts.append(item.text) if item.text else None
            images.extend(item.images)
        elif isinstance(item, str):
            texts.append(item)
        elif isinstance(item, ImageRef):
            images.append(item)
        elif _is_pil_image(item):
            if media_store is None:
                raise ToolError("a tool returned a PIL image but no media store is available to keep it")
            images.append(media_store.add_image(item))
        else:
            raise ToolError(
                f"a tool returned {type(item).__name__}; return str, ToolOutput, an ImageRef, a PIL image "
                "or a list of those"
            )
    return ToolOutput(text="\n".join(texts), images=images)


def _is_pil_image(obj: Any) -> bool:
    return type(obj).__module__.startswith("PIL.") and hasattr(obj, "getpixel")


def _run_coroutine(coro: Any) -> Any:
    """Run a coroutine to completion from sync code, in a fresh thread if an event loop is already running."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


# ------------------------------------------------------------------ the @tool decorator


class FunctionTool(Tool):
    """A tool made from a function by :func:`tool`."""

    name: ClassVar[str] = "function"
    description: ClassVar[str] = ""
    input_model: ClassVar[type[BaseModel]] = BaseModel

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str,
        description: str,
        input_model: type[BaseModel],
        timeout: float | None,
        context_param: str | None,
    ) -> None:
        if not _NAME_RE.match(name):
            raise InputError(f"tool name {name!r} must be letters, digits, '_' or '-', starting with a letter")
        self.fn = fn
        # instance attributes shadow the ClassVars, so each decorated function is its own tool
        self.name = name  # type: ignore[misc]
        self.description = description  # type: ignore[misc]
        self.input_model = input_model  # type: ignore[misc]
        self.timeout = timeout
        self._context_param = context_param
        self._async = inspect.iscoroutinefunction(fn)
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    @property
    def is_async(self) -> bool:
        return self._async

    def _kwargs(self, arguments: BaseModel, context: ToolContext) -> dict[str, Any]:
        kwargs = {key: getattr(arguments, key) for key in type(arguments).model_fields}
        if self._context_param:
            kwargs[self._context_param] = context
        return kwargs

    def run(self, arguments: BaseModel, context: ToolContext) -> Any:
        if self._async:
            return _run_coroutine(self.fn(**self._kwargs(arguments, context)))
        return self.fn(**self._kwargs(arguments, context))

    async def arun(self, arguments: BaseModel, context: ToolContext) -> Any:
        if self._async:
            return await self.fn(**self._kwargs(arguments, context))
        return await asyncio.to_thread(self.fn, **self._kwargs(arguments, context))


def _is_context_param(param: inspect.Parameter, hints: dict[str, Any]) -> bool:
    hint = hints.get(param.name, param.annotation)
    if hint is param.empty or hint is Any:
        return param.name == "context"
    if isinstance(hint, str):
        return "ToolContext" in hint
    return hint is ToolContext or ToolContext in getattr(hint, "__args__", ())


def _description_of(fn: Callable[..., Any]) -> str:
    doc = inspect.getdoc(fn) or ""
    first = doc.split("\n\n", 1)[0].strip()
    return " ".join(first.split())


def _arg_docs(fn: Callable[..., Any]) -> dict[str, str]:
    """Per-argument descriptions from a Google-style ``Args:`` section."""
    doc = inspect.getdoc(fn) or ""
    match = re.search(r"^Args:\s*\n((?:[ \t]+.*\n?)+)", doc, re.MULTILINE)
    if not match:
        return {}
    found: dict[str, str] = {}
    for line in match.group(1).splitlines():
        item = re.match(r"^\s+(\w+)(?:\s*\([^)]*\))?:\s*(.*)$", line)
        if item:
            found[item.group(1)] = item.group(2).strip()
    return found


def _input_model_from_signature(fn: Callable[..., Any], name: str) -> tuple[type[BaseModel], str | None]:
    import typing

    signature = inspect.signature(fn)
    try:
        hints = typing.get_type_hints(fn)
    except Exception:
        hints = {}
    docs = _arg_docs(fn)
    fields: dict[str, Any] = {}
    context_param = None
    for param in signature.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise InputError(f"@tool {name}: *args/**kwargs can't be described to the model; name each argument")
        if _is_context_param(param, hints):
            context_param = param.name
            continue
        annotation = hints.get(param.name, Any if param.annotation is param.empty else param.annotation)
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (annotation, Field(default, description=docs.get(param.name)))
    camel = "".join(part.capitalize() for part in re.split(r"[_\-]", name)) + "Input"
    model = create_model(camel, __config__=ConfigDict(extra="forbid"), **fields)
    return model, context_param


def tool(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = 120.0,
    input_model: type[BaseModel] | None = None,
) -> Any:
    """Make a :class:`Tool` from a function (sync or async), usable bare (``@tool``) or with options.

    The input model comes from the signature (or ``input_model``; the function then receives its fields as
    keyword arguments), the description from the docstring's first paragraph (argument descriptions from an
    ``Args:`` section), and a parameter named ``context`` or annotated :class:`ToolContext` receives the context.
    The function may return str, :class:`ToolOutput`, an ImageRef, a PIL image or a list of those.
    """

    def make(func: Callable[..., Any]) -> FunctionTool:
        tool_name = name or func.__name__
        text = description if description is not None else _description_of(func)
        if not text:
            raise InputError(f"@tool {tool_name}: give a description (a docstring or description=...)")
        if input_model is not None:
            model, context_param = input_model, None
            for param in inspect.signature(func).parameters.values():
                if _is_context_param(param, {}):
                    context_param = param.name
        else:
            model, context_param = _input_model_from_signature(func, tool_name)
        return FunctionTool(
            func, name=tool_name, description=text, input_model=model, timeout=timeout, context_param=context_param
        )

    return make(fn) if fn is not None else make
