"""Server-sent events framing (WHATWG HTML §9.2), incremental.

Shared by every rewriter of streamed responses (LLM completions, MCP
streamable HTTP): ``SseSplitter`` turns arbitrary body chunks into complete
event blocks, ``SseEvent`` reads and replaces an event's data.
"""

from __future__ import annotations


class SseEvent:
    __slots__ = ("data", "lines")

    def __init__(self, block: str):
        self.lines = block.split("\n")
        data = [line[5:].removeprefix(" ") for line in self.lines if line.startswith("data:")]
        self.data = "\n".join(data) if data else None

    @property
    def name(self) -> str | None:
        for line in self.lines:
            if line.startswith("event:"):
                return line[6:].strip()
        return None

    def with_data(self, data: str) -> str:
        """The event block with its data replaced (other fields kept)."""
        out: list[str] = []
        placed = False
        for line in self.lines:
            if line.startswith("data:"):
                if not placed:
                    out.extend("data: " + part for part in data.split("\n"))
                    placed = True
            else:
                out.append(line)
        return "\n".join(out)


class SseSplitter:
    """Buffers partial events between chunks; bounded so a stream that never
    ends an event cannot grow memory without limit."""

    def __init__(self, max_pending: int = 1 << 20):
        self.max_pending = max_pending
        self.pending = ""

    def feed(self, chunk: bytes) -> list[str]:
        self.pending += chunk.decode("utf-8", "surrogateescape").replace("\r\n", "\n")
        if len(self.pending) > self.max_pending:
            raise ValueError("SSE event over the inspection limit")
        *blocks, self.pending = self.pending.split("\n\n")
        return [block for block in blocks if block]

    def take_rest(self) -> str:
        rest, self.pending = self.pending, ""
        return rest


def encode(blocks: list[str]) -> bytes:
    return "".join(f"{block}\n\n" for block in blocks).encode("utf-8", "surrogateescape")
