"""`make run`: the whole stack on one machine, with no Docker and no system Postgres.

Postgres (embedded pgserver unless DATABASE_URL is set), the Temporal dev server with its
Web UI and our search attributes, migrations, the demo account, an SMTP sink, the worker and
the API. State lives in `ESCALATOR_STATE_DIR` (default `.escalator/`), so a second run finds
its data again. Ctrl-C stops every child; none is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from config import Settings, to_libpq_url
from db import create_engine, create_sessionmaker, migrate
from workflows import search_attributes

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent


@contextlib.contextmanager
def embedded_postgres(data_dir: Path) -> Iterator[str]:
    """A pgserver Postgres with its data in `data_dir`; yields its URL and stops it after."""
    import pgserver  # dev-only dependency: imported where it is needed

    # Generated at import time, so invisible to mypy.
    commands: Any = importlib.import_module("pgserver._commands")

    data_dir.mkdir(parents=True, exist_ok=True)
    # cleanup_mode=None, and stop it ourselves: pgserver's own handle count never forgets a
    # launcher that was killed, and would then leave the server running for ever.
    server: Any = pgserver.get_server(data_dir, cleanup_mode=None)
    try:
        yield str(server.get_uri())
    finally:
        server.cleanup()
        with contextlib.suppress(subprocess.CalledProcessError):
            commands.pg_ctl(["-w", "stop", "-m", "fast"], pgdata=data_dir, user=server.system_user)


def _die_with_parent() -> None:
    # A shell may have started us with signals ignored, and children inherit that.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)
    # Linux: the child gets SIGTERM if this launcher dies, even by SIGKILL: no orphans.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Children:
    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(
        self, name: str, *argv: str | Path, tee: bool = False, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [str(a) for a in argv],
            cwd=ROOT,
            env=env or self.env,
            stdout=None if tee else log,
            stderr=subprocess.STDOUT if not tee else None,
            start_new_session=True,  # Ctrl-C reaches only the launcher, which stops us in order
            preexec_fn=_die_with_parent,
        )
        self.procs.append((name, proc))
        return proc

    def check(self) -> None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}; see {self.log_dir}")

    def stop(self) -> None:
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for _, proc in reversed(self.procs):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def wait_http(url: str, children: Children, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while True:
        children.check()
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer 200 within {timeout:.0f}s")
        time.sleep(0.5)


def temporal_argv(settings: Settings) -> list[str | Path]:
    host, _, port = settings.temporal_address.rpartition(":")
    return [
        BIN / "temporal",
        "server",
        "start-dev",
        "--ip",
        host,
        "--port",
        port,
        "--ui-port",
        str(settings.temporal_ui_port),
        "--namespace",
        settings.temporal_namespace,
        "--db-filename",
        settings.state_dir / "temporal.db",
        # WAL + normal sync made the dev server's SQLite 2.6x faster on this machine.
        "--sqlite-pragma",
        "journal_mode=wal",
        "--sqlite-pragma",
        "synchronous=normal",
        "--log-level",
        "warn",
        *search_attributes.cli_flags(),
    ]


async def seed(settings: Settings) -> datetime:
    """The demo account, seeded if missing; returns when it was first seeded, the anchor of
    the standing demo items' due dates."""
    from domain.demo import seed_demo
    from domain.models import Account

    engine = create_engine(settings, owner=True)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            account = await session.get(Account, await seed_demo(session))
            assert account is not None
            return account.created_at
    finally:
        await engine.dispose()


def sign_in_links(settings: Settings) -> list[tuple[str, str]]:
    """One ready sign-in link per demo role (single use; 24 hours, not the mailed 15
    minutes, so a link printed at start still works after lunch)."""
    from api.auth import RANK
    from domain import links
    from domain.clock import utcnow
    from domain.demo import ACCOUNT_ID, USERS, stable_id

    firsts = {u.role: u for u in reversed(USERS)}  # the first demo user of each role
    return [
        (
            f"{user.name} ({role})",
            links.url(
                settings.base_url,
                "sign_in",
                links.mint(
                    "sign_in",
                    settings.jwt_secret,
                    user_id=stable_id("demo", f"user:{user.key}"),
                    account_id=ACCOUNT_ID,
                    now=utcnow(),
                    ttl=timedelta(hours=24),
                ),
            ),
        )
        for role, user in sorted(firsts.items(), key=lambda kv: -RANK[kv[0]])
    ]


def write_down(settings: Settings, state: Path) -> None:
    """Where the CLIs (`make token`) find this stack with no environment exported."""
    path = state / "stack.json"
    path.write_text(
        json.dumps({"database_url": settings.database_url, "jwt_secret": settings.jwt_secret})
    )
    path.chmod(0o600)


def demo_token(settings: Settings) -> str:
    """The demo owner's token, at their current token epoch (so it works after they signed
    out everywhere once, too)."""
    from api.tokens import lookup, mint
    from domain.clock import utcnow
    from domain.demo import OWNER_ID

    principal = asyncio.run(lookup(settings, OWNER_ID))
    return mint(principal, settings.jwt_secret, ttl=timedelta(days=7), now=utcnow())


