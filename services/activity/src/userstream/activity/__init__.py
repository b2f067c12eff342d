"""The activity service: the single write path into the log (CONTRACT §2–3)."""
