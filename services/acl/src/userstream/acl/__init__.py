"""The acl service: memberships projected from the log, system roles, permission answers (CONTRACT §3–4)."""
