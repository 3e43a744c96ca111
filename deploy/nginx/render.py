"""Fill deploy/nginx/nginx.conf.template: the one nginx config, for docker compose and for the test.

    python deploy/nginx/render.py                 # rewrite deploy/nginx/nginx.conf (docker-compose.yml's)
    python deploy/nginx/render.py --listen 8080 --replica app1:8501 --replica app2:8501 \
        --runtime-dir /tmp/nginx --out /tmp/nginx/nginx.conf

Only `${NAME}` placeholders in capitals are filled; nginx's own `$variables` are left alone. Any placeholder
left unfilled, or any value not given, is an error, so a template change cannot ship half rendered.
Standard library only: it runs wherever Python 3 does, without the app's virtualenv.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TEMPLATE = HERE / "nginx.conf.template"
COMPOSE_CONF = HERE / "nginx.conf"
PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")

# The replicas docker-compose.yml runs: service names on the compose network, Streamlit's port.
COMPOSE_REPLICAS = ("app1:8501", "app2:8501")
# docker-compose.yml runs nginx as an unprivileged user: everything it writes goes under /tmp, and the logs
# go to the container's output, where `docker compose logs` reads them.
COMPOSE_VALUES = {"LISTEN": "8080", "PID_FILE": "/tmp/nginx.pid", "ERROR_LOG": "stderr",
                  "ACCESS_LOG": "/dev/stdout", "TEMP_DIR": "/tmp"}


def upstream_servers(replicas: list[str] | tuple[str, ...]) -> str:
    """One `server` line per replica (see the template for why each needs its own line)."""
    if not replicas:
        raise ValueError("at least one replica is needed")
    return "\n".join(f"        server {r} max_fails=1 fail_timeout=10s;" for r in replicas)


def render(values: dict[str, str], template: str | None = None) -> str:
    text = TEMPLATE.read_text() if template is None else template
    wanted = set(PLACEHOLDER.findall(text))
    missing = wanted - values.keys()
    unused = values.keys() - wanted
    if missing or unused:
        raise ValueError(f"placeholders without values: {sorted(missing)}; values without placeholders: "
                         f"{sorted(unused)}")
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


def values_for(listen: str, replicas, runtime_dir: str | None = None) -> dict[str, str]:
    """Values for a run outside compose: pid, logs and temp files all in `runtime_dir`."""
    if runtime_dir is None:
        return {**COMPOSE_VALUES, "LISTEN": listen, "UPSTREAM_SERVERS": upstream_servers(replicas)}
    root = Path(runtime_dir)
    return {"LISTEN": listen, "UPSTREAM_SERVERS": upstream_servers(replicas), "PID_FILE": str(root / "nginx.pid"),
            "ERROR_LOG": str(root / "error.log"), "ACCESS_LOG": str(root / "access.log"),
            "TEMP_DIR": str(root)}


def compose_config() -> str:
    return render(values_for(COMPOSE_VALUES["LISTEN"], COMPOSE_REPLICAS))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", help="address:port or port nginx listens on (default: compose's)")
    parser.add_argument("--replica", action="append", default=[], help="host:port of a replica (repeat)")
    parser.add_argument("--runtime-dir", help="folder for pid, logs and temp files (default: compose's /tmp)")
    parser.add_argument("--out", type=Path, help=f"file to write (default: {COMPOSE_CONF.relative_to(HERE.parent.parent)})")
    args = parser.parse_args(argv)
    if not (args.listen or args.replica or args.runtime_dir):
        text = compose_config()
    elif args.out is None:   # never overwrite compose's committed config with values meant for elsewhere
        parser.error("--out is required with --listen, --replica or --runtime-dir")
    else:
        text = render(values_for(args.listen or COMPOSE_VALUES["LISTEN"], args.replica or COMPOSE_REPLICAS,
                                 args.runtime_dir))
    out = args.out or COMPOSE_CONF
    out.write_text(text)
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
