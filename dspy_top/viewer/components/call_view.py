"""One LM call: facts on top, then the response first and each message by role after it (`body`),
or exactly as `dspy.inspect_history` prints it (`inspect_history_text`).

The response comes first because it is what one opens a call for; the system message, which
DSPy makes long, comes after. Pure rendering (Rich text only) so it is tested without an app.
Everything the call or its payload says passes through `inert`: an LM's response may hold
escape sequences.
"""

from __future__ import annotations

import json
from typing import Any

from rich.text import Text

from dspy_top.model import CallSummary
from dspy_top.viewer import format as fmt
from dspy_top.viewer.terminal import inert

ROLE_STYLE = {"system": "bold magenta", "user": "bold cyan", "assistant": "bold green", "tool": "bold yellow"}


def facts(call: CallSummary, chain: tuple[str, ...] = ()) -> Text:
    """The header line(s): module and chain, model, time, latency, tokens, cost, cache, retries."""
    text = Text()
    text.append(inert(call.path), style="bold")
    if chain:
        text.append(f" ({inert(' > '.join(chain))})", style="dim")
    elif call.module_class:
        text.append(f" ({inert(call.module_class)})", style="dim")
    text.append(f" · {inert(call.model)}")
    if call.response_model and call.response_model not in call.model:
        text.append(f" (answered by {inert(call.response_model)})", style="dim")
    text.append(f" · pid {call.pid} · call {call.id}\n")
    text.append(f"{fmt.clock(call.start)} · {fmt.seconds(call.latency)} · ")
    if call.usage_known:
        text.append(f"{call.prompt_tokens:,} in")
        if call.cached_tokens:
            text.append(f" ({call.cached_tokens:,} cached)")
        text.append(f" → {call.completion_tokens:,} out · ")
    else:
        text.append("tokens unknown (DSPy did not report them) · ", style="yellow")
    if call.cache_hit:
        saved = fmt.call_cost(call.cost_saved_usd) if call.cost_saved_usd is not None else "?"
        text.append(f"cache hit ($0, saved {saved})", style="cyan")
    else:
        text.append(fmt.call_cost(call.cost_usd), style="yellow" if call.cost_usd is None else "bold")
        if call.cost_usd is None:
            text.append(" (no known price)", style="yellow")
    text.append(f" · attempt {call.retries + 1}" + (f" ({call.retries} retries)" if call.retries else ""))
    if call.scopes:
        text.append(f" · inside {inert(' > '.join(call.scopes))}", style="dim")
    if call.error:
        text.append(f"\nERROR {inert(call.error)}: {inert(call.error_message or '', multiline=True)}", style="bold red")
    return text


def section(title: str, style: str = "bold") -> Text:
    text = Text()
    text.append(f"── {inert(title)} ──", style=style)
    return text


def shown(text: str, style: str = "") -> Text:
    """A block of what the process sent (a message, a response, JSON), inert, newlines kept."""
    return Text(inert(text, multiline=True), style=style)


def _content(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict):
                kind = part.get("type")
                if kind == "text":
                    parts.append(str(part.get("text", "")))
                elif kind in ("image_url", "image"):
                    parts.append("<image>")
                else:
                    parts.append(json.dumps(part, default=str)[:2000])
            else:
                parts.append(str(part))
        return "\n".join(parts)
    return json.dumps(content, default=str, indent=2)


def body(payload: dict[str, Any]) -> list[Text]:
    """The response(s) and tool calls first, then the messages by role, usage and request options.

    Section headings are Text blocks of their own (`is_section`), so a screen can jump between them."""
    out: list[Text] = []
    outputs = payload.get("outputs")
    if outputs is not None:
        outputs = outputs if isinstance(outputs, list) else [outputs]
        for index, output in enumerate(outputs):
            title = "Response" if len(outputs) == 1 else f"Response {index + 1}"
            out.append(section(title, "bold green"))
            if isinstance(output, dict):
                if output.get("reasoning_content"):
                    out.append(shown(f"(reasoning) {_content(output['reasoning_content'])}", style="dim"))
                out.append(shown(_content(output.get("text"))))
                for tool_call in _items(output.get("tool_calls")):
                    out.append(section("Tool call", "bold yellow"))
                    out.append(shown(_tool_call(tool_call)))
            else:
                out.append(shown(_content(output)))
    if payload.get("error"):
        out += [section("Error", "bold red"), shown(str(payload["error"]), style="red")]
    for message in _items(payload.get("messages")):
        if not isinstance(message, dict):
            out += [section("Message"), shown(str(message))]
            continue
        role = str(message.get("role", "?"))
        out.append(section(f"{role.capitalize()} message", ROLE_STYLE.get(role, "bold")))
        out.append(shown(_content(message.get("content"))))
        for tool_call in _items(message.get("tool_calls")):
            out.append(shown(f"tool call: {json.dumps(tool_call, default=str)}", style="yellow"))
    usage = payload.get("usage")
    if usage:
        out += [section("Usage", "dim"), shown(json.dumps(usage, default=str, indent=1), style="dim")]
    options = payload.get("options")
    if options:
        out += [section("Request options", "dim"), shown(json.dumps(options, default=str), style="dim")]
    return out


def is_section(block: Text) -> bool:
    return block.plain.startswith("── ") and block.plain.endswith(" ──")


def inspect_history_text(payload: dict[str, Any], when: str) -> Text:
    """The call as `dspy.inspect_history()` prints it (without its colours): `[time]`, each message
    with its role, the response, tool calls. The text one pastes into an issue or compares with DSPy's."""
    lines: list[str] = [f"[{when}]", ""]
    for message in _items(payload.get("messages")):
        if not isinstance(message, dict):
            lines += [str(message), "", ""]
            continue
        lines.append(f"{str(message.get('role', '?')).capitalize()} message:")
        lines.append("")
        lines.append(_content(message.get("content")).strip())
        calls = _items(message.get("tool_calls"))
        if calls:
            lines += ["Tool calls:", *(_tool_call(call) for call in calls)]
        lines += ["", ""]
    outputs = payload.get("outputs")
    outputs = outputs if isinstance(outputs, list) else [outputs] if outputs is not None else []
    if outputs:
        first = outputs[0]
        text = _content(first.get("text")) if isinstance(first, dict) else _content(first)
        if text:
            lines += ["Response:", "", text.strip()]
        calls = _items(first.get("tool_calls")) if isinstance(first, dict) else []
        if calls:
            lines += ["Tool calls:", *(_tool_call(call) for call in calls)]
        if len(outputs) > 1:
            lines.append(f"\t (and {len(outputs) - 1} other completions)")
    return Text(inert("\n".join(lines), multiline=True))


def _items(value: Any) -> list:
    """A list the payload should hold here, or nothing (a process may send anything)."""
    return value if isinstance(value, list) else []


def _tool_call(tool_call: Any) -> str:
    if isinstance(tool_call, dict):
        function = tool_call.get("function") or tool_call
        if not isinstance(function, dict):
            return str(tool_call)
        name = function.get("name", "?")
        arguments = function.get("arguments", "")
        return f"{name}({arguments})"
    return str(tool_call)
