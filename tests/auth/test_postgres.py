"""The authorization server's tables and statements on PostgreSQL (the scale-out store)."""

from __future__ import annotations

from pathlib import Path

import httpx

from gateway.app import create_app
from tests.auth.conftest import BIOBANK, PASSWORD, REDIRECT, Gateway, pkce
from tests.conftest import PgDatabases, make_settings


async def test_backend_and_app_flows_with_reuse_and_revocation_on_postgresql(pg_databases: PgDatabases,
                                                                             tmp_path: Path) -> None:
    app = create_app(make_settings(await pg_databases.create(), tmp_path, auth_disabled=False))
    async with app.router.lifespan_context(app):
        await app.state.services.store.put_many(BIOBANK)
        await app.state.auth.server.registry.add_user("alice", PASSWORD, "staff")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as http:
            gateway = Gateway(http, app)
            system = await gateway.system_token("system/Specimen.rs")
            assert (await gateway.get("/fhir/Specimen/s1", system)).status_code == 200
            client_id, _ = await gateway.app_client()
            tokens = await gateway.launch_tokens(client_id)
            assert (await gateway.get("/fhir/Specimen/s2", tokens["access_token"])).status_code == 404
            rotated = await gateway.token_request(grant_type="refresh_token", client_id=client_id,
                                                  refresh_token=tokens["refresh_token"])
            assert rotated.status_code == 200
            reuse = await gateway.token_request(grant_type="refresh_token", client_id=client_id,
                                                refresh_token=tokens["refresh_token"])
            assert reuse.json()["error"] == "invalid_grant"
            assert (await gateway.get("/fhir/Specimen/s1", rotated.json()["access_token"])).status_code == 401
            verifier, challenge = pkce()
            code = await gateway.code(client_id, challenge, "launch/patient patient/*.rs")
            form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                    "code_verifier": verifier, "client_id": client_id}
            assert (await gateway.token_request(**form)).status_code == 200
            assert (await gateway.token_request(**form)).json()["error"] == "invalid_grant"
