"""The floor for bench/api_bench.py: the least an HTTP API on this stack can do per create.

A bare ASGI app on uvicorn (httptools, the same server neutrino runs on) that answers
``POST /v2.0/ports`` by inserting one row into SQLite (WAL, synchronous=NORMAL, as neutrino's
database) and returning the row as JSON; ``GET /v2.0/ports`` lists the rows. No framework, no ORM,
no validation, no authentication: whatever neutrino spends beyond this is its own cost.

    .venv/bin/python bench/floor_app.py --port 9797 --db /tmp/floor.db
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import uuid
from typing import Any

import uvicorn


def make_app(path: str) -> Any:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE IF NOT EXISTS ports (id TEXT PRIMARY KEY, network_id TEXT, name TEXT)")

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        more = True
        while more:
            msg = await receive()
            body += msg.get("body", b"")
            more = msg.get("more_body", False)
        out: dict[str, Any]
        if scope["method"] == "POST":
            attrs = json.loads(body)["port"]
            row = {"id": str(uuid.uuid4()), "network_id": attrs.get("network_id", ""), "name": attrs.get("name", "")}
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO ports (id, network_id, name) VALUES (?, ?, ?)",
                       (row["id"], row["network_id"], row["name"]))
            db.execute("COMMIT")
            status, out = 201, {"port": row}
        else:
            rows = db.execute("SELECT id, network_id, name FROM ports").fetchall()
            status, out = 200, {"ports": [{"id": i, "network_id": n, "name": m} for i, n, m in rows]}
        data = json.dumps(out, separators=(",", ":")).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
        await send({"type": "http.response.body", "body": data})

    return app


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=9797)
    ap.add_argument("--db", default="/tmp/neutrino-floor.db")
    args = ap.parse_args()
    uvicorn.run(make_app(args.db), host="127.0.0.1", port=args.port, log_level="warning", access_log=False,
                http="httptools")
    return 0


if __name__ == "__main__":
    sys.exit(main())
