"""The durable, ordered log (the JetStream stream ``ACTIVITY``): subjects, provisioning, recording."""
