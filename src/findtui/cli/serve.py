"""`findtui serve`: the terminal UI in a web browser (textual-serve).

textual-serve runs one command per browser tab, each tab its own findtui process
talking to the page over a websocket; that command is this Python running
``-m findtui`` with the options given here that make sense for the app.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import shlex
import sys

from findtui.cli.exitcodes import ExitCode
from findtui.engine.sanitize import visible

# textual-serve sets it for each app process it runs: Textual's web driver.
SERVED_DRIVER = "web_driver"


def is_served() -> bool:
    """True in an app process that textual-serve started (before the app runs; a running
    app asks ``App.is_web``)."""
    return SERVED_DRIVER in os.environ.get("TEXTUAL_DRIVER", "")


def build_serve_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="findtui serve",
        description="Serve the terminal UI in a web browser: open the URL it prints; each "
                    "browser tab runs its own findtui. findtui has no authentication of its "
                    "own: it listens on 127.0.0.1 unless --host says otherwise.",
    )
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: 127.0.0.1, this machine only). "
                        "Anything else lets others reach it: put a reverse proxy with TLS and "
                        "authentication in front")
    p.add_argument("--port", type=int, default=8000, help="TCP port to listen on (default: 8000)")
    p.add_argument("--public-url", metavar="URL",
                   help="the URL browsers use to reach it, when behind a reverse proxy "
                        "(default: http://HOST:PORT)")
    app = p.add_argument_group("Options of the served app")
    app.add_argument("--demo", action="store_true",
                     help="each tab starts its own embedded demo SCP and opens on it")
    app.add_argument("--profile", metavar="NAME", help="open on node profile NAME")
    app.add_argument("--query", metavar="NAME", help="open with query profile NAME")
    app.add_argument("--no-history", action="store_true", help="record no run in the history")
    app.add_argument("--hide-phi", action="store_true",
                     help="mask patient names, IDs and birth dates on screen (Ctrl+G toggles)")
    return p


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def app_command(args: argparse.Namespace) -> str:
    """The shell command textual-serve runs for each tab (it runs it through a shell)."""
    argv = [sys.executable, "-m", "findtui"]
    if args.demo:
        argv.append("--demo")
    if args.profile:
        argv += ["--profile", args.profile]
    if args.query:
        argv += ["--query", args.query]
    if args.no_history:
        argv.append("--no-history")
    if getattr(args, "hide_phi", False):
        argv.append("--hide-phi")
    return shlex.join(argv)


def exposure_warning(host: str, port: int) -> str:
    return (f"findtui serve: WARNING: listening on {host}:{port}, not only on this machine. "
            "findtui has no authentication of its own: anyone who can reach this port gets a "
            "findtui session, with your profiles and history, that can query every node you "
            "can reach. Put a reverse proxy in front that adds TLS and authentication (and "
            "give it --public-url), or serve on 127.0.0.1 (the default) and use an SSH "
            "tunnel.")


def serve_main(argv: list[str]) -> int:
    parser = build_serve_parser()
    args = parser.parse_args(argv)
    if not 1 <= args.port <= 65535:
        parser.error(f"--port must be from 1 to 65535, not {args.port}")
    if args.profile or args.query:  # say it here, not in every tab that would open on it
        from findtui.config.schema import ProfileError
        from findtui.config.store import Store

        try:
            store = Store()
            profiles = store.load()
            for kind, name in (("node", args.profile), ("query", args.query)):
                if name:
                    profiles.get(kind, name, store.path)
        except ProfileError as exc:
            print(visible(f"findtui serve: {exc}"), file=sys.stderr)
            return ExitCode.BAD_INPUT
    if not is_loopback(args.host):
        print(visible(exposure_warning(args.host, args.port)), file=sys.stderr)
    try:
        from textual_serve.server import Server
    except ImportError:
        print("findtui serve: textual-serve is not installed; install findtui again "
              "(pip install findtui) or pip install textual-serve", file=sys.stderr)
        return ExitCode.USAGE
    class FindtuiServer(Server):
        async def on_startup(self, app) -> None:  # one line instead of textual-serve's logo
            print(visible(f"findtui serve: open {self.public_url} in a web browser "
                          "(Ctrl+C stops)"), file=sys.stderr, flush=True)

    host = f"[{args.host}]" if ":" in args.host else args.host
    server = FindtuiServer(app_command(args), host=args.host, port=args.port, title="findtui",
                           public_url=args.public_url or f"http://{host}:{args.port}")
    try:
        server.serve()
    except OSError as exc:  # the port is taken, the address is not ours
        print(visible(f"findtui serve: cannot listen on {args.host}:{args.port}: "
                      f"{exc.strerror or exc}; choose another --port or --host"),
              file=sys.stderr)
        return ExitCode.USAGE
    return ExitCode.OK
