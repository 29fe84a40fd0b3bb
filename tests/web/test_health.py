"""GET /healthz: JSON status of the database and Redis; 503 when either is down."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from dispatch.redis_conn import connect
from dispatch.services import Services
from rapidresponse.db import Database


def test_healthy_when_both_answer(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {
        "status": "ok",
        "database": "ok",
        "redis": "ok",
        "spooled_texts": 0,
        "status_callbacks_waiting": 0,
    }
    assert response.headers["Cache-Control"] == "no-store"


def test_503_when_redis_is_down(app: Flask, services: Services) -> None:
    services.redis = connect("redis://127.0.0.1:1/0")  # nothing listens on port 1
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.json == {
        "status": "unavailable",
        "database": "ok",
        "redis": "down",
        "spooled_texts": 0,
        "status_callbacks_waiting": None,  # Redis cannot say
    }


def test_503_when_the_database_is_down(app: Flask, services: Services) -> None:
    working = services.database
    services.database = Database("postgresql+psycopg://nobody@127.0.0.1:1/none")
    try:
        response = app.test_client().get("/healthz")
    finally:
        services.database.dispose()
        services.database = working
    assert response.status_code == 503
    assert response.json == {
        "status": "unavailable",
        "database": "down",
        "redis": "ok",
        "spooled_texts": 0,
        "status_callbacks_waiting": 0,
    }
