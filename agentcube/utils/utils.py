"""``read_token_from_file``: a token stored in a file (a Kubernetes service-account token)."""

from __future__ import annotations

__all__ = ["read_token_from_file"]


def read_token_from_file(file_path: str) -> str:
    """The file's text without surrounding whitespace; ``""`` when the file does not exist.
    Other errors (permission, a directory, undecodable bytes) propagate."""
    try:
        with open(file_path, encoding="utf-8") as file:
            return file.read().strip()
    except FileNotFoundError:
        return ""
