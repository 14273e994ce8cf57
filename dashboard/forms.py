"""The dashboard's forms: sign in and out, cancel, retry, retry all failed.

Every form that acts is refused with 403 unless the request is signed in (`dashboard.auth`) and carries the CSRF
token of its identity; a refusal changes nothing. A success redirects (303) to the page that shows its effect.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from extendq.dashboard.actions import Actions, UnknownJob
from extendq.dashboard.auth import CSRF_FIELD, REALM, SESSION_COOKIE
from extendq.dashboard.pages import Dashboard, filter_from, root_of
from extendq.errors import InvalidJobRequest

Handler = Callable[[Request], Awaitable[Response]]


def login_form(dashboard: Dashboard) -> Handler:
    async def show(request: Request) -> Response:
        if not dashboard.auth.enabled:
            return dashboard.message(request, "Read-only", _READ_ONLY, status=403)
        if dashboard.auth.identity(request):
            return RedirectResponse(_next(request.query_params.get("next")) or f"{root_of(request)}/", status_code=303)
        if not dashboard.auth.uses_token:  # basic auth only: the browser asks for the user and password
            return Response("sign in to act", status_code=401, headers={"WWW-Authenticate": REALM})
        return dashboard.page(request, "login.html", "login", next=request.query_params.get("next", ""))

    return show


def login(dashboard: Dashboard) -> Handler:
    async def sign_in(request: Request) -> Response:
        form = await request.form()
        if not dashboard.auth.accepts_token(str(form.get("token", ""))):
            return dashboard.message(request, "Not signed in", "That is not the dashboard's token.", status=403)
        target = _next(str(form.get("next", ""))) or f"{root_of(request)}/?done=login"
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            dashboard.auth.session_value(),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path=f"{root_of(request)}/",
        )
        return response

    return sign_in


def logout(dashboard: Dashboard) -> Handler:
    async def sign_out(request: Request) -> Response:
        refused = await _refused(dashboard, request)
        if refused is not None:
            return refused
        response = RedirectResponse(f"{root_of(request)}/?done=logout", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path=f"{root_of(request)}/")
        return response

    return sign_out


def cancel(dashboard: Dashboard, actions: Actions) -> Handler:
    return _job_action(dashboard, actions.cancel)


def retry(dashboard: Dashboard, actions: Actions) -> Handler:
    return _job_action(dashboard, actions.retry)


def _job_action(dashboard: Dashboard, act: Callable[..., str | None]) -> Handler:
    """The handler of one job's action (`act(job_id, by=...)`): its answer is the page of the job it names (a retry's
    new job), else of the job acted on."""

    async def act_on_job(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        return await _act(
            dashboard,
            request,
            lambda by: act(job_id, by=by),
            lambda named: _to_job_page(request, named or job_id),
        )

    return act_on_job


def retry_failed(dashboard: Dashboard, actions: Actions) -> Handler:
    async def retry_all(request: Request) -> Response:
        form = await request.form()
        try:
            wanted = filter_from(form)
        except InvalidJobRequest as exc:
            return dashboard.message(request, "Bad filter", str(exc), status=400)

        def done(outcome: Any) -> Response:
            lines = f"Started {len(outcome.started)} new job(s) for the failed jobs found"
            extra = f"; {outcome.already} had been retried already" if outcome.already else ""
            more = "; the filter holds more jobs: press again for the next ones" if outcome.more else ""
            return dashboard.message(request, "Retried", f"{lines}{extra}{more}.", status=200, error=False)

        return await _act(dashboard, request, lambda by: actions.retry_failed(wanted, by=by), done, form=form)

    return retry_all


async def _act(
    dashboard: Dashboard,
    request: Request,
    action: Callable[[str], Any],
    after: Callable[[Any], Response],
    *,
    form: FormData | None = None,
) -> Response:
    refused = await _refused(dashboard, request, form)
    if refused is not None:
        return refused
    identity = dashboard.auth.identity(request) or ""
    try:
        outcome = await anyio.to_thread.run_sync(action, identity)
    except UnknownJob as exc:
        return dashboard.message(request, "Unknown job", f"No record of job {exc} (or it expired).", status=404)
    except InvalidJobRequest as exc:
        return dashboard.message(request, "Not done", str(exc), status=409)
    return after(outcome)


async def _refused(dashboard: Dashboard, request: Request, form: FormData | None = None) -> Response | None:
    """A 403 unless the request is signed in and carries its CSRF token."""
    identity = dashboard.auth.identity(request)
    if identity is None:
        text = _READ_ONLY if not dashboard.auth.enabled else "Sign in first: this action needs the dashboard's token."
        return dashboard.message(request, "Forbidden", text, status=403)
    form = form if form is not None else await request.form()
    if not dashboard.auth.csrf_holds(identity, str(form.get(CSRF_FIELD, "")) or None):
        return dashboard.message(request, "Forbidden", "The form's CSRF token is missing or wrong.", status=403)
    return None


def _to_job_page(request: Request, job_id: str) -> Response:
    """The redirect to a job's page after a cancel or retry, which the page then says it did."""
    done = "retry" if request.url.path.endswith("/retry") else "cancel"
    return RedirectResponse(f"{root_of(request)}/jobs/{job_id}?done={done}", status_code=303)


def _next(value: str | None) -> str:
    """A redirect target from a form: a path on this site only."""
    return value if value and value.startswith("/") and not value.startswith("//") else ""


_READ_ONLY = "This dashboard is read-only: set EXTENDQ_DASHBOARD_TOKEN (or a user and password) to act."
