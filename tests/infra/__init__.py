"""Pulumi programs under the mock runtime, their policies and their manifests."""
