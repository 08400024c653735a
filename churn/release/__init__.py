"""Stage 6, release: the gate, the archive, the registry and deployment."""
