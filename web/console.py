"""The staff console, ``/console/``: the DPO's, auditor's and admin's pages.

Sign-in takes a staff key (form field ``key``) once, through ``gate.console``, and
leaves only a session token in an HttpOnly cookie sent to ``/console`` alone. Each
request re-reads that session with its key and client (``principals.staff``), so a
revoked key's sessions end at once. Each page calls the API's own use case
(``gate.rights``, ``gate.holds``), whose role check decides who may do what: an
auditor's session asking to approve gets the use case's ``403``.
"""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import structlog
from fastapi import APIRouter, BackgroundTasks, Depends, Form, Path, Query, Request, Response

from api.deps import ClientAddress, RequestId, ServicesDep
from core.errors import Forbidden, RateLimited, Unauthenticated
from gate.console import sign_in_staff, sign_out_staff
from gate.holds import list_member_holds, place_member_hold, release_member_hold
from gate.rights import (
    approve_request,
    extend_request_deadline,
    reject_request,
    request_queue,
    show_request,
)
from principals.actor import Actor
from principals.staff import authenticate_staff, well_formed_token
from rights.requests import QueueFilter
from rights.states import OPEN, RequestType, Status
from web.pages import (
    CheckedForm,
    SignInRequired,
    days_until,
    pages_of,
    redirect,
    retry_minutes,
    web_route_class,
)
from web.security import CONSOLE_COOKIE, CONSOLE_PREFIX, delete_cookie, set_cookie

PREFIX = CONSOLE_PREFIX
SIGN_IN = f"{PREFIX}/sign-in"
QUEUE_PAGE = 100

router = APIRouter(
    prefix=PREFIX,
    include_in_schema=False,
    route_class=web_route_class(
        sign_in=SIGN_IN,
        error_template="console/error.html",
        session_cookie=CONSOLE_COOKIE,
        cookie_path=PREFIX,
    ),
)


def signed_in_staff(request: Request, services: ServicesDep) -> Actor:
    token = request.cookies.get(CONSOLE_COOKIE)
    if not well_formed_token(token):
        raise SignInRequired()
    with services.reading() as session:
        actor = authenticate_staff(session, token, now=services.clock())
    request.state.actor_id = actor.id
    structlog.contextvars.bind_contextvars(actor=actor.id)
    return actor


Staff = Annotated[Actor, Depends(signed_in_staff)]


def _render(request: Request, template: str, actor: Actor | None, **context: Any) -> Response:
    return pages_of(request).render(
        request,
        template,
        signed_in=actor is not None,
        role=actor.role if actor else None,
        actor_name=actor.name if actor else None,
        **context,
    )


# -- signing in --------------------------------------------------------------------------


@router.get("/")
def home(request: Request, staff: Staff) -> Response:
    return _render(request, "console/home.html", staff, section="home")


@router.get("/sign-in")
def sign_in_form(request: Request) -> Response:
    return _render(request, "console/sign_in.html", None, section="sign-in")


@router.post("/sign-in", dependencies=[CheckedForm])
def sign_in(
    request: Request,
    key: Annotated[str, Form(max_length=200)],
    services: ServicesDep,
    client_address: ClientAddress,
    request_id: RequestId,
) -> Response:
    """The key is checked and forgotten: a wrong one is never echoed into the form."""

    def again(status: int, problem: str, retry: int | None = None) -> Response:
        response = pages_of(request).render(
            request,
            "console/sign_in.html",
            status_code=status,
            signed_in=False,
            role=None,
            actor_name=None,
            section="sign-in",
            problem=problem,
            retry_minutes=retry,
        )
        if retry is not None:
            response.headers["Retry-After"] = str(retry * 60)
        return response

    try:
        opened = sign_in_staff(
            services, key=key, client_address=client_address, request_id=request_id
        )
    except Unauthenticated:
        return again(401, "key-wrong")
    except Forbidden:
        return again(403, "key-not-staff")
    except RateLimited as exc:
        return again(429, "rate-limited", retry_minutes(exc))
    response = redirect(request, f"{PREFIX}/", flash="signed-in")
    lifetime = int((opened.expires_at - services.clock()).total_seconds())
    set_cookie(
        request, response, CONSOLE_COOKIE, opened.token, max_age=max(lifetime, 1), path=PREFIX
    )
    return response


@router.post("/sign-out", dependencies=[CheckedForm])
def sign_out(
    request: Request, staff: Staff, services: ServicesDep, request_id: RequestId
) -> Response:
    sign_out_staff(
        services, actor=staff, token=request.cookies[CONSOLE_COOKIE], request_id=request_id
    )
    response = redirect(request, SIGN_IN, flash="signed-out")
    delete_cookie(request, response, CONSOLE_COOKIE, path=PREFIX)
    return response


# -- the DPO's request queue ------------------------------------------------------------------


