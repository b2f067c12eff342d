"""gRPC plumbing shared by the services: server bootstrap, error mapping, typed clients.

The generated code in ``userstream.proto`` is imported only here and by the
servicers; everything else works with the domain model.
"""
