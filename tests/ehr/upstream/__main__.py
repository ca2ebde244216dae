"""`python -m tests.ehr.upstream --port P --patients N [--jwks FILE --client-id ID]`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import uvicorn

from tests.ehr.upstream.data import build
from tests.ehr.upstream.server import Upstream, create_upstream


def main() -> None:
    parser = argparse.ArgumentParser(description="Test EHR FHIR server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--patients", type=int, default=50)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--jwks", help="JWKS file of the gateway's key: tokens required when given")
    parser.add_argument("--client-id")
    parser.add_argument("--token-lifetime", type=int, default=300)
    parser.add_argument("--page-size", type=int, default=10)
    args = parser.parse_args()
    jwks = json.loads(Path(args.jwks).read_text()) if args.jwks else None
    upstream = Upstream(build(args.patients, args.seed), args.client_id, jwks, args.token_lifetime, args.page_size)
    uvicorn.run(create_upstream(upstream), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
