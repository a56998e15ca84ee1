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


def test_a_rotating_forwarded_for_gets_no_fresh_bucket(esd, admin_user, settings):
    # Issue 26.11: DRF's throttle read X-Forwarded-For as the client: 40 guesses with rotating values, never a 429.
    answers = [
        esd.call(
            "POST", "auth/token", {"username": "admin", "password": f"guess-{n}"},
            headers={"X-Forwarded-For": f"198.51.100.{n}"},
        ).status
        for n in range(12)
    ]  # fmt: skip
    assert answers[10:] == [429, 429]
    admin = Client(headers={"X-Forwarded-For": "198.51.100.77"})
    settings.ESD_LOGIN_RATE = "3/min"
    login = [admin.post("/admin/login/", {"username": "admin", "password": f"g{n}"}).status_code for n in range(4)]
    assert login[3] == 429


def forwarded(client_ip, proxy="10.0.0.5", spoofed="203.0.113.9"):
    # what the client wrote itself, then what the proxy appended: the address it saw
    return Client(REMOTE_ADDR=proxy, headers={"X-Forwarded-For": f"{spoofed}, {client_ip}"})


def test_behind_a_trusted_proxy_each_client_has_its_own_bucket(db, admin_user, settings):
    settings.ESD_TRUSTED_PROXIES = ["10.0.0.0/8"]
    settings.ESD_LOGIN_RATE = "3/min"
    guesser = [
        forwarded("192.0.2.1").post("/admin/login/", {"username": "admin", "password": f"g{n}"}).status_code
        for n in range(4)
    ]
    assert guesser == [200, 200, 200, 429]
    # another client behind the same proxy is not locked out (one bucket per proxy locked out everyone)
    assert (
        forwarded("192.0.2.2").post("/admin/login/", {"username": "admin", "password": "admin-pw-1"}).status_code == 302
    )
    # the client's own X-Forwarded-For entries left of the proxy's are not believed: the guesser stays limited
    spoofing = forwarded("192.0.2.1", spoofed="192.0.2.200")
    assert spoofing.post("/admin/login/", {"username": "admin", "password": "g"}).status_code == 429
    # a peer that is no trusted proxy is the client, whatever it forwards
    untrusted = [
        forwarded("192.0.2.3", proxy="172.16.0.9").post("/admin/login/", {"username": "admin", "password": f"u{n}"})
        for n in range(4)
    ]
    assert untrusted[3].status_code == 429
    assert forwarded("192.0.2.4", proxy="172.16.0.9").post("/admin/login/", {"username": "admin"}).status_code == 429


def test_token_endpoint_is_rate_limited(esd, admin_user, settings):
    answers = [
        esd.call("POST", "auth/token", {"username": "admin", "password": f"guess-{n}"}).status for n in range(12)
    ]
    assert 429 in answers and answers.index(429) <= 10
