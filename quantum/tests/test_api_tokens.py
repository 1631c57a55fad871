"""Personal API tokens: shown once, stored hashed, scoped, revocable, managed on a page."""

from __future__ import annotations

import hashlib

import pytest
import yaml
from django.db import connection
from django.test import Client

from quantum.models import ApiToken
from quantum.tests.auth_helpers import bearer_client, mfa_pass, totp_activate


def create(client: Client, name: str = "laptop", scope: str = "read"):  # type: ignore[no-untyped-def]
    return client.post("/settings/tokens/", {"name": name, "scope": scope})


def secret_in(response) -> str:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.content
    return response.context["secret"]


def test_a_new_token_is_shown_once_and_stored_only_as_a_hash(carol, client_as) -> None:  # type: ignore[no-untyped-def]
    client = client_as(carol)
    response = create(client)
    secret = secret_in(response)
    assert secret.startswith("qt_") and len(secret) > 40
    assert secret in response.content.decode()
    assert response["Cache-Control"] == "no-store"

    token = ApiToken.objects.get()
    assert token.key_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret.startswith(token.prefix) and len(token.prefix) == 11
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM quantum_apitoken")
        assert not any(secret in str(value) for row in cursor.fetchall() for value in row)

    listing = client.get("/settings/tokens/").content.decode()
    assert f"{token.prefix}…" in listing
    assert secret not in listing


def test_a_token_authenticates_and_records_its_last_use(carol, client_as, market) -> None:  # type: ignore[no-untyped-def]
    secret = secret_in(create(client_as(carol)))
    assert ApiToken.objects.get().last_used_at is None
    response = Client(HTTP_AUTHORIZATION=f"Bearer {secret}").get("/api/v1/markets/")
    assert response.status_code == 200
    assert response.json()["results"][0]["symbol"] == "BTC/USDT"
    assert ApiToken.objects.get().last_used_at is not None


def test_a_revoked_token_is_refused(carol, client_as) -> None:  # type: ignore[no-untyped-def]
    page = client_as(carol)
    secret = secret_in(create(page))
    token = ApiToken.objects.get()
    api = Client(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert api.get("/api/v1/markets/").status_code == 200

    assert page.post(f"/settings/tokens/{token.pk}/revoke").status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None
    response = api.get("/api/v1/markets/")
    assert response.status_code == 401
    assert response.json()["detail"] == "invalid or revoked token"
    assert "revoked" in page.get("/settings/tokens/").content.decode()


def test_nobody_revokes_another_users_token(carol, bob, client_as) -> None:  # type: ignore[no-untyped-def]
    secret_in(create(client_as(carol)))
    token = ApiToken.objects.get()
    assert client_as(bob).post(f"/settings/tokens/{token.pk}/revoke").status_code == 404
    token.refresh_from_db()
    assert token.revoked_at is None


def test_a_viewer_cannot_make_a_trade_token(carol, client_as) -> None:  # type: ignore[no-untyped-def]
    response = create(client_as(carol), scope="trade")
    assert response.status_code == 400
    assert "needs the trader role" in response.content.decode()
    assert not ApiToken.objects.exists()


def test_an_operate_token_needs_mfa_in_the_session(alice, client_as) -> None:  # type: ignore[no-untyped-def]
    client = client_as(alice, mfa=False)
    refused = create(client, scope="operate")
    assert refused.status_code == 400
    assert "multi-factor" in refused.content.decode()
    assert not ApiToken.objects.exists()
    totp_activate(alice)
    mfa_pass(client, alice)
    secret_in(create(client, scope="operate"))
    assert ApiToken.objects.get().scope == "operate"


@pytest.mark.parametrize(
    "header", ["Bearer", "Bearer a b", "Bearer qt_unknown", "Bearer not-ours", "Token qt_x"]
)
def test_a_malformed_or_unknown_bearer_is_refused(header, carol) -> None:  # type: ignore[no-untyped-def]
    assert Client(HTTP_AUTHORIZATION=header).get("/api/v1/markets/").status_code == 401


def test_the_schema_documents_bearer_tokens_and_mutation_examples(carol) -> None:  # type: ignore[no-untyped-def]
    schema = yaml.safe_load(bearer_client(carol).get("/api/schema/").content)
    assert schema["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    create_order = schema["paths"]["/api/v1/orders/"]["post"]
    assert "buy on paper" in str(create_order["requestBody"]["content"]["application/json"])
    assert "/api/v1/orders/{id}/cancel/" in schema["paths"]
    assert "/api/v1/accounts/{id}/strategy/" in schema["paths"]
    killswitch = schema["paths"]["/api/v1/risk/killswitch/"]["post"]
    assert "examples" in killswitch["requestBody"]["content"]["application/json"]
    orders = schema["paths"]["/api/v1/orders/"]["get"]
    assert {"account", "status", "page_size"} <= {p["name"] for p in orders["parameters"]}
