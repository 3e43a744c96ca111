"""Using LLMs: prompts, chat templates, benchmarks, tool calls (retrieval has its own package)."""
