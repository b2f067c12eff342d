"""Container health check for Docker and compose, which have no gRPC check and no curl in the slim image.

    python /opt/userstream/healthcheck.py grpc 127.0.0.1:50051      # grpc.health.v1 overall status is SERVING
    python /opt/userstream/healthcheck.py http http://127.0.0.1:8000/readyz   # a 2xx answer

Exit status 0 when healthy, 1 otherwise (the reason on stderr). Kubernetes does
not use this: it probes the same endpoints natively.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from collections.abc import Sequence

# Seconds one check may take; compose's own `timeout` should be a little longer.
TIMEOUT = 3.0


def grpc_problem(address: str) -> str | None:
    """None when the server at ``address`` reports SERVING for the overall ("") service."""
    import grpc  # noqa: PLC0415  (only the gRPC check pays for loading grpc)
    from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: PLC0415

    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT)
        except grpc.RpcError as exc:
            return f"{address}: {exc.code().name}"
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        return f"{address}: {health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}"
    return None


def http_problem(url: str) -> str | None:
    """None when ``url`` answers with a 2xx status."""
    if not url.startswith(("http://", "https://")):
        return f"{url}: not an http(s) URL"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:  # noqa: S310  (scheme checked above)
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        return f"{url}: HTTP {exc.code}"
    except OSError as exc:
        return f"{url}: {exc}"
    return None if 200 <= status < 300 else f"{url}: HTTP {status}"


def main(argv: Sequence[str]) -> int:
    checks = {"grpc": grpc_problem, "http": http_problem}
    if len(argv) != 2 or argv[0] not in checks:
        sys.stderr.write("usage: healthcheck.py grpc HOST:PORT | http URL\n")
        return 2
    problem = checks[argv[0]](argv[1])
    if problem is not None:
        sys.stderr.write(f"unhealthy: {problem}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