def demo_items(api: str, token: str, seeded_at: datetime) -> None:
    """A few items through the real API, so the queue page and the Temporal UI have
    something to show. The standing items are the same requests on every start (their due
    dates count from when the account was first seeded), so their idempotency keys make a
    later `make run` create nothing new, any day; the moving item is new on every start."""
    from domain.clock import utcnow
    from domain.demo import DEMO_DUE_IN_SECONDS, stable_id

    erin = str(stable_id("demo", "user:erin"))
    now = utcnow().replace(microsecond=0)
    anchor = seeded_at.replace(microsecond=0)
    requests = [
        (  # its key and its due date are of this second: it is at tier 2 in ~2.25 minutes
            "/v1/tasks",
            f"demo-moving-{now:%Y%m%dT%H%M%S}",
            {
                "type": "DEMO",
                "title": "Demo: cold room C-2 above 8 °C",
                "assignee_id": str(stable_id("demo", "user:emil")),
                "due_at": (now + timedelta(seconds=DEMO_DUE_IN_SECONDS)).isoformat(),
            },
        ),
        (
            "/v1/tasks",
            "demo-capa-overdue",
            {
                "type": "CAPA",
                "title": "Pump P-101 leaks",
                "assignee_id": erin,
                "due_at": (anchor - timedelta(days=2)).isoformat(),
            },
        ),
        (
            "/v1/tasks",
            "demo-docack",
            {
                "type": "DOC_ACK",
                "title": "Acknowledge SOP-12 rev 4",
                "assignee_id": erin,
                "due_at": (anchor + timedelta(days=3)).isoformat(),
            },
        ),
        (
            "/v1/sessions/acme-vpn/handoffs",
            "demo-escalated",
            {
                "intent": "escalate",
                "title": "ACME: site-to-site VPN down",
                "priority": "urgent",
                "engineer_notes": "Tunnel flaps every 5 minutes; needs a network admin.",
            },
        ),
        (
            "/v1/sessions/globex-printer/handoffs",
            "demo-parked",
            {"intent": "park", "title": "Globex: waiting for the customer's reboot window"},
        ),
    ]
    for path, key, body in requests:
        request = urllib.request.Request(
            api + path,
            data=json.dumps(body).encode(),
            method="POST",
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json",
                "Idempotency-Key": key,
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                response.read()
        except urllib.error.HTTPError as error:
            raise SystemExit(f"demo item {key!r}: {error.code} {error.read().decode()}") from None


def run(settings: Settings) -> None:
    state = settings.state_dir.resolve()
    (state / "logs").mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        database_url = settings.database_url or stack.enter_context(embedded_postgres(state / "pg"))
        settings = settings.model_copy(update={"database_url": database_url, "state_dir": state})
        env = {**os.environ, "DATABASE_URL": database_url, "ESCALATOR_STATE_DIR": str(state)}
        # A development stack posts webhooks to receivers on this machine: allowed here,
        # explicitly (everywhere else private destinations are refused).
        env.setdefault("ESCALATOR_WEBHOOK_ALLOW_PRIVATE", "true")
        # The API and the worker get the app role's login only, never the owner's.
        app_url = to_libpq_url(settings.async_app_database_url)
        app_env = {k: v for k, v in env.items() if k != "DATABASE_URL"}
        app_env["ESCALATOR_APP_DATABASE_URL"] = app_url
        children = Children(env, state / "logs")
        stack.callback(children.stop)

        children.start("temporal", *temporal_argv(settings))
        print("• migrating", flush=True)
        migrate(database_url)
        seeded_at = asyncio.run(seed(settings))
        print("• demo account seeded", flush=True)
        py = BIN / "python"
        sink = ("mailsink.py", "--port", str(settings.smtp_port), "--dir", state / "mail")
        children.start("mailsink", py, *sink)
        children.start("worker", py, "worker.py", env=app_env)
        children.start(
            "api",
            *(py, "-m", "uvicorn", "--factory", "api.app:create_app"),
            *("--host", settings.api_host, "--port", str(settings.api_port)),
            env=app_env,
        )
        api = f"http://{settings.api_host}:{settings.api_port}"
        ui = f"http://127.0.0.1:{settings.temporal_ui_port}"
        wait_http(f"{api}/health/ready", children)
        wait_http(ui, children)
        token = demo_token(settings)
        demo_items(api, token, seeded_at)
        write_down(settings, state)
        worker_metrics = (
            f"http://{settings.worker_metrics_host}:{settings.worker_metrics_port}/metrics"
            if settings.worker_metrics_port
            else "off"
        )
        signins = "\n".join(f"  {who:<26} {url}" for who, url in sign_in_links(settings))
        print(
            f"""
escalator is running.
  API          {api}   (docs: {api}/docs, health: {api}/health/ready)
  Temporal UI  {ui}
  Temporal     {settings.temporal_address}  namespace {settings.temporal_namespace}
  Postgres     {database_url}   (owner: migrations, CLIs)
               {app_url}   (app role: API, worker)
  Mail sink    smtp://{settings.smtp_host}:{settings.smtp_port}  (mails saved in {state}/mail)
  Metrics      {api}/metrics   (worker: {worker_metrics})
  Logs         {state}/logs

The queue is at {api}/ . Sign in with one of these (each works once, for 24 hours), or ask
for a link by mail at {api}/signin (it lands in the mail sink):
{signins}

A moving demo item reaches tier 2 about two minutes from now: watch the queue, or the
Temporal UI's list with the query EscalationTier = 2.

API tokens: `make token USER=ada@demo.escalator.test`; the demo owner's (7 days):
  {token}

Ctrl-C stops everything.""",
            flush=True,
        )
        while True:
            children.check()
            time.sleep(1)


def main() -> None:
    # Ctrl-C and SIGTERM both unwind the ExitStack, which stops every child. Set SIGINT
    # explicitly: a shell that starts us in the background would otherwise ignore it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        run(Settings())
    except KeyboardInterrupt:
        print("\nstopped.", flush=True)


if __name__ == "__main__":
    main()
