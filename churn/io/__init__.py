"""Storage primitives every stage uses: atomic outputs and S3 transfers."""
