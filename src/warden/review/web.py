"""The review workbench: server-rendered pages (Jinja2) with HTMX, served by the gateway.

Routes only, like `warden.api`: each one reads the session, calls the Gateway (which
checks the role and applies the review rules), and renders. Log-in takes a role API key;
the session is a signed HttpOnly, SameSite=Strict cookie; every POST carries the
session's CSRF token. Nothing is loaded from outside the gateway (htmx is vendored)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from warden.audit.record import gate_results
from warden.auth import Permission, Principal, Role
from warden.errors import (
    AuthError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    RequestError,
    WardenError,
    echo,
)
from warden.review.cases import CaseState, four_eyes
from warden.review.labels import FORMATS, MEDIA_TYPES, export_labels
from warden.review.masking import record_for
from warden.review.session import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    Session,
    Sessions,
    csrf_ok,
)

if TYPE_CHECKING:
    from warden.gateway import Gateway

HERE = Path(__file__).parent
PREFIX = "/workbench"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
GATE_TITLES = {
    "admission": "Admission",
    "residency": "Routing (residency)",
    "inputs": "Guard signals: inputs",
    "decide": "Rules and model (decide)",
    "bands": "Band",
    "outputs": "Guard signals: outputs",
    "commit": "Commit",
}
KIND_WORDS = {
    "review_claim": "claimed",
    "review_release": "released",
    "review_first": "first review",
    "review": "final review",
}
STATUS_WORDS = {
    "open": "open",
    "claimed": "claimed",
    "awaiting_second_review": "needs 2nd review",
    "reviewed": "reviewed",
}


# -- template helpers ---------------------------------------------------------------------
def _num(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value.is_integer() and abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:,.4f}".rstrip("0").rstrip(".") if abs(value) < 1000 else f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10000 else str(value)
    return str(value)


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for row in rows:
        for key in row:
            seen.setdefault(str(key), None)
    return list(seen)


def _all_mappings(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _short(value: str | None) -> str:
    return "" if not value else value[:8] + "…" + value[-4:]


def _when(value: str | None) -> str:
    if not value:
        return ""
    return value.replace("T", " ")[:19] + " UTC"


templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.filters.update(num=_num, columns=_columns, short=_short, when=_when)
templates.env.tests["all_mappings"] = _all_mappings


# -- the router ---------------------------------------------------------------------------
class Workbench:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        review = gateway.policy.policy.review
        self.sessions = (
            None
            if gateway.keyring is None
            else Sessions.for_keyring(gateway.keyring, review.session_hours * 3600)
        )

    # -- plumbing
    def session(self, request: Request) -> Session | None:
        if self.sessions is None:
            return None
        return self.sessions.read(request.cookies.get(SESSION_COOKIE))

    def render(
        self,
        request: Request,
        template: str,
        context: dict[str, Any],
        *,
        status: int = 200,
        session: Session | None = None,
    ) -> HTMLResponse:
        context = {
            "session": session,
            "who": session.principal if session else None,
            "csrf": session.csrf if session else "",
            "Permission": Permission,
            "prefix": PREFIX,
            "status_words": STATUS_WORDS,
            "kind_words": KIND_WORDS,
            **context,
        }
        response = templates.TemplateResponse(request, template, context, status_code=status)
        response.headers.update(SECURITY_HEADERS)
        return response

    def redirect(self, request: Request, url: str) -> Response:
        if request.headers.get("hx-request"):
            response = Response(status_code=200, headers={"HX-Redirect": url})
        else:
            response = RedirectResponse(url, status_code=303)
        response.headers.update(SECURITY_HEADERS)
        return response

    def to_login(self, request: Request) -> Response:
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return self.redirect(request, f"{PREFIX}/login?next={quote(here)}")

    def error(self, request: Request, exc: WardenError, session: Session | None) -> HTMLResponse:
        return self.render(
            request,
            "error.html",
            {"status": exc.http_status, "message": exc.message, "code": exc.code},
            status=exc.http_status,
            session=session,
        )

    async def posted(self, request: Request) -> tuple[Session | None, dict[str, str]]:
        """The session of a POST whose CSRF token matches it (else None), and the form."""
        form = await request.form()
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        session = self.session(request)
        if session is None:
            return None, fields
        token = fields.get("csrf") or request.headers.get("x-csrf-token")
        if not csrf_ok(session, token):
            raise ForbiddenError("the form's CSRF token is missing or stale; reload the page")
        return session, fields

    # -- pages
    async def login_page(self, request: Request, next: str = PREFIX, error: str = "") -> Response:
        if self.session(request) is not None and not error:
            return self.redirect(request, _safe_next(next))
        if self.sessions is None:
            raise AuthError("this gateway has no API keys configured")
        token, cookie = self.sessions.login_token()
        response = self.render(
            request,
            "login.html",
            {"login_token": token, "next": _safe_next(next), "error": error},
            status=401 if error else 200,
        )
        response.set_cookie(
            LOGIN_COOKIE,
            cookie,
            max_age=3600,
            path=PREFIX,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    async def login(self, request: Request) -> Response:
        form = await request.form()
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        next_url = _safe_next(fields.get("next", PREFIX))
        assert self.sessions is not None and self.gateway.keyring is not None
        if not self.sessions.login_token_ok(request.cookies.get(LOGIN_COOKIE), fields.get("csrf")):
            return await self.login_page(
                request, next_url, "The log-in form expired; please try again."
            )
        try:
            principal = self.gateway.keyring.authenticate(fields.get("api_key", "").strip())
        except AuthError:
            return await self.login_page(request, next_url, "Unknown API key.")
        if principal.role == Role.SERVICE:
            return await self.login_page(
                request,
                next_url,
                "Service keys cannot use the workbench; log in with a reviewer, auditor "
                "or admin key.",
            )
        response = self.redirect(request, next_url)
        response.set_cookie(
            SESSION_COOKIE,
            self.sessions.issue(principal),
            max_age=self.sessions.max_age,
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        response.delete_cookie(LOGIN_COOKIE, path=PREFIX)
        return response

    async def logout(self, request: Request) -> Response:
        await self.posted(request)
        response = self.redirect(request, f"{PREFIX}/login")
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    def queue_context(self, who: Principal) -> dict[str, Any]:
        items = self.gateway.review_queue(who, limit=500)
        return {
            "items": items,
            "counts": {
                "open": len(items),
                "overdue": sum(1 for i in items if i["overdue"]),
                "mine": sum(1 for i in items if i["claimed_by"] == who.name),
                "second": sum(1 for i in items if i["status"] == "awaiting_second_review"),
            },
            "now": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        }

    async def queue(
        self, request: Request, template: str, done: str = "", status: str = ""
    ) -> Response:
        """The queue page, or (`_queue_rows.html`) just its rows for the periodic refresh."""
        session = self.session(request)
        if session is None:
            return self.to_login(request)
        try:
            context = self.queue_context(session.principal)
        except WardenError as exc:
            return self.error(request, exc, session)
        context.update(done=done, done_status=status)
        return self.render(request, template, context, session=session)

    def case_context(self, state: CaseState, who: Principal) -> dict[str, Any]:
        gateway = self.gateway
        desk = gateway.desk
        now = datetime.now(UTC)
        record, masked = record_for(state.record, who, gateway.policy)
        held = state.claim
        mine = held is not None and held.reviewer == who.name
        first = state.first_review
        can_review = who.can(Permission.REVIEW) and state.final_review is None
        return {
            "state": state,
            "record": record,
            "masked": masked,
            "item": desk.queue_item(state, now),
            "labels": desk.labels(state.record["decision_type"]),
            "four_eyes": four_eyes(state.record, gateway.policy),
            "gates": [(g["gate"], GATE_TITLES.get(g["gate"], g["gate"])) for g in record["gates"]],
            "results": gate_results(record),
            "can_review": can_review,
            "holds_claim": mine,
            "may_claim": can_review
            and (held is None or mine)
            and not (first is not None and first.reviewer == who.name),
            "may_release": can_review and held is not None and (mine or who.can(Permission.ADMIN)),
            "min_rationale": gateway.policy.policy.review.min_rationale_chars,
            "form": {},
            "form_error": "",
        }

    async def case(self, request: Request, decision_id: str) -> Response:
        session = self.session(request)
        if session is None:
            return self.to_login(request)
        try:
            state = self.gateway.review_case(decision_id, session.principal)
            context = self.case_context(state, session.principal)
        except WardenError as exc:
            return self.error(request, exc, session)
        return self.render(request, "case.html", context, session=session)

    async def act(self, request: Request, decision_id: str, action: str) -> Response:
        try:
            session, fields = await self.posted(request)
        except ForbiddenError as exc:
            return self.error(request, exc, self.session(request))
        if session is None:
            return self.to_login(request)
        who = session.principal
        gateway = self.gateway
        try:
            if action == "claim":
                await gateway.review_claim(decision_id, who)
            elif action == "release":
                await gateway.review_release(decision_id, who)
            else:
                payload = {k: fields[k] for k in ("outcome", "rationale", "label") if k in fields}
                result = await gateway.review(decision_id, who, payload)
                return self.redirect(
                    request, f"{PREFIX}/?done={quote(decision_id)}&status={result['status']}"
                )
        except (RequestError, ConflictError) as exc:
            try:
                state = gateway.review_case(decision_id, who)
                context = self.case_context(state, who)
            except WardenError as inner:
                return self.error(request, inner, session)
            context.update(form=fields, form_error=exc.message)
            return self.render(
                request, "case.html", context, status=exc.http_status, session=session
            )
        except WardenError as exc:
            return self.error(request, exc, session)
        return self.redirect(request, f"{PREFIX}/cases/{quote(decision_id)}")

    async def admin(self, request: Request) -> Response:
        session = self.session(request)
        if session is None:
            return self.to_login(request)
        try:
            session.principal.require(Permission.ADMIN)
            context = self.queue_context(session.principal)
        except WardenError as exc:
            return self.error(request, exc, session)
        keyring = self.gateway.keyring
        labels = export_labels(self.gateway.store.iter_entries(), "jsonl")[1]
        context.update(
            keys=sorted(keyring.principals(), key=lambda p: (p.role, p.name)) if keyring else [],
            label_count=labels,
            formats=FORMATS,
            review=self.gateway.policy.policy.review,
        )
        return self.render(request, "admin.html", context, session=session)

    async def labels(self, request: Request, fmt: str) -> Response:
        session = self.session(request)
        if session is None:
            return self.to_login(request)
        try:
            session.principal.require(Permission.ADMIN)
            if fmt not in FORMATS:
                raise NotFoundError(f"no label export format {echo(fmt)} (jsonl, parquet)")
        except WardenError as exc:
            return self.error(request, exc, session)
        data, _ = export_labels(self.gateway.store.iter_entries(), fmt)
        return Response(
            data,
            media_type=MEDIA_TYPES[fmt],
            headers={
                "Content-Disposition": f'attachment; filename="warden-labels.{fmt}"',
                "Cache-Control": "no-store",
            },
        )


def _safe_next(value: str | None) -> str:
    """Only ever redirect inside the workbench after log-in (no open redirect)."""
    if value and value.startswith(PREFIX) and not value.startswith("//"):
        return value
    return f"{PREFIX}/"


def workbench_router(gateway: Gateway) -> APIRouter:
    bench = Workbench(gateway)
    router = APIRouter(prefix=PREFIX, include_in_schema=False)

    @router.get("", response_class=HTMLResponse)
    async def root(request: Request) -> Response:
        return bench.redirect(request, f"{PREFIX}/")

    @router.get("/", response_class=HTMLResponse)
    async def queue(request: Request, done: str = "", status: str = "") -> Response:
        return await bench.queue(request, "queue.html", done, status)

    @router.get("/queue/rows", response_class=HTMLResponse)
    async def queue_rows(request: Request) -> Response:
        return await bench.queue(request, "_queue_rows.html")

    @router.get("/login", response_class=HTMLResponse)
    async def login_page(request: Request, next: str = PREFIX) -> Response:
        return await bench.login_page(request, next)

    @router.post("/login", response_class=HTMLResponse)
    async def login(request: Request) -> Response:
        return await bench.login(request)

    @router.post("/logout", response_class=HTMLResponse)
    async def logout(request: Request) -> Response:
        try:
            return await bench.logout(request)
        except ForbiddenError as exc:
            return bench.error(request, exc, bench.session(request))

    @router.get("/cases/{decision_id}", response_class=HTMLResponse)
    async def case(request: Request, decision_id: str) -> Response:
        return await bench.case(request, decision_id)

    @router.post("/cases/{decision_id}/claim", response_class=HTMLResponse)
    async def claim(request: Request, decision_id: str) -> Response:
        return await bench.act(request, decision_id, "claim")

    @router.post("/cases/{decision_id}/release", response_class=HTMLResponse)
    async def release(request: Request, decision_id: str) -> Response:
        return await bench.act(request, decision_id, "release")

    @router.post("/cases/{decision_id}/decide", response_class=HTMLResponse)
    async def decide(request: Request, decision_id: str) -> Response:
        return await bench.act(request, decision_id, "decide")

    @router.get("/admin", response_class=HTMLResponse)
    async def admin(request: Request) -> Response:
        return await bench.admin(request)

    @router.get("/admin/labels.{fmt}")
    async def labels(request: Request, fmt: str) -> Response:
        return await bench.labels(request, fmt)

    return router


def mount_workbench(app: FastAPI, gateway: Gateway) -> None:
    """Serve the workbench under /workbench (pages) and /workbench/static (css, htmx)."""
    app.include_router(workbench_router(gateway))
    app.mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="workbench-static")
