"""How the box's own commands (``inspector promote``, ``rollback``) reach its running web API.

The web UI keeps two files under the storage root: ``web_url``, the address it listens on,
and ``api_token``, a secret (mode 0600) that it accepts from this host as an admin's.
Whoever can read them can change the store directly anyway; a copied token is refused from
any other host.
"""

from __future__ import annotations

import getpass
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from inspector.errors import InspectorError
from inspector.files import read_secret

API_TOKEN_FILE = "api_token"
WEB_URL_FILE = "web_url"
TIMEOUT_S = 60.0  # a promotion loads and warms up the model before it answers
ANY_ADDRESS = {"0.0.0.0": "127.0.0.1", "::": "::1"}


class LocalApiError(InspectorError):
    """The running box could not be reached, or refused the request (its reason included)."""


def call(root: Path, method: str, path: str, body: dict[str, Any] | None = None) -> dict:
    """``method path`` on the web API of the box whose storage root is ``root``."""
    url, token = _address(root), _token(root)
    request = urllib.request.Request(
        url.rstrip("/") + quote(path), method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                 "X-Inspector-Actor": _actor()})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            reason = json.loads(exc.read()).get("error", exc.reason)
        except ValueError:
            reason = exc.reason
        raise LocalApiError(f"the box refused: {reason} (HTTP {exc.code})") from None
    except (urllib.error.URLError, OSError) as exc:
        raise LocalApiError(f"no web UI answers at {url} ({getattr(exc, 'reason', exc)}); "
                            "is `inspector run` running with web.enabled?") from None


def _address(root: Path) -> str:
    try:
        url = (root / WEB_URL_FILE).read_text().strip()
    except OSError:
        raise LocalApiError(f"{root / WEB_URL_FILE} is missing: the web UI has not run with "
                            "this storage root; start `inspector run` first") from None
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    local = ANY_ADDRESS.get(host, host)  # a UI listening everywhere is reached here
    if ":" in local:
        local = f"[{local}]"
    netloc = f"{local}:{parts.port}" if parts.port else local
    return urlunsplit((parts.scheme or "http", netloc, parts.path, "", ""))


def _token(root: Path) -> str:
    try:
        token = read_secret(root / API_TOKEN_FILE)
    except OSError as exc:
        raise LocalApiError(f"cannot read {root / API_TOKEN_FILE} ({exc}); run this as the "
                            "user that runs the box") from None
    if token is None:
        raise LocalApiError(f"{root / API_TOKEN_FILE} is missing: start `inspector run` first")
    return token


def _actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        return "cli"
