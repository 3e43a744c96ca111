"""Serving and efficiency: KV caches, batching and allocation simulated on measured workloads, the roofline, compression, the model's file formats."""
