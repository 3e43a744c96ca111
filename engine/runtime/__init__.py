"""How the server runs many readers: jobs, the one CPU gate, bounded memory."""
