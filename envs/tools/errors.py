"""The one exception every tool raises on input it cannot handle."""

from __future__ import annotations

from langchain_core.tools import ToolException


class ToolError(ToolException):
    """A tool cannot do what it was asked (bad argument, unknown entity, out of stock, a
    bound exceeded). The message is one line; the env shows it and the world does not
    move. It is a LangChain ``ToolException``, so a LangChain agent that sets
    ``handle_tool_error=True`` on these tools gets the message back as the tool's output."""
