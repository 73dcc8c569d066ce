"""``python -m service.api.auth new-key <client-name> <scopes>``: a new API key, printed once,
and the line to add to LUNGSEG_API_KEYS_FILE (which holds only the key's SHA-256).

``python -m service.api.auth bench [-n N]``: microseconds per API key and per JWT check, as
one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys

from service.api.auth.keys import new_key
from service.api.auth.principal import SCOPES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.api.auth")
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("new-key", help="make an API key and its keys-file line")
    make.add_argument("client", help="the client's name (letters, digits, . _ @ : + -)")
    make.add_argument("scopes", help=f"comma-separated scopes: {', '.join(SCOPES)}")
    bench = commands.add_parser("bench", help="time the API key and JWT checks")
    bench.add_argument("-n", type=int, default=10_000, help="checks per measurement")
    args = parser.parse_args(argv)
    if args.command == "bench":
        from service.api.auth.bench import measure

        sys.stdout.write(json.dumps(measure(args.n)) + "\n")
        return 0
    try:
        key, line = new_key(args.client, args.scopes)
    except ValueError as err:
        parser.error(str(err))
    sys.stdout.write(
        "API key (shown once: give it to the client, keep no copy):\n"
        f"  {key}\n"
        "line to add to LUNGSEG_API_KEYS_FILE:\n"
        f"{line}\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
