"""Plumbing every room uses: S3 storage, shards, URLs and TLS, pod resources, checkpoint and image files."""
