"""One agent run as a generator of events: model step -> tool calls -> results -> ... -> final.

The loop (``_Run.events``):

1. recall memory (if any) and collect the provenance of the conversation's text (:mod:`emu_agent.agent.safety`);
2. render the model's view (:func:`~emu_agent.agent.prompt.conversation_for_model`) and stream a reply, under a
   grammar when the model supports it; an unreadable reply from an unconstrained model is retried (bounded) with
   the problem shown to the model;
3. no calls: the reply is the answer. Calls: each is validated, checked by the safety rule, run in a worker thread
   under its timeout (progress streamed), and its result (text and images) appended as a ``tool`` message;
4. repeat up to ``max_steps`` model calls.

Every failure becomes an :class:`~emu_agent.agent.events.ErrorEvent` and, for tool calls, an error observation in
the conversation, so the conversation stays consistent (every call has a result) and usable after any error.
"""

from __future__ import annotations

import inspect
import queue
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from emu_agent.agent.events import (
    AgentResult,
    ErrorEvent,
    FinalEvent,
    Step,
    TokenEvent,
    ToolCallEvent,
    ToolProgressEvent,
    ToolResultEvent,
    Usage,
)
from emu_agent.agent.prompt import conversation_for_model
from emu_agent.agent.safety import Provenance, flag_reason
from emu_agent.agent.tool_calling import ParsedReply, ToolCallConstraint, parse_reply, retry_message, validate_call
from emu_agent.errors import StepLimitError, ToolError
from emu_agent.messages import ImagePart, Message, TextPart, ToolCallPart, ToolResultPart
from emu_agent.tools.base import ToolContext, to_tool_output

if TYPE_CHECKING:
    from emu_agent.agent.agent import Agent, Conversation

__all__ = ["run_events"]

_DONE = object()


def _error_result(call: ToolCallPart, message: str) -> ToolResultPart:
    return ToolResultPart(tool_call_id=call.id, name=call.name, content=[message], is_error=True)


