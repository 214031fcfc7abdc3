"""A real server on loopback over a store holding three tiny registered models and a key per role."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import pytest


@dataclass
class Service:
    url: str
    store: object
    keys: dict[str, str]  # role → key

    def client(self, role: str | None = None, **kwargs) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.keys[role]}"} if role else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60, **kwargs)


@pytest.fixture(scope="session")
def service(tmp_path_factory, gpt_run, cvae_run, ddpm_run):
    from genlab.service.app import create_app
    from genlab.service.engine import Limits
    from genlab.service.server import background_server
    from genlab.store import Store

    home = tmp_path_factory.mktemp("service")
    store = Store.open(home / "genlab.db")
    store.register_model(gpt_run, "gpt")
    store.register_model(cvae_run, "cvae")
    store.register_model(ddpm_run, "ddpm")
    keys = {role: store.create_key(role=role, user_id=f"{role}-user")[1] for role in ("admin", "editor", "viewer")}
    keys["editor2"] = store.create_key(role="editor", user_id="someone-else")[1]
    limits = Limits(max_n=8, max_steps=50, max_new_tokens=64, rate_per_minute=6000, burst=200, max_body_bytes=16384)
    app = create_app(store, limits=limits)
    with background_server(app) as url:
        yield Service(url, store, keys)
    store.close()
