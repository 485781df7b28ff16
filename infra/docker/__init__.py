"""Staging target: the stack on one Docker host (pulumi-docker)."""
