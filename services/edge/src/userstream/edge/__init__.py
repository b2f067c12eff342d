"""The edge: the only thing users connect to; serves each user's stream (CONTRACT §5)."""
