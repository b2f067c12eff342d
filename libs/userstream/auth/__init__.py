"""Who may open a stream: verification keys, the JWKS cache and the token verifier (CONTRACT §6)."""
