"""The members' privacy centre, ``/privacy/``: the pages of ``/v1/me`` for a person.

Each handler parses a form or a path, calls one use case (``gate.signin``,
``gate.me``, ``gate.rights``: the API's own) and renders a page, or redirects
after a form (POST → 303 → GET). Only the two sign-in pages are open without a
session; the session is the one the sign-in use case opens (the ``mgm_``
token), held in an HttpOnly cookie, ending when the token does.

Nothing personal goes into a URL: the sign-in challenge waits in a cookie
between the two forms, the contact and the code travel in POST bodies, and
paths carry only a request id or an entry's sequence number.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import structlog
from fastapi import APIRouter, BackgroundTasks, Depends, Form, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from api.deps import ClientAddress, RequestId, ServicesDep
from core.errors import InvalidInput, RateLimited
from gate.context import Services
from gate.me import prove_own_entry, read_own_access_log, read_own_consents, read_own_record
from gate.me import record_own_consent as record_own_consent_use_case
from gate.rights import (
    RequestOpen,
    cancel_own_request,
    download_copy,
    list_own_requests,
    submit_own_request,
)
from gate.signin import request_sign_in_code, sign_out, verify_sign_in_code
from principals.actor import Actor
from principals.members import authenticate_member, well_formed_token
from principals.signin import ChallengeClosed, InvalidCode
from rights.states import OPEN, Status
from web.i18n import NOTIFY_LOCALE, requested_locale
from web.pages import (
    CheckedForm,
    SignInRequired,
    days_until,
    pages_of,
    redirect,
    retry_minutes,
    web_route_class,
)
from web.security import (
    CHALLENGE_COOKIE,
    SESSION_COOKIE,
    delete_cookie,
    set_cookie,
)

PREFIX = "/privacy"
SIGN_IN = f"{PREFIX}/sign-in"
CODE = f"{PREFIX}/sign-in/code"
ACCESS_LOG_PAGE = 50

router = APIRouter(
    prefix=PREFIX,
    include_in_schema=False,
    route_class=web_route_class(sign_in=SIGN_IN, error_template="privacy/error.html"),
)


# -- dependencies ---------------------------------------------------------------------


def signed_in_member(request: Request, services: ServicesDep) -> Actor:
    """The member whose session the cookie holds, in a short read-only transaction of its
    own (as the API's bearer check); no session: to the sign-in page."""
    token = request.cookies.get(SESSION_COOKIE)
    if not well_formed_token(token):
        raise SignInRequired()
    with services.reading() as session:
        actor = authenticate_member(session, token, now=services.clock())
    request.state.actor_id = actor.id
    structlog.contextvars.bind_contextvars(actor=actor.id)
    return actor


Member = Annotated[Actor, Depends(signed_in_member)]


def _locale(request: Request) -> str:
    return requested_locale(request)[0]


def _render(request: Request, template: str, **context: Any) -> Response:
    return pages_of(request).render(request, template, **context)


# -- signing in -------------------------------------------------------------------------


@router.get("/")
def home(request: Request, member: Member) -> Response:
    return _render(request, "privacy/home.html", signed_in=True, section="home")


@router.get("/sign-in")
def sign_in_form(request: Request) -> Response:
    return _render(request, "privacy/sign_in.html", signed_in=False, section="sign-in")


@router.post("/sign-in", dependencies=[CheckedForm])
def sign_in(
    request: Request,
    identifier: Annotated[str, Form(max_length=320)],
    services: ServicesDep,
    request_id: RequestId,
    client_address: ClientAddress,
    background: BackgroundTasks,
) -> Response:
    """Ask for a code for a phone number or an e-mail address: always the code page, member
    or not (the use case's no-enumeration answer); the challenge waits in a cookie."""
    value = identifier.strip()
    field_name = "email" if "@" in value else "phone"
    try:
        started = request_sign_in_code(
            services,
            field_name=field_name,
            value=value,
            locale=NOTIFY_LOCALE[_locale(request)],
            client_address=client_address,
            request_id=request_id,
            # The code is sent once the answer has gone, as the API does.
            defer=background.add_task,
        )
    except InvalidInput:
        # Not echoed back: the form is shown empty with what was wrong.
        return pages_of(request).render(
            request,
            "privacy/sign_in.html",
            status_code=422,
            signed_in=False,
            section="sign-in",
            problem="identifier-invalid",
        )
    response = redirect(request, CODE)
    lifetime = int((started.expires_at - services.clock()).total_seconds())
    set_cookie(
        request,
        response,
        CHALLENGE_COOKIE,
        started.challenge,
        max_age=max(lifetime, 1),
        path=SIGN_IN,  # sent to the two sign-in pages only
    )
    return response


@router.get("/sign-in/code")
def code_form(request: Request) -> Response:
    if CHALLENGE_COOKIE not in request.cookies:
        return redirect(request, SIGN_IN)
    return _render(request, "privacy/code.html", signed_in=False, section="sign-in")


@router.post("/sign-in/code", dependencies=[CheckedForm])
def verify_code(
    request: Request,
    code: Annotated[str, Form(max_length=64)],
    services: ServicesDep,
    request_id: RequestId,
    client_address: ClientAddress,
) -> Response:
    challenge = request.cookies.get(CHALLENGE_COOKIE)
    if not challenge:
        return redirect(request, SIGN_IN, flash="code-expired")

    def again(status: int, problem: str, **extra: Any) -> Response:
        return pages_of(request).render(
            request,
            "privacy/code.html",
            status_code=status,
            signed_in=False,
            section="sign-in",
            problem=problem,
            **extra,
        )

    try:
        opened = verify_sign_in_code(
            services,
            challenge=challenge,
            code=code,
            client_address=client_address,
            request_id=request_id,
        )
    except InvalidInput:
        return again(422, "code-malformed")
    except InvalidCode as exc:
        left = int(exc.extra.get("attempts_left", 0))  # type: ignore[call-overload]
        if left <= 0:
            response = redirect(request, SIGN_IN, flash="code-burned")
            delete_cookie(request, response, CHALLENGE_COOKIE, path=SIGN_IN)
            return response
        return again(401, "code-wrong", attempts_left=left)
    except ChallengeClosed:
        response = redirect(request, SIGN_IN, flash="code-expired")
        delete_cookie(request, response, CHALLENGE_COOKIE, path=SIGN_IN)
        return response
    except RateLimited as exc:
        response = again(429, "rate-limited", retry_minutes=retry_minutes(exc))
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    response = redirect(request, f"{PREFIX}/", flash="signed-in")
    lifetime = int((opened.expires_at - services.clock()).total_seconds())
    set_cookie(request, response, SESSION_COOKIE, opened.token, max_age=max(lifetime, 1))
    delete_cookie(request, response, CHALLENGE_COOKIE, path=SIGN_IN)
    return response


@router.post("/sign-out", dependencies=[CheckedForm])
def sign_out_now(
    request: Request, member: Member, services: ServicesDep, request_id: RequestId
) -> Response:
    sign_out(services, actor=member, request_id=request_id)
    response = redirect(request, SIGN_IN, flash="signed-out")
    delete_cookie(request, response, SESSION_COOKIE)
    return response


# -- my data ------------------------------------------------------------------------------


@router.get("/data")
def my_data(
    request: Request,
    member: Member,
    services: ServicesDep,
    request_id: RequestId,
    show: Annotated[str | None, Query(max_length=10)] = None,
) -> Response:
    """Masked first (each field's default view); ``?show=all`` reveals the values, a read of
    the member's own in clear. Either is recorded, as ``GET /v1/me`` is."""
    reveal = show == "all"
    record = read_own_record(
        services, actor=member, request_id=request_id, view="clear" if reveal else "masked"
    )
    return _render(
        request,
        "privacy/data.html",
        signed_in=True,
        section="data",
        fields=[(name, value, record.views[name]) for name, value in record.fields.items()],
        revealed=reveal,
    )


# -- my consents --------------------------------------------------------------------------


@router.get("/consents")
def my_consents(request: Request, member: Member, services: ServicesDep) -> Response:
    purposes = read_own_consents(services, actor=member)
    ordinary = {pid: p for pid, p in purposes.items() if not p["separate_consent"]}
    separate = {pid: p for pid, p in purposes.items() if p["separate_consent"]}
    return _render(
        request,
        "privacy/consents.html",
        signed_in=True,
        section="consents",
        ordinary=ordinary,
        separate=separate,
    )


@router.post("/consents", dependencies=[CheckedForm])
def change_consent(
    request: Request,
    member: Member,
    services: ServicesDep,
    request_id: RequestId,
    purpose: Annotated[str, Form(max_length=64)],
    status: Annotated[str, Form(pattern="^(granted|withdrawn)$")],
) -> Response:
    """One purpose per form: a separate consent can only ever be given on its own."""
    record_own_consent_use_case(
        services,
        actor=member,
        purposes=[purpose],
        status=status,  # type: ignore[arg-type]  # the pattern above
        request_id=request_id,
    )
    return redirect(request, f"{PREFIX}/consents", flash=f"consent-{status}")


# -- who received my data -------------------------------------------------------------------


@router.get("/access-log")
def my_access_log(
    request: Request,
    member: Member,
    services: ServicesDep,
    before: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """Newest first, a page at a time (``before``: the opaque cursor of the page before)."""
    page = read_own_access_log(
        services, actor=member, cursor=before, limit=ACCESS_LOG_PAGE, newest_first=True
    )
    return _render(
        request,
        "privacy/access_log.html",
        signed_in=True,
        section="access-log",
        items=[_shown_entry(services, item) for item in page.items],
        next_cursor=page.next_cursor,
    )


def _shown_entry(services: Services, item: dict[str, Any]) -> dict[str, Any]:
    zone = ZoneInfo(services.policy.rights.timezone)
    return {**item, "at": datetime.fromisoformat(item["at"]).astimezone(zone)}


@router.get("/access-log/{seq}/verify")
def verify_entry(
    request: Request,
    member: Member,
    services: ServicesDep,
    seq: Annotated[int, Path(ge=1, le=2**62)],
) -> Response:
    """The entry's inclusion proof, embedded as data for ``proof.js`` to check here, in the
    member's browser, against the signed checkpoint (the server is not asked to vouch)."""
    proof = prove_own_entry(services, actor=member, seq=seq)
    return _render(
        request,
        "privacy/verify.html",
        signed_in=True,
        section="access-log",
        seq=seq,
        proof=proof,
    )


# -- my requests ------------------------------------------------------------------------


@router.get("/requests")
def my_requests(request: Request, member: Member, services: ServicesDep) -> Response:
    items = list_own_requests(services, actor=member)
    correctable = [
        name
        for name in services.policy.fields
        if name not in services.policy.rights.correction.not_correctable
    ]
    return _render(
        request,
        "privacy/requests.html",
        signed_in=True,
        section="requests",
        requests=[
            {
                **item,
                "due_in_days": days_until(services, item["due_at"]),
                "open": Status(item["status"]) in OPEN,
            }
            for item in items
        ],
        correctable=correctable,
        problem=None,
    )


@router.post("/requests", dependencies=[CheckedForm])
def submit_request(
    request: Request,
    member: Member,
    services: ServicesDep,
    request_id: RequestId,
    background: BackgroundTasks,
    type: Annotated[str, Form(pattern="^(access|correction)$")],
    field: Annotated[str | None, Form(max_length=64)] = None,
    value: Annotated[str | None, Form(max_length=2000)] = None,
) -> Response:
    """An access or a correction request. A deletion has its own form, behind a confirmation
    step (``/requests/delete``)."""
    changes = None
    if type == "correction":
        if not field or value is None or not value.strip():
            return redirect(request, f"{PREFIX}/requests", flash="correction-incomplete")
        changes = {field: _typed(services, field, value.strip())}
    try:
        submit_own_request(
            services,
            actor=member,
            request_type=type,
            changes=changes,
            request_id=request_id,
            locale=NOTIFY_LOCALE[_locale(request)],
            defer=background.add_task,
        )
    except RequestOpen:
        return redirect(request, f"{PREFIX}/requests", flash="request-open")
    except InvalidInput:
        return redirect(request, f"{PREFIX}/requests", flash="correction-invalid")
    return redirect(request, f"{PREFIX}/requests", flash=f"request-{type}")


def _typed(services: Services, field: str, value: str) -> str | int:
    """A form sends text; an integer field gets an integer (the vault validates the rest)."""
    spec = services.policy.fields.get(field)
    if spec is not None and spec.type == "integer":
        try:
            return int(value)
        except ValueError:
            return value  # refused by the validation, as any other bad value
    return value


@router.get("/requests/delete")
def confirm_deletion(request: Request, member: Member) -> Response:
    return _render(request, "privacy/delete.html", signed_in=True, section="requests", problem=None)


@router.post("/requests/delete", dependencies=[CheckedForm])
def submit_deletion(
    request: Request,
    member: Member,
    services: ServicesDep,
    request_id: RequestId,
    background: BackgroundTasks,
    confirm: Annotated[str | None, Form(max_length=20)] = None,
) -> Response:
    """Runs only with the confirmation box ticked; a deletion that ran at once ends the
    session with the data (the member is signed out and told so)."""
    if confirm != "delete":
        return pages_of(request).render(
            request,
            "privacy/delete.html",
            status_code=422,
            signed_in=True,
            section="requests",
            problem="confirm-missing",
        )
    try:
        shown = submit_own_request(
            services,
            actor=member,
            request_type="deletion",
            changes=None,
            request_id=request_id,
            locale=NOTIFY_LOCALE[_locale(request)],
            defer=background.add_task,
        )
    except RequestOpen:
        return redirect(request, f"{PREFIX}/requests", flash="request-open")
    if shown.request["status"] == Status.COMPLETED:
        response = redirect(request, SIGN_IN, flash="deleted")
        delete_cookie(request, response, SESSION_COOKIE)
        return response
    return redirect(request, f"{PREFIX}/requests", flash="request-deletion")


@router.post("/requests/{rights_request}/cancel", dependencies=[CheckedForm])
def cancel_request(
    request: Request,
    member: Member,
    services: ServicesDep,
    request_id: RequestId,
    rights_request: Annotated[str, Path(max_length=64)],
) -> Response:
    cancel_own_request(services, actor=member, rights_request=rights_request, request_id=request_id)
    return redirect(request, f"{PREFIX}/requests", flash="request-cancelled")


@router.get("/requests/{rights_request}/copy")
def download(
    request: Request,
    member: Member,
    services: ServicesDep,
    request_id: RequestId,
    rights_request: Annotated[str, Path(max_length=64)],
) -> Response:
    """The access copy as a JSON file (the API's document), recorded as the API's download.
    An expired copy is the section's error page (``410 copy-expired``), as every use case's
    refusal is."""
    copy = download_copy(
        services, actor=member, rights_request=rights_request, request_id=request_id
    )
    return JSONResponse(
        copy.document,
        headers={
            "Content-Disposition": (
                f'attachment; filename="memberguard-copy-{rights_request}.json"'
            ),
            "Audit-Seq": str(copy.audit_seq),
        },
    )
