"""Inside the model: each component of SmolLM2 (and MiniLM) measured and intervened on."""
