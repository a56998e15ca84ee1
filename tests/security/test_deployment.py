"""Deployment safety: secrets at rest, security headers, rate limits on the two password doors."""

from django.db import connection
from django.test import Client

from accounts import services


def test_passwords_and_tokens_are_hashed_at_rest(db, make_user):
    user = make_user("hana", password="correct-horse-battery-1")
    _, token = services.api_token_create(user=user, name="laptop")
    with connection.cursor() as cursor:
        cursor.execute("SELECT password FROM accounts_user WHERE username = %s", ["hana"])
        [(stored_password,)] = cursor.fetchall()
        cursor.execute("SELECT * FROM accounts_apitoken")
        token_rows = cursor.fetchall()
    assert "correct-horse-battery-1" not in stored_password and "$" in stored_password  # algorithm$...$hash
    assert token_rows and all(token not in str(row) for row in token_rows)
    assert all(token[-12:] not in str(row) for row in token_rows)  # not even a long suffix of it


def test_admin_pages_carry_security_headers(db):
    answer = Client().get("/admin/login/")
    assert answer.status_code == 200
    assert answer["X-Frame-Options"] == "DENY"
    assert answer["X-Content-Type-Options"] == "nosniff"
    assert answer["Referrer-Policy"] == "same-origin"
    assert answer["Cross-Origin-Opener-Policy"] == "same-origin"
    assert "csrftoken" in answer.cookies and answer.cookies["csrftoken"]["samesite"] == "Lax"


def test_admin_login_is_rate_limited(db, admin_user, settings):
    settings.ESD_LOGIN_RATE = "5/min"
    client = Client()
    statuses = [
        client.post("/admin/login/", {"username": "admin", "password": f"guess-{n}"}).status_code for n in range(7)
    ]
    assert statuses[:5] == [200] * 5  # the form again, with an error
    assert statuses[5:] == [429, 429]
    # the right password is refused too while the window lasts: guessing gains nothing
    assert client.post("/admin/login/", {"username": "admin", "password": "admin-pw-1"}).status_code == 429
    assert (
        Client(REMOTE_ADDR="10.1.2.3")
        .post("/admin/login/", {"username": "admin", "password": "admin-pw-1"})
        .status_code
        == 302
    )  # another address is not affected


def test_token_endpoint_is_rate_limited(esd, admin_user, settings):
    answers = [
        esd.call("POST", "auth/token", {"username": "admin", "password": f"guess-{n}"}).status for n in range(12)
    ]
    assert 429 in answers and answers.index(429) <= 10
