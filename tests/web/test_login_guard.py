"""Sign-in under attack: rate limits, lockout, bounded password checks, equal timing,
safe redirects and sessions that end on the server. Real Flask, real SQLite, and for the
flood a real waitress server over TCP."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

import web.auth
from web.security import (
    HASH_CONCURRENCY,
    LOCKOUT_FAILURES,
    LOCKOUT_S,
    REFUSED_HOLD_S,
    Busy,
    HashGate,
    Lockout,
    RefusedAddresses,
    dummy_hash,
    safe_next,
)
from web.server import WebServer

from .webutil import (
    PASSWORDS,
    HttpBrowser,
    can_bind,
    csrf_token,
    filled_store,
    sign_in,
    web_config,
)


class CheckCounter:
    """Wraps the password check: how many ran, and the most at once."""

    def __init__(self, real: Callable[[str, str], bool]) -> None:
        self.real, self.calls, self.running, self.peak = real, [], 0, 0
        self._lock = threading.Lock()

    def __call__(self, pwhash: str, password: str) -> bool:
        with self._lock:
            self.calls.append(pwhash)
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            return self.real(pwhash, password)
        finally:
            with self._lock:
                self.running -= 1


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> CheckCounter:
    counter = CheckCounter(web.auth.check_password_hash)
    monkeypatch.setattr(web.auth, "check_password_hash", counter)
    return counter


def post_login(client: FlaskClient, token: str, name: str, password: str,
               address: str = "127.0.0.1", query: str = "") -> object:
    return client.post(f"/login{query}", data={"username": name, "password": password,
                                               "csrf_token": token},
                       environ_base={"REMOTE_ADDR": address})


def test_one_address_is_rate_limited_with_a_page_and_retry_after(app: Flask) -> None:
    client = app.test_client()
    # Posts without a CSRF token count too: the limit comes before anything reads the form.
    for _ in range(10):
        assert client.post("/login", data={"username": "qa"}).status_code == 400
    token = csrf_token(client)
    refused = post_login(client, token, "qa", PASSWORDS["qa"])
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert "Too many sign-in attempts from this address" in refused.text
    assert post_login(client, token, "qa", PASSWORDS["qa"], "10.0.0.2").status_code == 302


def test_a_refused_address_is_answered_without_running_the_app(
    app: Flask, checks: CheckCounter, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = app.test_client()
    token = csrf_token(client)
    for i in range(10):  # a new name each time, so no name is locked
        post_login(client, token, f"guesser{i}", "guess")
    refused_by_limit = post_login(client, token, "guesser", "guess")
    assert refused_by_limit.status_code == 429
    # From now on the app does not run for this address's sign-ins: a view that would
    # fail shows it.
    monkeypatch.setattr(web.auth, "check_password_hash", None)
    shield: RefusedAddresses = app.extensions["refused_addresses"]
    holds: list[float] = []
    shield.sleep = holds.append
    before = shield.refused
    for _ in range(50):
        again = post_login(client, token, "qa", PASSWORDS["qa"])
        assert again.status_code == 429
        assert 1 <= int(again.headers["Retry-After"]) <= 60
        assert "Too many sign-in attempts from this address" in again.text
    assert shield.refused - before == 50 and len(checks.calls) == 10
    assert holds == [REFUSED_HOLD_S] * 50  # each answered after a hold
    # Other addresses and other requests still reach the app.
    assert client.get("/login", environ_base={"REMOTE_ADDR": "127.0.0.1"}).status_code == 200
    monkeypatch.undo()
    assert post_login(client, token, "qa", PASSWORDS["qa"], "10.0.0.9").status_code == 302


def test_a_remembered_refusal_ends_when_the_limit_resets() -> None:
    now = [100.0]
    answers = iter([429, 200])

    def app(environ: dict, start_response) -> list[bytes]:
        status = next(answers)
        if status == 429:
            environ["inspector.address_refused_until"] = now[0] + 30
        start_response(f"{status} X", [])
        return [b""]

    shield = RefusedAddresses(app, clock=lambda: now[0], max_addresses=2)
    statuses = []

    def call(address: str = "10.0.0.1", path: str = "/login") -> str:
        shield({"REQUEST_METHOD": "POST", "PATH_INFO": path, "REMOTE_ADDR": address},
               lambda status, headers: statuses.append((status, dict(headers))))
        return statuses[-1][0]

    assert call().startswith("429")  # the app's own refusal
    assert call().startswith("429") and shield.refused == 1
    assert statuses[-1][1]["Retry-After"] == "30"
    now[0] += 30.5  # the limit has reset: the app judges again
    assert call() == "200 X" and len(shield) == 0


def test_refusals_are_held_by_a_bounded_number_of_threads_the_rest_answered_at_once(
) -> None:
    def app(environ: dict, start_response) -> list[bytes]:
        environ["inspector.address_refused_until"] = time.monotonic() + 60
        start_response("429 X", [])
        return [b""]

    release = threading.Event()
    holding = threading.Semaphore(0)

    def hold(seconds: float) -> None:
        holding.release()
        assert release.wait(10)

    shield = RefusedAddresses(app, holds=2, hold_s=5.0, sleep=hold)
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/login", "REMOTE_ADDR": "10.0.0.1"}
    statuses: list[str] = []
    shield(dict(environ), lambda status, headers: statuses.append(status))  # the app refuses
    held = [threading.Thread(target=shield, args=(dict(environ), lambda *a: None))
            for _ in range(2)]
    for thread in held:
        thread.start()
    assert holding.acquire(timeout=10) and holding.acquire(timeout=10)
    # Both holds are taken: the next refusals are answered at once, not held.
    for _ in range(20):
        shield(dict(environ), lambda status, headers: statuses.append(status))
    assert statuses == ["429 X"] + ["429 Too Many Requests"] * 20
    assert shield.held == 0 and shield.refused == 22  # counted on arrival
    release.set()
    for thread in held:
        thread.join(10)
    assert shield.held == 2 and shield.refused == 22


def test_remembered_addresses_are_bounded() -> None:
    def app(environ: dict, start_response) -> list[bytes]:
        environ["inspector.address_refused_until"] = time.monotonic() + 60
        start_response("429 X", [])
        return [b""]

    shield = RefusedAddresses(app, max_addresses=100)
    for i in range(5000):
        shield({"REQUEST_METHOD": "POST", "PATH_INFO": "/login",
                "REMOTE_ADDR": f"10.{i // 256}.{i % 256}.1"}, lambda *a: None)
    assert len(shield) == 100  # the earliest refused are forgotten first


def test_a_name_is_locked_after_repeated_wrong_passwords_known_or_not(app: Flask) -> None:
    client = app.test_client()
    token = csrf_token(client)
    answers = {}
    for name in ("qa", "no-such-user"):
        # From a new address each time: the lockout is per name, whoever asks.
        for i in range(LOCKOUT_FAILURES - 1):
            assert post_login(client, token, name, "guess", f"10.1.{i}.1").status_code == 200
        locking = post_login(client, token, name, "guess", "10.2.0.1")
        right = post_login(client, token, name, PASSWORDS.get(name, "x"), "10.3.0.1")
        # Even the right password waits out the lock.
        assert (locking.status_code, right.status_code) == (429, 429), name
        main = re.search(r"<main>.*</main>", right.text, re.S).group(0)
        answers[name] = (locking.status_code, right.status_code, main)
        assert int(right.headers["Retry-After"]) == pytest.approx(LOCKOUT_S, abs=2)
    assert "Too many wrong passwords for this user name" in answers["qa"][2]
    # An unknown name locks the same way, so the lockout tells nothing about which exist.
    assert answers["qa"] == answers["no-such-user"]
    lockout: Lockout = app.extensions["login_lockout"]
    lockout.clock = lambda: time.monotonic() + LOCKOUT_S + 1  # the lock has run out
    assert post_login(client, token, "qa", PASSWORDS["qa"], "10.4.0.1").status_code == 302


def test_a_right_password_resets_the_count_and_an_admin_reset_unlocks(app: Flask) -> None:
    client = app.test_client()
    token = csrf_token(client)
    lockout: Lockout = app.extensions["login_lockout"]
    for i in range(LOCKOUT_FAILURES - 1):
        post_login(client, token, "operator", "guess", f"10.5.{i}.1")
    assert post_login(client, token, "operator", PASSWORDS["operator"], "10.6.0.1"
                      ).status_code == 302
    assert lockout.retry_after("operator") == 0 and len(lockout) == 0
    client = app.test_client()  # signed out, with a token of its own
    token = csrf_token(client)
    for i in range(LOCKOUT_FAILURES):
        post_login(client, token, "qa", "guess", f"10.8.{i}.1")
    assert lockout.retry_after("qa") > 0
    admin = app.test_client()
    admin_token = sign_in(admin, "admin")
    page = admin.post("/admin/users", data={"name": "qa", "role": "qa",
                                            "csrf_token": admin_token},
                      follow_redirects=True).text
    assert "User not saved: user &#39;qa&#39; already exists" in page  # adding never resets
    page = admin.post("/admin/users", data={"name": "qa", "role": "qa", "reset": "1",
                                            "csrf_token": admin_token},
                      follow_redirects=True).text
    assert "User qa (qa) reset" in page
    password = re.search(r"password: (\S+)</p>", page).group(1)
    assert post_login(client, token, "qa", password, "10.9.0.1").status_code == 302
    reset = next(a for a in app.extensions["store"].audit_log() if a["action"] == "user reset")
    assert reset["user"] == "admin" and reset["detail"]["name"] == "qa"


def test_lockout_memory_is_bounded() -> None:
    lockout = Lockout(failures=2, period_s=60, max_names=100)
    for i in range(10_000):
        lockout.failed(f"name{i}")
    assert len(lockout) == 100  # the least recently failed are forgotten first
    lockout.failed("name9999")
    assert lockout.retry_after("name9999") > 0


def test_unknown_names_cost_the_same_password_check_as_known_ones(
    app: Flask, checks: CheckCounter
) -> None:
    client = app.test_client()
    token = csrf_token(client)
    store = app.extensions["store"]
    timings: dict[str, list[float]] = {"qa": [], "nobody": []}
    for i in range(3):
        for name in timings:
            start = time.perf_counter()
            assert post_login(client, token, name, "wrong", f"10.7.{i}.{len(name)}"
                              ).status_code == 200
            timings[name].append(time.perf_counter() - start)
    real_hash = store.get_user("qa")["password_hash"]
    assert checks.calls == [real_hash, dummy_hash()] * 3
    # Same method and cost parameters ("scrypt:32768:8:1"), so the same work.
    assert dummy_hash().split("$")[0] == real_hash.split("$")[0]
    # Before: 10 ms for an unknown name against 250 ms for a known one.
    assert min(timings["nobody"]) > 0.5 * min(timings["qa"])


def test_password_checks_beyond_the_bound_are_refused_not_queued() -> None:
    gate = HashGate(concurrency=1, waiting=1, wait_s=5)
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with gate.turn():
            holding.set()
            release.wait(5)

    def wait_turn() -> None:
        with gate.turn():
            pass

    threads = [threading.Thread(target=hold), threading.Thread(target=wait_turn)]
    threads[0].start()
    assert holding.wait(5)
    threads[1].start()
    time.sleep(0.1)  # the second is now waiting for its turn
    start = time.monotonic()
    with pytest.raises(Busy), gate.turn():
        pass
    assert time.monotonic() - start < 0.5  # refused at once, not after waiting
    release.set()
    for thread in threads:
        thread.join(5)
    with gate.turn():  # free again
        pass




def test_login_flood_is_refused_bounded_and_leaves_other_users_in(
    tmp_path: Path, checks: CheckCounter
) -> None:
    if not can_bind("127.0.0.2"):
        pytest.skip("needs the whole 127.0.0.0/8 loopback (Linux) for several client addresses")
    store = filled_store(tmp_path / "store")
    server = WebServer(web_config(tmp_path / "store", host="127.0.0.1"), store)
    server.start()
    statuses: list[tuple[int, str | None]] = []
    lock = threading.Lock()
    stop = time.monotonic() + 2.0

    def flood(index: int) -> None:
        browser = HttpBrowser(server.url, f"127.0.0.{10 + index}")
        try:
            n = 0
            while time.monotonic() < stop:
                # Two threads guess the real "qa"; the others spray unknown names.
                name = "qa" if index < 2 else f"nobody{index}-{n}"
                result = browser.sign_in(name, f"guess{n}")
                with lock:
                    statuses.append(result)
                n += 1
        finally:
            browser.close()

    try:
        threads = [threading.Thread(target=flood, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(15)
        codes = {code for code, _ in statuses}
        refused = [retry for code, retry in statuses if code == 429]
        assert codes <= {200, 429} and len(refused) > len(statuses) // 2
        assert all(retry and int(retry) >= 1 for retry in refused)
        assert checks.peak <= HASH_CONCURRENCY  # never more password checks at once
        assert len(checks.calls) <= 8 * 10  # each address got at most its 10 a minute
        # A user nobody flooded signs in at once, from another address.
        other = HttpBrowser(server.url, "127.0.0.200")
        assert other.sign_in("operator", PASSWORDS["operator"])[0] == 302
        other.close()
        # The flooded name may be locked; after the lockout window it signs in again.
        lockout: Lockout = server.app.extensions["login_lockout"]
        lockout.clock = lambda: time.monotonic() + LOCKOUT_S + 1
        flooded = HttpBrowser(server.url, "127.0.0.201")
        assert flooded.sign_in("qa", PASSWORDS["qa"])[0] == 302
        flooded.close()
    finally:
        server.close()
        store.close()


@pytest.mark.parametrize("target", [
    "/\t/evil.example/", "//evil.example/", "/\\evil.example", "\\\\evil.example",
    " //evil.example", "/\r\n/evil.example", "https://evil.example/", "javascript:alert(1)",
    "evil.example", "/\x00/evil", "/\u200b/evil", "",
])
def test_only_same_site_paths_are_redirect_targets(target: str) -> None:
    assert safe_next(target) is None


def test_same_site_paths_survive_as_redirect_targets() -> None:
    assert safe_next("/review/?camera=cam1&page=2") == "/review/?camera=cam1&page=2"
    assert safe_next("/panel") == "/panel"


def test_the_reported_open_redirect_lands_on_the_home_page(app: Flask) -> None:
    client = app.test_client()
    token = csrf_token(client)
    response = post_login(client, token, "qa", PASSWORDS["qa"], query="?next=/%09/evil.example/")
    assert response.status_code == 302 and response.headers["Location"] == "/"
    client = app.test_client()
    response = post_login(client, csrf_token(client), "qa", PASSWORDS["qa"],
                          query="?next=/review/%3Fcamera%3Dcam1")
    assert response.headers["Location"] == "/review/?camera=cam1"


def test_a_session_cookie_stops_working_after_sign_out(app: Flask) -> None:
    client = app.test_client()
    token = sign_in(client, "qa")
    cookie = client.get_cookie("session").value
    other_device = app.test_client()
    sign_in(other_device, "qa")
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    replay = app.test_client()
    replay.set_cookie("session", cookie)
    assert replay.get("/api/inspections").status_code == 401
    assert replay.get("/review/").status_code == 302
    # Signing out ends the user's sessions everywhere, on the server.
    assert other_device.get("/api/inspections").status_code == 401


def test_a_password_reset_ends_the_users_sessions(app: Flask) -> None:
    client = app.test_client()
    sign_in(client, "operator")
    assert client.get("/api/panel").status_code == 200
    web.auth.add_user(app.extensions["store"], "operator", "operator", "new-secret-2",
                      replace=True)
    assert client.get("/api/panel").status_code == 401


def test_an_admin_disables_a_user_at_once_and_enables_them_again(app: Flask) -> None:
    qa = app.test_client()
    sign_in(qa, "qa")
    assert qa.get("/api/inspections?limit=1").status_code == 200
    admin = app.test_client()
    admin_token = sign_in(admin, "admin")
    page = admin.post("/admin/users/qa/disabled", data={"disabled": "1",
                                                        "csrf_token": admin_token},
                      follow_redirects=True).text
    assert "User qa disabled" in page
    assert qa.get("/api/inspections?limit=1").status_code == 401  # the session ended
    fresh = app.test_client()
    assert post_login(fresh, csrf_token(fresh), "qa", PASSWORDS["qa"],
                      "10.20.0.1").status_code != 302  # refused while disabled
    page = admin.post("/admin/users/admin/disabled", data={"disabled": "1",
                                                           "csrf_token": admin_token},
                      follow_redirects=True).text
    assert "cannot disable yourself" in page
    assert admin.post("/admin/users/nobody/disabled", data={
        "disabled": "1", "csrf_token": admin_token}).status_code == 404
    admin.post("/admin/users/qa/disabled", data={"disabled": "0", "csrf_token": admin_token})
    fresh = app.test_client()
    assert post_login(fresh, csrf_token(fresh), "qa", PASSWORDS["qa"],
                      "10.20.0.2").status_code == 302
    actions = [a["action"] for a in app.extensions["store"].audit_log(5)]
    assert actions[:2] == ["user enabled", "user disabled"]


def test_an_admin_changes_a_role_without_touching_the_password(app: Flask) -> None:
    store = app.extensions["store"]
    admin = app.test_client()
    token = sign_in(admin, "admin")
    page = admin.post("/admin/users/qa/role", data={"role": "operator", "csrf_token": token},
                      follow_redirects=True).text
    assert "User qa is now operator" in page
    assert store.get_user("qa")["role"] == "operator"
    again = app.test_client()  # the same password signs in, with the new role
    assert post_login(again, csrf_token(again), "qa", PASSWORDS["qa"],
                      "10.21.0.1").status_code == 302
    assert again.get("/review/").status_code == 403 and again.get("/panel").status_code == 200
    assert "cannot change your own role" in admin.post(
        "/admin/users/admin/role", data={"role": "qa", "csrf_token": token},
        follow_redirects=True).text
    assert admin.post("/admin/users/qa/role", data={"role": "boss", "csrf_token": token}
                      ).status_code == 400
    entry = store.audit_log(1, action="user role")[0]
    assert entry["user"] == "admin" and entry["detail"] == {
        "name": "qa", "role": "operator", "previous": "qa"}
