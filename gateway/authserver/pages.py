"""The authorization page: plain server-rendered HTML that works without JavaScript.

Field names are a contract (INTERFACES.md): `username`, `password`; for a standalone patient
launch `<select name="patient">` (values: Patient ids, labels: subject codes); the
requested scopes as checkboxes `name="scope"`; buttons `name="decision"` valued `approve` /
`deny`. The pending request travels in one signed hidden field, `auth_request`, so the
pages hold no server-side session and cannot be tampered with.
"""

from __future__ import annotations

from html import escape

from starlette.responses import HTMLResponse

_STYLE = ("body{font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem}"
          "label{display:block;margin:.5rem 0}.error{color:#a00}button{margin-right:1rem}")

_HEADERS = {"Cache-Control": "no-store", "X-Frame-Options": "DENY", "Content-Security-Policy": "default-src 'self'; "
            "style-src 'unsafe-inline'; frame-ancestors 'none'", "Referrer-Policy": "no-referrer"}


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    html = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{_STYLE}</style></head><body><h1>{escape(title)}</h1>{body}</body></html>")
    return HTMLResponse(html, status_code=status, headers=_HEADERS)


def _error(message: str | None) -> str:
    return f'<p class="error" role="alert">{escape(message)}</p>' if message else ""


def sign_in(action: str, auth_request: str, client_name: str, error: str | None = None) -> HTMLResponse:
    body = (f"<p>{escape(client_name)} asks for access to the biobank. Sign in to continue.</p>{_error(error)}"
            f'<form method="post" action="{escape(action)}">'
            f'<input type="hidden" name="auth_request" value="{escape(auth_request)}">'
            '<label>User name <input name="username" autocomplete="username" required></label>'
            '<label>Password <input type="password" name="password" autocomplete="current-password" required>'
            '</label><button type="submit">Sign in</button></form>')
    return _page("Sign in", body, 401 if error else 200)


def consent(action: str, auth_request: str, client_name: str, scopes: list[str],
            subjects: list[tuple[str, str]] | None, error: str | None = None) -> HTMLResponse:
    """The approval page; `subjects` (Patient id, subject code) when a research subject must be picked."""
    picker = ""
    if subjects is not None:
        options = "".join(f'<option value="{escape(pid)}">{escape(label)}</option>' for pid, label in subjects)
        picker = f'<label>Research subject <select name="patient" required>{options}</select></label>'
    boxes = "".join(f'<label><input type="checkbox" name="scope" value="{escape(s)}" checked> {escape(s)}</label>'
                    for s in scopes)
    body = (f"<p>{escape(client_name)} asks for the access below.</p>{_error(error)}"
            f'<form method="post" action="{escape(action)}">'
            f'<input type="hidden" name="auth_request" value="{escape(auth_request)}">{picker}'
            f"<fieldset><legend>Access</legend>{boxes}</fieldset>"
            '<button type="submit" name="decision" value="approve">Approve</button>'
            '<button type="submit" name="decision" value="deny">Deny</button></form>')
    return _page("Approve access", body, 400 if error else 200)


def failure(message: str, status: int = 400) -> HTMLResponse:
    """Shown instead of a redirect when the redirect URI itself cannot be trusted (RFC 6749 4.1.2.1)."""
    return _page("Authorization failed", _error(message), status)
