"""Hardening policy: rules.py (plain functions) and the CrossGuard pack (__main__.py)."""
