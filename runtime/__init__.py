"""Process-level concerns every entry point shares (the lowest layer: imports nothing of the suite)."""