@router.get("/requests")
def queue(
    request: Request,
    staff: Staff,
    services: ServicesDep,
    status: Annotated[str | None, Query(max_length=24)] = None,
    type: Annotated[str | None, Query(max_length=24)] = None,
    overdue: Annotated[str | None, Query(max_length=5)] = None,
) -> Response:
    """By due date, earliest first; the filters are a plain GET form (no values personal)."""
    chosen_status = Status(status) if status in {s.value for s in Status} else None
    chosen_type = RequestType(type) if type in {t.value for t in RequestType} else None
    page = request_queue(
        services,
        actor=staff,
        filters=QueueFilter(
            status=chosen_status, request_type=chosen_type, overdue=True if overdue else None
        ),
        cursor=None,
        limit=QUEUE_PAGE,
    )
    return _render(
        request,
        "console/queue.html",
        staff,
        section="requests",
        items=[
            {**item, "due_in_days": days_until(services, item["due_at"])} for item in page.items
        ],
        statuses=[s.value for s in Status],
        types=[t.value for t in RequestType],
        chosen={"status": status or "", "type": type or "", "overdue": bool(overdue)},
    )


@router.get("/requests/{rights_request}")
def request_page(
    request: Request,
    staff: Staff,
    services: ServicesDep,
    rights_request: Annotated[str, Path(max_length=64)],
) -> Response:
    shown = show_request(services, actor=staff, rights_request=rights_request)
    holds = list_member_holds(services, actor=staff, member_id=shown["member_id"])
    return _render(
        request,
        "console/request.html",
        staff,
        section="requests",
        r={**shown, "due_in_days": days_until(services, shown["due_at"])},
        open=Status(shown["status"]) in OPEN,
        holds=holds,
    )


def _back(request: Request, rights_request: str, flash: str) -> Response:
    return redirect(request, f"{PREFIX}/requests/{rights_request}", flash=flash)


@router.post("/requests/{rights_request}/approve", dependencies=[CheckedForm])
def approve(
    request: Request,
    staff: Staff,
    services: ServicesDep,
    request_id: RequestId,
    background: BackgroundTasks,
    rights_request: Annotated[str, Path(max_length=64)],
) -> Response:
    approve_request(
        services,
        actor=staff,
        rights_request=rights_request,
        request_id=request_id,
        defer=background.add_task,
    )
    return _back(request, rights_request, "request-approved")


@router.post("/requests/{rights_request}/reject", dependencies=[CheckedForm])
def reject(
    request: Request,
    staff: Staff,
    services: ServicesDep,
    request_id: RequestId,
    background: BackgroundTasks,
    rights_request: Annotated[str, Path(max_length=64)],
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    """An empty reason is refused by the use case itself (the member must read why)."""
    reject_request(
        services,
        actor=staff,
        rights_request=rights_request,
        reason=reason.strip(),
        request_id=request_id,
        defer=background.add_task,
    )
    return _back(request, rights_request, "request-rejected")


@router.post("/requests/{rights_request}/extend", dependencies=[CheckedForm])
def extend(
    request: Request,
    staff: Staff,
    services: ServicesDep,
    request_id: RequestId,
    rights_request: Annotated[str, Path(max_length=64)],
    until: Annotated[date, Form()],
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    extend_request_deadline(
        services,
        actor=staff,
        rights_request=rights_request,
        reason=reason.strip(),
        until=until,
        request_id=request_id,
    )
    return _back(request, rights_request, "request-extended")


@router.post("/requests/{rights_request}/holds", dependencies=[CheckedForm])
def place_hold(
    request: Request,
    staff: Staff,
    services: ServicesDep,
    request_id: RequestId,
    rights_request: Annotated[str, Path(max_length=64)],
    reason: Annotated[str, Form(max_length=500)] = "",
    until: Annotated[date | None, Form()] = None,
) -> Response:
    """A hold on the request's member; ``until``: to the end of that day, in the policy's zone."""
    shown = show_request(services, actor=staff, rights_request=rights_request)
    zone = ZoneInfo(services.policy.rights.timezone)
    place_member_hold(
        services,
        actor=staff,
        member_id=shown["member_id"],
        reason=reason.strip(),
        until=datetime.combine(until, time.max, tzinfo=zone) if until else None,
        request_id=request_id,
    )
    return _back(request, rights_request, "hold-placed")


@router.post("/requests/{rights_request}/holds/{hold_id}/release", dependencies=[CheckedForm])
def release_hold(
    request: Request,
    staff: Staff,
    services: ServicesDep,
    request_id: RequestId,
    background: BackgroundTasks,
    rights_request: Annotated[str, Path(max_length=64)],
    hold_id: Annotated[str, Path(max_length=64)],
) -> Response:
    shown = show_request(services, actor=staff, rights_request=rights_request)
    release_member_hold(
        services,
        actor=staff,
        member_id=shown["member_id"],
        hold_id=hold_id,
        request_id=request_id,
        defer=background.add_task,
    )
    return _back(request, rights_request, "hold-released")