class _Run:
    def __init__(self, agent: Agent, conv: Conversation, new_messages: Sequence[Message], cancel: threading.Event):
        self.agent = agent
        self.conv = conv
        self.new_messages = list(new_messages)
        self.cancel = cancel
        self.steps: list[Step] = []
        self.added: list[Message] = []
        self.images: list[Any] = []
        self.recalled: list[Message] = []
        self.text = ""
        self.started = time.perf_counter()

    # ------------------------------------------------------------------ the loop

    def events(self) -> Iterator[Any]:
        self._append(*self.new_messages)
        yield from self._recall()
        self.prov = Provenance.of(
            self.conv.messages,
            system_prompt=self.agent.system_prompt,
            recalled=self.recalled,
            flagged_ids=self.conv.flagged_ids,
        )
        max_steps = self.agent.max_steps
        stop_reason = "final"
        for index in range(1, max_steps + 1):
            if self.cancel.is_set():
                stop_reason = "cancelled"
                break
            step = Step(index=index)
            self.steps.append(step)
            choice = self._choice(index)
            parsed = yield from self._generate(step, choice)
            self.text = parsed.text
            if self.cancel.is_set():
                self._append_reply(parsed, [])
                stop_reason = "cancelled"
                break
            if parsed.errors and not parsed.calls:
                self._append_reply(parsed, [])
                stop_reason = "parse_error"
                break
            calls = [] if choice == "none" else parsed.calls
            if not calls:
                self._append_reply(parsed, [])
                break
            yield from self._run_calls(step, parsed, calls)
            if self.cancel.is_set():
                stop_reason = "cancelled"
                break
        else:
            stop_reason = "step_limit"
        if stop_reason == "cancelled":
            yield ErrorEvent(step=len(self.steps), kind="cancelled", message="the run was cancelled", fatal=True)
        yield from self._remember()
        result = self._result(stop_reason)
        if stop_reason == "step_limit":
            message = (
                f"the agent reached its step limit ({max_steps} model calls) without a final answer; the tool "
                "results so far are in the conversation (raise max_steps, or use on_step_limit='final')"
            )
            yield ErrorEvent(step=len(self.steps), kind="step_limit", message=message, fatal=True)
            error = StepLimitError(message)
            error.result = result  # type: ignore[attr-defined]
            raise error
        yield FinalEvent(step=len(self.steps), result=result)

    def _choice(self, index: int) -> str:
        agent = self.agent
        if not agent.tools:
            return "none"
        if index == agent.max_steps and agent.on_step_limit == "final":
            return "none"
        return agent.tool_choice if index == 1 else ("none" if agent.tool_choice == "none" else "auto")

    # ------------------------------------------------------------------ the model

    def _view(self, extra: Sequence[Message], choice: str) -> list[Message]:
        specs = [] if choice == "none" else self.agent.specs
        return conversation_for_model(
            [*self.recalled, *self.conv.messages, *extra],
            tools=specs,
            system_prompt=self.agent.system_prompt,
            handles=self.conv.handles,
        )

    def _generate(self, step: Step, choice: str) -> Iterator[Any]:
        agent = self.agent
        backend = agent.backend
        extra: list[Message] = []
        while True:
            constraint = None
            if agent.constrained and backend.supports_constraints and (choice != "auto" or agent.tools):
                constraint = ToolCallConstraint(tuple(agent.specs), choice, max_calls=agent.max_calls_per_step)
            view = self._view(extra, choice)
            text = ""
            started = time.perf_counter()
            try:
                for piece in backend.stream_reply(
                    view, constraint=constraint, options=agent.generation, usage=step.usage, cancelled=self.cancel
                ):
                    text += piece
                    yield TokenEvent(step=step.index, text=piece)
            except Exception as exc:
                yield ErrorEvent(step=step.index, kind="model_error", message=f"the model failed: {exc}", fatal=True)
                raise
            finally:
                step.usage.model_time_s += time.perf_counter() - started
                step.usage.model_calls += 1
            step.reply = text
            parsed = parse_reply(text, tool_names=agent.tools, repair=True)
            if self.cancel.is_set():
                return parsed
            problems = list(parsed.errors)
            if choice not in ("auto", "none") and not parsed.calls:
                problems.append("it has no tool call")
            if not problems:
                return parsed
            retry = constraint is None and step.retries < agent.max_retries
            message = "; ".join(problems) + (" (asking the model again)" if retry else "")
            yield ErrorEvent(step=step.index, kind="parse_error", message=message)
            if not retry:
                return parsed
            step.retries += 1
            extra = [Message.assistant(text or "(empty)"), Message.user(retry_message(problems, tool_choice=choice))]

    def _append_reply(self, parsed: ParsedReply, calls: list[ToolCallPart]) -> None:
        parts: list[Any] = [TextPart(text=parsed.text)] if parsed.text else []
        self._append(Message(role="assistant", parts=[*parts, *calls]))

    def _append(self, *messages: Message) -> None:
        self.conv.messages.extend(messages)
        self.added.extend(messages)

    # ------------------------------------------------------------------ tools

    def _run_calls(self, step: Step, parsed: ParsedReply, calls: Sequence[Any]) -> Iterator[Any]:
        prepared = []
        for call in calls:
            try:
                tool, arguments = validate_call(call, self.agent.tools)
                error = None
            except ToolError as exc:
                tool, arguments, error = self.agent.tools.get(call.name), None, exc
            part = ToolCallPart(id=f"call_{uuid.uuid4().hex[:12]}", name=call.name, arguments=call.arguments)
            prepared.append((call, part, tool, arguments, error))
        parts = [p[1] for p in prepared]
        step.tool_calls = parts
        self._append_reply(parsed, parts)
        results: list[ToolResultPart] = []
        self._sink = results
        try:
            for call, part, tool, arguments, error in prepared:
                yield from self._run_one(step, call, part, tool, arguments, error)
        finally:  # every call gets a result, even when a tool error is raised or the run is cancelled
            done = {r.tool_call_id for r in results}
            results += [_error_result(p, "Not run: the run stopped first.") for p in parts if p.id not in done]
            step.tool_results = results
            self._append(Message.tool(*results))

    def _run_one(
        self, step: Step, call: Any, part: ToolCallPart, tool: Any, arguments: Any, error: Exception | None
    ) -> Iterator[Any]:
        agent = self.agent
        reason = flag_reason(part.name, part.arguments, self.prov) if error is None else None
        will_run = error is None and not self.cancel.is_set() and (reason is None or agent.approve(part, reason))
        yield ToolCallEvent(
            step=step.index, call=part, flagged=reason is not None, flag_reason=reason, will_run=will_run,
            repairs=list(call.repairs),
        )  # fmt: skip
        data: dict[str, Any] = {}
        duration = 0.0
        if error is not None:
            kind = "unknown_tool" if tool is None else "invalid_arguments"
            result = _error_result(part, f"Error: {error}")
            self._sink.append(result)
            yield ErrorEvent(step=step.index, kind=kind, message=str(error), tool_call_id=part.id, name=part.name)
            if agent.raise_tool_errors:
                raise error
        elif self.cancel.is_set():
            result = _error_result(part, "Not run: the run was cancelled.")
            self._sink.append(result)
        elif not will_run:
            self.conv.flagged_ids.add(part.id)
            step.flagged.append(part.id)
            message = f"flagged and not run: {reason}"
            result = _error_result(
                part, f"Not run: this call looks requested by content, not by the user ({reason}). Ask the user."
            )
            self._sink.append(result)
            yield ErrorEvent(step=step.index, kind="flagged", message=message, tool_call_id=part.id, name=part.name)
        else:
            result, data, duration, failure = yield from self._execute(step, tool, arguments, part)
            self._sink.append(result)
            step.usage.tool_time_s += duration
            step.usage.tool_calls += 1
            if failure is not None:
                kind, exc = failure
                yield ErrorEvent(step=step.index, kind=kind, message=result.text, tool_call_id=part.id, name=part.name)
                if agent.raise_tool_errors:
                    raise ToolError(result.text.removeprefix("Error: ")) from exc
            else:
                self.prov.trust_call(part.arguments)
                self.images.extend(result.images)
        self.prov.add_result(result)
        yield ToolResultEvent(
            step=step.index, result=result, data=data, duration_s=duration, skipped=error is None and not will_run
        )

    def _execute(self, step: Step, tool: Any, arguments: BaseModel, part: ToolCallPart) -> Iterator[Any]:
        """Run a tool in a worker thread under its timeout, streaming its progress."""
        agent = self.agent
        events: queue.Queue[Any] = queue.Queue()
        stop = threading.Event()
        context = ToolContext(
            model=agent.tool_model,
            media_store=agent.media_store,
            handles=self.conv.handles,
            on_progress=lambda fraction, message: events.put((fraction, message)),
            cancelled=stop,
            tool_name=part.name,
        )
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["value"] = tool.run(arguments, context)
            except BaseException as exc:
                box["error"] = exc
            finally:
                events.put(_DONE)

        started = time.perf_counter()
        threading.Thread(target=target, daemon=True, name=f"emu-tool-{part.name}").start()
        timeout = getattr(tool, "timeout", None)
        deadline = started + timeout if timeout else None
        while True:
            wait = 0.05 if deadline is None else max(0.0, min(0.05, deadline - time.perf_counter()))
            try:
                item = events.get(timeout=wait)
            except queue.Empty:
                if self.cancel.is_set() or (deadline is not None and time.perf_counter() >= deadline):
                    stop.set()
                    break
                continue
            if item is _DONE:
                break
            fraction, message = item
            yield ToolProgressEvent(
                step=step.index, tool_call_id=part.id, name=part.name, fraction=fraction, message=message
            )
        duration = time.perf_counter() - started
        result, data = self._outcome(box, part, timeout)  # before _failure: it may record an output error
        return result, data, duration, self._failure(box, stop)

    def _failure(self, box: dict[str, Any], stop: threading.Event) -> tuple[str, Exception | None] | None:
        if "error" in box:
            return ("tool_error", box["error"])
        if stop.is_set() and "value" not in box:
            return ("cancelled" if self.cancel.is_set() else "tool_timeout", None)
        if "output_error" in box:
            return ("tool_output", box["output_error"])
        return None

    def _outcome(
        self, box: dict[str, Any], part: ToolCallPart, timeout: float | None
    ) -> tuple[ToolResultPart, dict[str, Any]]:
        if "error" in box:
            exc = box["error"]
            detail = str(exc) or type(exc).__name__
            kind = "" if isinstance(exc, ToolError) else f"{type(exc).__name__}: "
            return _error_result(part, f"Error: {part.name} failed: {kind}{detail}"), {}
        if "value" not in box:
            if self.cancel.is_set():
                return _error_result(part, "Error: the run was cancelled while the tool ran."), {}
            return _error_result(part, f"Error: {part.name} timed out after {timeout:g} s."), {}
        try:
            output = to_tool_output(box["value"], self.agent.media_store)
        except ToolError as exc:
            box["output_error"] = exc
            return _error_result(part, f"Error: {part.name} returned unusable output: {exc}"), {}
        return self._result_part(part, output), output.data

    def _result_part(self, part: ToolCallPart, output: Any) -> ToolResultPart:
        limit = self.agent.max_tool_output_chars
        text = output.text
        if len(text) > limit:
            text = text[:limit] + f"... [{len(output.text) - limit} more characters cut]"
        content: list[Any] = []
        for ref in output.images:
            self.conv.handles.handle("image", ref)
            content.append(ImagePart(image=ref))
        if text:
            content.append(TextPart(text=text))
        if not content:
            content.append(TextPart(text="(no output)"))
        return ToolResultPart(tool_call_id=part.id, name=part.name, content=content)

    # ------------------------------------------------------------------ memory and result

    def _recall(self) -> Iterator[Any]:
        """Ask memory for context: ``context_for(new messages, token_budget=..., [exclude_session=this one])``.

        It may return messages, or an object with ``to_message()`` (MultimodalMemory's ``MemoryContext``).
        """
        memory = self.agent.memory
        if memory is None:
            return
        try:
            kwargs: dict[str, Any] = {"token_budget": self.agent.memory_token_budget}
            if "exclude_session" in inspect.signature(memory.context_for).parameters:
                kwargs["exclude_session"] = self.conv.id  # this conversation's turns are already in context
            recalled = memory.context_for(self.new_messages, **kwargs)
            if hasattr(recalled, "to_message"):
                message = recalled.to_message() if recalled else None
                recalled = [message] if message is not None else []
            self.recalled = [m for m in (recalled or []) if isinstance(m, Message)]
        except Exception as exc:
            yield ErrorEvent(kind="memory_error", message=f"memory recall failed, going on without it: {exc}")

    def _remember(self) -> Iterator[Any]:
        """Store the run's messages: ``add_turns(messages, session=...)``, or ``add(...)`` (MultimodalMemory)."""
        memory = self.agent.memory
        if memory is None or not self.added:
            return
        try:
            store = getattr(memory, "add_turns", None) or memory.add
            store(self.added, session=self.conv.id)
        except Exception as exc:
            yield ErrorEvent(step=len(self.steps), kind="memory_error", message=f"memory could not store: {exc}")

    def _result(self, stop_reason: str) -> AgentResult:
        usage = Usage()
        for step in self.steps:
            usage.add(step.usage)
        usage.total_time_s = time.perf_counter() - self.started
        return AgentResult(
            text=self.text,
            images=list(self.images),
            messages=list(self.added),
            steps=list(self.steps),
            usage=usage,
            stop_reason=stop_reason,  # type: ignore[arg-type]
            conversation_id=self.conv.id,
        )


def run_events(
    agent: Agent, conv: Conversation, new_messages: Sequence[Message], cancel: threading.Event
) -> Iterator[Any]:
    """The events of one run (see the module docstring). Raises StepLimitError / ToolError as configured."""
    return _Run(agent, conv, new_messages, cancel).events()
