"""``userstream dev``: the whole system on one machine, with demo data and traffic, for newcomers and tests.

The stack (``stack.py``) runs nats-server and one child process per service,
each in its own session so that a Ctrl-C reaches only the supervisor, which
stops them in order. The demo (``demo.py``) and its traffic (``traffic.py``)
talk to the services through their ordinary gRPC clients.
"""
