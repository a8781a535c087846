"""Helpers kept from the first release of the SDK (``http``, ``log``, ``utils``).

The SDK itself does not use them; they stay for code that imports them.
"""
