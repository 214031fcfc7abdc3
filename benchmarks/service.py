"""A load test of `genlab serve` on loopback: throughput, latency, errors, and that nothing is lost.

    .venv/bin/python benchmarks/service.py                          # 50 clients for 60 s, about 2 minutes
    .venv/bin/python benchmarks/service.py --clients 10 --seconds 10 --json /tmp/service.json   # smoke test

The script makes a fresh store in a temporary folder (or ``--workdir``), trains a tiny text GPT
(``gpt-tiny``) and a tiny class-conditional image model (``vae-tiny num_classes=10``, or ``ddpm-tiny``
with ``--image-recipe``) unless ``--runs`` gives run directories, registers them with ``genlab
register``, creates an admin key with ``genlab keys create`` and, through ``POST /v1/keys``, one editor
key per simulated user and a viewer key. It starts ``genlab serve`` as a subprocess (client and server
do not share a GIL; they do share the machine's cores), with a rate limit far above what the clients
can send, its stdout and stderr in ``WORKDIR/server.log``.

After one warm-up request per model (model loads and the text embedder are not what is measured),
``--clients`` asyncio clients, each with its own ``httpx.AsyncClient`` (one keep-alive connection) and
editor key, send requests back to back for ``--seconds``: text generation (16 new tokens), image
generation (n 1–4, half with a class label), search (keyword / vector / hybrid over words from earlier
outputs), listing their generations, and feedback on their own generations, drawn by ``--weights``.
Every request's kind, status and latency is recorded; latencies are over every answered request.

Afterwards it checks that nothing was lost: each generation id returned by an accepted (200) generate
is fetched back through ``GET /v1/generations/{id}`` (admin key) and read straight from the database
(``Store.open``, image files checked against their hashes); the store holds exactly the accepted
generations and feedback, and a viewer key is refused generation and other users' generations. It
scrapes ``/metrics`` for the image batching figures, stops the server with SIGINT, checks its exit
status, and counts the store again once the server is gone (the usage log included).

Writes every number to benchmarks/results/service.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import vae  # the sibling benchmark: machine note, command line

ROOT = vae.ROOT
JSON_OUT = ROOT / "benchmarks" / "results" / "service.json"
KINDS = ("text", "image", "search", "list", "feedback")
DEFAULT_WEIGHTS = "text=15,image=15,search=25,list=15,feedback=30"
SEED_WORDS = ("the", "king", "love", "night", "lord", "sweet", "death", "heart", "thou", "good")
TEXT_MODEL, IMAGE_MODEL = "gpt", "image"  # the names they are registered under


# --- setup ------------------------------------------------------------------------------------------
def parse_weights(text: str) -> dict[str, float]:
    weights = {}
    for part in text.split(","):
        kind, _, value = part.partition("=")
        if kind.strip() not in KINDS:
            raise SystemExit(f"--weights: unknown request kind {kind.strip()!r}; use {', '.join(KINDS)}.")
        weights[kind.strip()] = float(value)
    if sum(weights.values()) <= 0:
        raise SystemExit("--weights: give at least one positive weight.")
    return {k: weights.get(k, 0.0) for k in KINDS}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--clients", type=int, default=50, help="concurrent clients, one editor key each (50)")
    p.add_argument("--seconds", type=float, default=60.0, help="how long the clients send requests (60)")
    p.add_argument("--weights", type=parse_weights, default=parse_weights(DEFAULT_WEIGHTS),
                   help=f"request mix, kind=weight ({DEFAULT_WEIGHTS})")  # fmt: skip
    p.add_argument(
        "--runs",
        nargs=2,
        type=Path,
        metavar=("TEXT_RUN", "IMAGE_RUN"),
        help="existing run directories (a text model, a class-conditional image model); default: train",
    )
    p.add_argument("--image-recipe", choices=("vae-tiny", "ddpm-tiny"), default="vae-tiny",
                   help="the image model to train: a class-conditional VAE (vae-tiny, milliseconds a sample\n"
                        "call) or DDPM (ddpm-tiny, 100 denoising steps: slower calls, more batching)")  # fmt: skip
    p.add_argument("--workdir", type=Path, help="where the store, runs and server log go (default: a temp dir)")
    p.add_argument("--max-new-tokens", type=int, default=16, help="tokens per text generation (16)")
    p.add_argument("--max-image-n", type=int, default=4, help="images per request drawn from 1..N (4)")
    p.add_argument("--rate", type=float, default=1e6, help="the server's per-key rate limit, per minute (1e6)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds before a request counts as lost (120)")
    p.add_argument("--seed", type=int, default=0, help="the clients' random choices (0)")
    p.add_argument("--threads", type=int, help="the server's torch threads per operation (default: torch's)")
    p.add_argument("--json", type=Path, default=JSON_OUT, help="results file (benchmarks/results/service.json)")
    return p.parse_args()


def genlab_cli(*args: str, cwd: Path) -> str:
    """Run ``genlab ARGS`` (this interpreter's) and return its stdout; exits on failure."""
    done = subprocess.run([sys.executable, "-m", "genlab.cli", *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"`genlab {' '.join(args)}` failed ({done.returncode}):\n{done.stderr}")
    return done.stdout


def prepare_runs(args: argparse.Namespace, work: Path) -> tuple[Path, Path]:
    if args.runs:
        return args.runs[0].resolve(), args.runs[1].resolve()
    text_run, image_run = work / "runs" / "gpt", work / "runs" / args.image_recipe
    if not (text_run / "model.safetensors").exists():
        print("training gpt-tiny ...", flush=True)
        genlab_cli("train", "gpt-tiny", "--out", str(text_run), "--device", "cpu", cwd=work)
    if not (image_run / "model.safetensors").exists():
        print(f"training {args.image_recipe} (10 classes) ...", flush=True)
        genlab_cli("train", args.image_recipe, "num_classes=10", "--out", str(image_run), "--device", "cpu", cwd=work)
    return text_run, image_run


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(args: argparse.Namespace, work: Path, db: Path, port: int) -> tuple[subprocess.Popen, Path]:
    log = work / "server.log"
    command = [sys.executable, "-m", "genlab.cli", "serve", "--db", str(db), "--port", str(port),
               "--device", "cpu", "--rate", str(args.rate), "--max-n", str(max(16, args.max_image_n)),
               "--log-level", "warning"]  # fmt: skip
    if args.threads is not None:
        command += ["--threads", str(args.threads)]
    with log.open("w") as out:  # the child keeps its own descriptor
        proc = subprocess.Popen(command, cwd=work, stdout=out, stderr=subprocess.STDOUT)
    return proc, log


def wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120.0) -> float:
    """Seconds until ``/healthz`` answers 200; exits if the server dies or never answers."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return time.perf_counter() - start
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"the server did not answer /healthz within {timeout:.0f} s:\n{log.read_text()}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- the clients --------------------------------------------------------------------------------------
@dataclass
class Sample:
    kind: str
    status: int  # 0: no answer (timeout or connection error)
    seconds: float
    done_at: float  # perf_counter when the answer came
    variant: str = ""  # the search mode, or whether an image request had a label


@dataclass
class Shared:
    """What the clients learn as they go; one event loop, so no locks."""

    words: deque = field(default_factory=lambda: deque(SEED_WORDS, maxlen=500))
    generations: dict[int, str] = field(default_factory=dict)  # accepted generation id → user
    image_ids: set[int] = field(default_factory=set)
    feedback: dict[int, int] = field(default_factory=dict)  # feedback id → generation id
    samples: list[Sample] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)  # transport error types
    bodies_5xx: list[str] = field(default_factory=list)

    def learn(self, body: dict[str, Any], user: str) -> None:
        for g in body["generations"]:
            self.generations[g["id"]] = user
            if g["kind"] == "image":
                self.image_ids.add(g["id"])
            self.words.extend(re.findall(r"[A-Za-z]{3,}", g.get("text") or "")[:5])


class Client:
    """One simulated user: an editor key, one keep-alive connection, requests back to back."""

    def __init__(self, url: str, key: str, user: str, shared: Shared, args: argparse.Namespace, seed: int) -> None:
        self.http = httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=args.timeout,
                                      limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))  # fmt: skip
        self.user, self.shared, self.args = user, shared, args
        self.rng = random.Random(seed)
        self.own: list[int] = []

    async def run(self, deadline: float) -> None:
        kinds, weights = list(self.args.weights), list(self.args.weights.values())
        async with self.http:
            while time.perf_counter() < deadline:
                kind = self.rng.choices(kinds, weights)[0]
                if kind == "feedback" and not self.own:
                    kind = "text"  # nothing of one's own to rate yet
                await self.request(kind)

    async def request(self, kind: str) -> dict[str, Any] | None:
        method, path, options = self.plan(kind)
        variant = options.get("params", {}).get("mode", "") if kind == "search" else ""
        if kind == "image":
            variant = "labelled" if "labels" in options["json"] else "unlabelled"
        start = time.perf_counter()
        try:
            response = await self.http.request(method, path, **options)
        except httpx.HTTPError as exc:
            now = time.perf_counter()
            self.shared.samples.append(Sample(kind, 0, now - start, now, variant))
            self.shared.errors[f"{kind}: {type(exc).__name__}"] += 1
            return None
        now = time.perf_counter()
        self.shared.samples.append(Sample(kind, response.status_code, now - start, now, variant))
        if response.status_code >= 500:
            self.shared.bodies_5xx.append(f"{method} {path} {options.get('json') or options.get('params')} → "
                                          f"{response.status_code} {response.text[:300]}")  # fmt: skip
        if not response.is_success:
            return None
        body = response.json()
        if kind in ("text", "image"):
            self.shared.learn(body, self.user)
            self.own.extend(g["id"] for g in body["generations"])
        elif kind == "feedback":
            self.shared.feedback[body["id"]] = body["generation_id"]
        return body

    def plan(self, kind: str) -> tuple[str, str, dict[str, Any]]:
        """The method, path and httpx options of one request of ``kind``."""
        rng, words = self.rng, self.shared.words
        if kind == "text":
            prompt = " ".join(rng.choice(words) for _ in range(rng.randint(1, 3)))
            body = {"model": TEXT_MODEL, "prompt": prompt, "parameters": {"max_new_tokens": self.args.max_new_tokens}}
            return "POST", "/v1/generate", {"json": body}
        if kind == "image":
            body = {"model": IMAGE_MODEL, "n": rng.randint(1, self.args.max_image_n)}
            if rng.random() < 0.5:
                body["labels"] = [rng.randrange(10)]
            return "POST", "/v1/generate", {"json": body}
        if kind == "search":
            params = {"q": rng.choice(words), "mode": rng.choice(("keyword", "vector", "hybrid")), "k": 10}
            return "GET", "/v1/search", {"params": params}
        if kind == "list":
            return "GET", "/v1/generations", {"params": {"limit": 20, "kind": rng.choice(("text", "image"))}}
        if kind == "feedback":
            body = {"generation_id": rng.choice(self.own), "rating": rng.randint(1, 5)}
            if rng.random() < 0.3:
                body["comment"] = f"{rng.choice(words)} {rng.choice(words)}"
            return "POST", "/v1/feedback", {"json": body}
        raise ValueError(f"unknown request kind {kind!r}; use one of {KINDS}.")


async def create_keys(url: str, admin: str, clients: int) -> tuple[list[tuple[str, str]], str]:
    """(user, key) of each client's editor key, and a viewer key, made through the API."""
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {admin}"}, timeout=60) as http:

        async def make(role: str, user: str) -> str:
            response = await http.post("/v1/keys", json={"role": role, "user_id": user})
            response.raise_for_status()
            return response.json()["key"]

        users = [f"bench-user-{i:03d}" for i in range(clients)]
        editors = [await make("editor", u) for u in users]
        return list(zip(users, editors, strict=True)), await make("viewer", "bench-viewer")


async def warm_up(url: str, key: str, shared: Shared, args: argparse.Namespace) -> dict[str, float]:
    """One request of each generating kind, so model loads are not measured; their latency in ms."""
    client = Client(url, key, "bench-user-000", shared, args, seed=-1)
    seconds = {}
    async with client.http:
        for kind in ("text", "image"):
            start = time.perf_counter()
            if await client.request(kind) is None:
                raise SystemExit(f"the warm-up {kind} request failed: {shared.samples[-1]}")
            seconds[kind] = round((time.perf_counter() - start) * 1000, 1)
    shared.samples.clear()
    return seconds


async def load(url: str, keys: list[tuple[str, str]], shared: Shared, args: argparse.Namespace) -> float:
    """Run the clients for ``args.seconds``; the wall seconds until the last answer came."""
    clients = [Client(url, key, user, shared, args, seed=args.seed * 1000 + i) for i, (user, key) in enumerate(keys)]
    start = time.perf_counter()
    await asyncio.gather(*(c.run(start + args.seconds) for c in clients))
    return time.perf_counter() - start


# --- checks -------------------------------------------------------------------------------------------
async def fetch_back(url: str, admin: str, viewer: str, shared: Shared) -> dict[str, Any]:
    """Every accepted generation through the API (admin key), and what a viewer key may not do."""
    statuses: Counter = Counter()
    mismatched = []
    gate = asyncio.Semaphore(8)
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {admin}"}, timeout=60) as http:

        async def one(gid: int, user: str) -> None:
            async with gate:
                response = await http.get(f"/v1/generations/{gid}")
            statuses[response.status_code] += 1
            if response.status_code == 200 and response.json()["user_id"] != user:
                mismatched.append(gid)

        await asyncio.gather(*(one(gid, user) for gid, user in shared.generations.items()))
        metrics_text = (await http.get("/metrics")).text
    some_id = min(shared.generations)
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {viewer}"}, timeout=60) as http:
        access = {
            "viewer_generate": (await http.post("/v1/generate", json={"model": TEXT_MODEL, "prompt": "a"})).status_code,
            "viewer_get_others": (await http.get(f"/v1/generations/{some_id}")).status_code,
            "viewer_search": (await http.get("/v1/search", params={"q": "the"})).status_code,
        }
    api = {"fetched": sum(statuses.values()), "status": dict(statuses), "wrong_user": mismatched}
    return {"api": api, "access": access, "metrics_text": metrics_text}


def store_counts(db: Path, shared: Shared, *, files: bool) -> dict[str, Any]:
    """Read the database directly: the generations and feedback there against the accepted ones."""
    from sqlalchemy import func, select

    from genlab.store import Store
    from genlab.store.schema import FeedbackRow, GenerationRow, UsageRow

    with Store.open(db, embed=False) as store, store.session() as s:
        generation_ids = set(s.scalars(select(GenerationRow.id)))
        feedback = {i: g for i, g in s.execute(select(FeedbackRow.id, FeedbackRow.generation_id))}
        usage_rows = s.scalar(select(func.count()).select_from(UsageRow))
    counts = {
        "generations_in_store": len(generation_ids),
        "generations_accepted": len(shared.generations),
        "accepted_missing_from_store": sorted(set(shared.generations) - generation_ids),
        "in_store_not_accepted": sorted(generation_ids - set(shared.generations)),
        "feedback_in_store": len(feedback),
        "feedback_accepted": len(shared.feedback),
        "feedback_mismatched": sorted(i for i in shared.feedback if feedback.get(i) != shared.feedback[i]),
        "feedback_not_accepted": sorted(set(feedback) - set(shared.feedback)),
        "usage_rows": usage_rows,
    }
    if files:
        counts["image_files_bad"] = image_files_bad(db, shared.image_ids)
    return counts


def image_files_bad(db: Path, ids: set[int]) -> list[str]:
    """Image generations whose file is missing or does not match its recorded hash."""
    from genlab.errors import GenlabError
    from genlab.store import Store

    bad = []
    with Store.open(db, embed=False) as store:
        for gid in sorted(ids):
            try:
                store.media_path(store.get_generation(gid))
            except GenlabError as exc:
                bad.append(f"{gid}: {exc}")
    return bad


def batching(metrics_text: str) -> dict[str, Any]:
    from prometheus_client.parser import text_string_to_metric_families

    values, server_5xx = {}, 0
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name.endswith(("_batches", "_batched_requests")):
                values[sample.name] = int(sample.value)
            if sample.name == "genlab_requests_total" and sample.labels.get("status", "").startswith("5"):
                server_5xx += int(sample.value)
    out: dict[str, Any] = {"server_5xx_in_metrics": server_5xx}
    for kind in ("image", "text"):
        batches, requests = values.get(f"genlab_{kind}_batches", 0), values.get(f"genlab_{kind}_batched_requests", 0)
        out[kind] = {"batches": batches, "requests": requests,
                     "mean_requests_per_batch": round(requests / batches, 3) if batches else None}  # fmt: skip
    return out


def stop_server(proc: subprocess.Popen, log: Path) -> dict[str, Any]:
    """SIGINT, as Ctrl-C would; the exit status, the seconds it took, and the tracebacks in the log."""
    start = time.perf_counter()
    proc.send_signal(signal.SIGINT)
    try:
        code = proc.wait(timeout=60)
        clean = code == 0
    except subprocess.TimeoutExpired:
        proc.kill()
        code, clean = proc.wait(), False
    text = log.read_text(errors="replace")
    tracebacks = text.count("Traceback (most recent call last)")
    return {"exit_code": code, "clean_exit": clean, "stop_seconds": round(time.perf_counter() - start, 2),
            "log": str(log), "tracebacks_in_log": tracebacks,
            "log_tail": text[-3000:] if tracebacks else ""}  # fmt: skip


# --- report ---------------------------------------------------------------------------------------------
def status_counts(samples: list[Sample]) -> dict[str, int]:
    codes = [s.status for s in samples]
    return {"2xx": sum(200 <= c < 300 for c in codes), "4xx": sum(400 <= c < 500 and c != 429 for c in codes),
            "429": codes.count(429), "5xx": sum(c >= 500 for c in codes), "no_answer": codes.count(0)}  # fmt: skip


def figures(samples: list[Sample], elapsed: float) -> dict[str, Any]:
    ms = np.array([s.seconds * 1000 for s in samples if s.status])
    p50, p95, p99 = np.percentile(ms, [50, 95, 99]) if len(ms) else (float("nan"),) * 3
    return {"requests": len(samples), "per_second": round(len(samples) / elapsed, 2),
            "p50_ms": round(p50, 1), "p95_ms": round(p95, 1), "p99_ms": round(p99, 1),
            "max_ms": round(float(ms.max()), 1) if len(ms) else None, **status_counts(samples)}  # fmt: skip


def summarise(samples: list[Sample], elapsed: float) -> dict[str, Any]:
    """Figures per kind, per kind and variant (``search/vector``), and for all requests."""
    by_kind = {}
    for kind in KINDS:
        mine = [s for s in samples if s.kind == kind]
        if mine:
            by_kind[kind] = figures(mine, elapsed)
        for variant in sorted({s.variant for s in mine} - {""}):
            by_kind[f"{kind}/{variant}"] = figures([s for s in mine if s.variant == variant], elapsed)
    by_kind["all"] = figures(samples, elapsed)
    done = sorted(s.done_at for s in samples)
    gap = max(np.diff(done), default=0.0) if len(done) > 1 else 0.0
    return {"elapsed_s": round(elapsed, 2), "by_kind": by_kind, "longest_silence_s": round(float(gap), 3)}


def table(r: dict[str, Any]) -> list[str]:
    lines = ["| kind | requests | req/s | p50 ms | p95 ms | p99 ms | 2xx | 4xx | 429 | 5xx | no answer |",
             "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]  # fmt: skip
    for kind, k in r["load"]["by_kind"].items():
        name = f"**{kind}**" if kind == "all" else kind
        lines.append(
            f"| {name} | {k['requests']:,} | {k['per_second']:.1f} | {k['p50_ms']:.0f} | {k['p95_ms']:.0f} "
            f"| {k['p99_ms']:.0f} | {k['2xx']:,} | {k['4xx']} | {k['429']} | {k['5xx']} | {k['no_answer']} |"
        )
    return lines


def losses(r: dict[str, Any]) -> list[str]:
    """The integrity checks that failed; empty when nothing was lost."""
    after, serving, api = r["store_after_stop"], r["store_while_serving"], r["fetch_back"]
    checks = {
        "an accepted generation is missing from the store": after["accepted_missing_from_store"],
        "the store holds generations no client was answered with": after["in_store_not_accepted"],
        "an accepted generation was not fetched back": api["status"].get(200, 0) != after["generations_accepted"],
        "a generation came back with another user": api["wrong_user"],
        "feedback missing, extra or changed": after["feedback_mismatched"]
        or after["feedback_not_accepted"]
        or after["feedback_in_store"] != after["feedback_accepted"],
        "an image file is missing or altered": serving["image_files_bad"],
        "usage rows lost": after["usage_rows"] != r["usage_rows_expected"],
    }
    return [name for name, failed in checks.items() if failed]


def verdicts(r: dict[str, Any]) -> list[str]:
    after, api, b = r["store_after_stop"], r["fetch_back"], r["batching"]
    lost = "yes" if not r["lost"] else "NO: " + "; ".join(r["lost"])
    five = r["load"]["by_kind"]["all"]["5xx"]
    return [
        f"- 5xx: **{five}** ({'goal met' if five == 0 else 'goal missed; see the server log'}); server-side count "
        f"in /metrics: {b['server_5xx_in_metrics']}",
        f"- nothing lost: **{lost}** — {after['generations_accepted']:,} generations accepted, "
        f"{api['status'].get(200, 0):,} fetched back (200), {after['generations_in_store']:,} in the store after the "
        f"server stopped; {after['feedback_accepted']:,} feedback accepted, {after['feedback_in_store']:,} stored; "
        f"{after['usage_rows']:,} usage rows for {r['usage_rows_expected']:,} keyed requests answered",
        f"- batching: image {b['image']['requests']:,} requests in {b['image']['batches']:,} sample calls "
        f"(mean {b['image']['mean_requests_per_batch']} a call), text {b['text']['requests']:,} requests in "
        f"{b['text']['batches']:,} decoding loops (mean {b['text']['mean_requests_per_batch']} a loop)",
        f"- access: viewer generate → {r['access']['viewer_generate']}, viewer reads another user's generation → "
        f"{r['access']['viewer_get_others']}, viewer search → {r['access']['viewer_search']}",
        f"- server: SIGINT → exit {r['server']['exit_code']} in {r['server']['stop_seconds']} s, "
        f"{r['server']['tracebacks_in_log']} traceback(s) in {r['server']['log']}",
        f"- CPU: {r['machine']['cpus']} logical CPUs shared by client and server; over the load the server used "
        f"{r['load']['server_cores']:.2f} cores, the client {r['load']['client_cores']:.2f}, other processes "
        f"{r['load']['other_processes_cores']:.2f}",
    ]


def machine() -> dict[str, Any]:
    """CPU model and versions; the torch-thread part of the sibling's note does not apply to two processes."""
    import fastapi
    import uvicorn

    note = vae.machine_note(0).split("`torch.set_num_threads(0)`; ")
    versions = f"{note[1]}, fastapi {fastapi.__version__}, uvicorn {uvicorn.__version__}, httpx {httpx.__version__}"
    return {"note": f"{note[0].rstrip(', ')}; {versions}", "cpus": os.cpu_count(),
            "shared_cores": "client and server run on this machine and share its cores"}  # fmt: skip


# --- main -------------------------------------------------------------------------------------------------
def setup(args: argparse.Namespace, work: Path) -> tuple[Path, str, subprocess.Popen, Path, str]:
    text_run, image_run = prepare_runs(args, work)
    db = work / "store" / "genlab.db"
    genlab_cli("register", str(text_run), "--name", TEXT_MODEL, "--db", str(db), cwd=work)
    genlab_cli("register", str(image_run), "--name", IMAGE_MODEL, "--db", str(db), cwd=work)
    admin = genlab_cli("keys", "create", "--role", "admin", "--user", "bench-admin", "--db", str(db), cwd=work).strip()
    port = free_port()
    proc, log = start_server(args, work, db, port)
    return db, admin, proc, log, f"http://127.0.0.1:{port}"


def measure(args: argparse.Namespace, url: str, admin: str, proc: subprocess.Popen, db: Path) -> dict[str, Any]:
    r: dict[str, Any] = {}
    keys, viewer = asyncio.run(create_keys(url, admin, args.clients))
    shared = Shared()
    r["warm_up_ms"] = asyncio.run(warm_up(url, keys[0][1], shared, args))
    print(f"load: {args.clients} clients for {args.seconds:g} s ...", flush=True)
    server_cpu, client_cpu, all_cpu = cpu_seconds(proc.pid), time.process_time(), vae.system_busy_s()
    elapsed = asyncio.run(load(url, keys, shared, args))
    r["load"] = summarise(shared.samples, elapsed)
    r["load"]["server_cores"] = (cpu_seconds(proc.pid) - server_cpu) / elapsed
    r["load"]["client_cores"] = (time.process_time() - client_cpu) / elapsed
    others = (vae.system_busy_s() - all_cpu) / elapsed - r["load"]["server_cores"] - r["load"]["client_cores"]
    r["load"]["other_processes_cores"] = max(0.0, others)  # on a shared machine, what else ran meanwhile
    r["load"]["transport_errors"] = dict(shared.errors)
    r["load"]["bodies_5xx"] = shared.bodies_5xx[:20]
    print("checking that nothing was lost ...", flush=True)
    checks = asyncio.run(fetch_back(url, admin, viewer, shared))
    r["fetch_back"], r["access"] = checks["api"], checks["access"]
    r["batching"] = batching(checks["metrics_text"])
    r["store_while_serving"] = store_counts(db, shared, files=True)
    answered = sum(1 for sample in shared.samples if sample.status)  # every keyed request leaves one usage row
    keys_made, scrape_and_viewer = args.clients + 1, 4
    fetched = r["fetch_back"]["fetched"]
    r["usage_rows_expected"] = keys_made + len(r["warm_up_ms"]) + answered + fetched + scrape_and_viewer
    r["shared"] = shared
    return r


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="genlab-service-bench-") as tmp:
        work = (args.workdir or Path(tmp)).resolve()
        work.mkdir(parents=True, exist_ok=True)
        db, admin, proc, log, url = setup(args, work)
        try:
            startup = wait_healthy(url, proc, log)
            r = measure(args, url, admin, proc, db)
        finally:
            server = stop_server(proc, log)
        shared = r.pop("shared")
        r["store_after_stop"] = store_counts(db, shared, files=False)
        r["lost"] = losses(r)
        r["server"], r["server"]["startup_s"] = server, round(startup, 2)
        now = datetime.datetime.now(datetime.timezone.utc)
        r["command"], r["date"] = vae.command_line(), f"{now:%Y-%m-%d %H:%M} UTC"
        r["machine"] = machine()
        r["config"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                       if k not in ("json", "runs")} | {"workdir": str(work)}  # fmt: skip
        report(args, r)


def report(args: argparse.Namespace, r: dict[str, Any]) -> None:
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(r, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"\n## Service load test: {args.clients} clients × {args.seconds:g} s on loopback\n")
    print(f"Command: `{r['command']}`  \nDate: {r['date']}  \nMachine: {r['machine']['note']}; client and server "
          f"share the {r['machine']['cpus']} cores  \nWarm-up (model load) ms: {r['warm_up_ms']}\n")  # fmt: skip
    print("\n".join(table(r)))
    print()
    print("\n".join(verdicts(r)))
    if r["server"]["tracebacks_in_log"]:
        print(f"\nserver log tail:\n{r['server']['log_tail']}")
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
