"""Tool-use tasks: questions answered by calling LangChain tools, as TextEnvs.

    >>> import envs
    >>> env = envs.make("tools-chain")
    >>> obs, info = env.reset(seed=1)
    >>> env.tool_schemas[0]["function"]["name"]
    'calculator'

See ``envs.tools.env`` for the spec card, ``envs.tools.tools`` for the tools and
``envs.tools.tasks`` for the task families.
"""

from __future__ import annotations
