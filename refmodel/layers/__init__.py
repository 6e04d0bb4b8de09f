"""Layer descriptions: small frozen dataclasses that validate a block (no arithmetic here)."""
