"""What access costs: password hashing at sign-in, and each request's authentication and check.

Starts a throwaway PostgreSQL (fsync on) and the web service in this process, then measures

* argon2id verification at the configured parameters (``auth.argon2_*``) and a whole sign-in
  (``POST /signin``: form, throttle check, verification, session row, audit row);
* ``GET /api/projects`` as a signed-in browser (session cookie), with an API token, with HTTP
  Basic (the verified password remembered), against the same route with authentication
  replaced by a fixed principal (the baseline: what the route costs without it);
* :meth:`dicomflow.access.policy.Policy.may` alone.

Prints rows of ``measure | ours | reference | ratio | goal`` like the other benchmarks.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pgtemp import throwaway_postgres
from smoke import parse_args

from dicomflow.access.manage import AccessManager
from dicomflow.access.passwords import PasswordHashing
from dicomflow.access.policy import POLICY, Action, Principal, Role
from dicomflow.config import Settings, load_settings
from dicomflow.db.session import create_schema, make_engine
from dicomflow.web.app import create_app
from dicomflow.web.auth import principal_of

PASSWORD = "a long benchmark password"


def _settings(url: str, data_dir: Path) -> Settings:
    parsed = make_url(url)
    base = load_settings(environ={"DICOMFLOW_DATA_DIR": str(data_dir)}, create_secrets=True)
    postgres = base.postgres.replace(
        managed=False,
        host=parsed.host,
        port=parsed.port,
        user=parsed.username,
        password=parsed.password or "",
        platform_database=parsed.database,
    )
    return base.replace(postgres=postgres)


def _serve(app: object) -> tuple[str, uvicorn.Server, threading.Thread]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))  # type: ignore[arg-type]
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
    return url, server, thread


def _median_ms(client: httpx.Client, path: str, n: int) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        response = client.get(path)
        times.append(time.perf_counter() - start)
        assert response.status_code == 200, response.text
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=300, help="requests per way in")
    parser.add_argument("--sign-ins", type=int, default=10, help="sign-ins and verifications")
    args = parse_args(parser, {"requests": 5, "sign_ins": 2})
    requests, sign_in_count = args.requests, args.sign_ins
    with throwaway_postgres() as url, tempfile.TemporaryDirectory() as tmp:
        settings = _settings(url, Path(tmp))
        engine = make_engine(settings.platform_db_url)
        create_schema(engine)
        manager = AccessManager(engine, settings.auth)
        manager.create_user("bench", "bench", PASSWORD)
        for n in range(20):
            name = f"p{n}"
            manager.create_project("bench", name)
            manager.set_member("bench", name, "bench", Role.VIEWER)
        token = manager.create_token("bench", "bench", "bench").secret

        hashing = PasswordHashing(settings.auth)
        stored = hashing.hash(PASSWORD)
        verify = []
        for _ in range(sign_in_count):
            start = time.perf_counter()
            hashing.verify(stored, PASSWORD)
            verify.append(time.perf_counter() - start)

        app = create_app(settings)
        url_web, server, thread = _serve(app)
        sign_ins = []
        with httpx.Client(base_url=url_web) as browser:
            for _ in range(sign_in_count):
                browser.cookies.clear()
                browser.get("/signin")
                start = time.perf_counter()
                answer = browser.post(
                    "/signin",
                    data={
                        "username": "bench",
                        "password": PASSWORD,
                        "next": "/",
                        "signin_token": browser.cookies.get("dicomflow_signin", ""),
                    },
                )
                sign_ins.append(time.perf_counter() - start)
                assert answer.status_code == 303
            session_ms = _median_ms(browser, "/api/projects", requests)
        with httpx.Client(base_url=url_web, headers={"Authorization": f"Bearer {token}"}) as c:
            token_ms = _median_ms(c, "/api/projects", requests)
        with httpx.Client(base_url=url_web, auth=("bench", PASSWORD)) as c:
            start = time.perf_counter()
            assert c.get("/api/projects").status_code == 200
            basic_first_ms = (time.perf_counter() - start) * 1000
            basic_ms = _median_ms(c, "/api/projects", requests)
        fixed = Principal("bench", roles={f"p{n}": Role.VIEWER for n in range(20)}, via="bench")
        app.dependency_overrides[principal_of] = lambda: fixed
        with httpx.Client(base_url=url_web) as c:
            baseline_ms = _median_ms(c, "/api/projects", requests)
        server.should_exit = True
        thread.join(10)
        engine.dispose()

    calls = 1000 if args.smoke else 200_000
    start = time.perf_counter()
    for _ in range(calls):
        POLICY.may(fixed, Action.READ, "p7")
    may_us = (time.perf_counter() - start) / calls * 1e6

    auth = settings.auth
    params = f"t={auth.argon2_time_cost}, m={auth.argon2_memory_kib} KiB, "
    params += f"p={auth.argon2_parallelism}"
    rows = [
        (
            f"argon2id verify ({params}), median of {sign_in_count}",
            f"{statistics.median(verify) * 1000:.0f} ms",
            "-",
            "-",
            "100-500 ms",
        ),
        (
            f"sign-in POST /signin, median of {sign_in_count}",
            f"{statistics.median(sign_ins) * 1000:.0f} ms",
            "-",
            "-",
            "< 1 s",
        ),
    ]
    for label, value in (
        ("session cookie", session_ms),
        ("API token", token_ms),
        ("HTTP Basic, verified password remembered", basic_ms),
    ):
        rows.append(
            (
                f"GET /api/projects with {label}, median of {requests}",
                f"{value:.2f} ms",
                f"no authentication {baseline_ms:.2f} ms",
                f"+{value - baseline_ms:.2f} ms",
                "< 5 ms added",
            )
        )
    rows.append(
        (
            "GET /api/projects, HTTP Basic, first request (argon2)",
            f"{basic_first_ms:.0f} ms",
            "-",
            "-",
            "-",
        )
    )
    rows.append(("POLICY.may(principal, READ, project)", f"{may_us:.2f} us", "-", "-", "-"))
    print("| measure | ours | reference | ratio | goal |")
    print("|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
