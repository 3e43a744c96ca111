"""Text into tokens: the tokenizers compared, BPE trained live, token costs, and the bounds on user text."""
