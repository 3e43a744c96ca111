"""The shared models and the traced forward: where the weights come from, the cache, loading, one pass, perplexity under an intervention."""
