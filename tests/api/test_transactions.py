"""No transaction outlives its endpoint's thread (the stall the HTTP bench found)."""

from __future__ import annotations

import inspect

import pytest
from fastapi.routing import APIRoute

from api.deps import in_transaction
from api.routers import audit, clients, members, reads
from core.db import UnitOfWork


class RecordingSession:
    def __init__(self) -> None:
        self.rolled_back = 0

    def rollback(self) -> None:
        self.rolled_back += 1

    def close(self) -> None:
        pass


def test_every_endpoint_that_takes_the_request_unit_of_work_rolls_back_in_its_thread() -> None:
    routes = [
        route
        for router in (
            reads.router,
            members.router,
            clients.router,
            audit.router,
            audit.members_router,
        )
        for route in router.routes
        if isinstance(route, APIRoute) and "uow" in inspect.signature(route.endpoint).parameters
    ]
    assert len(routes) >= 7  # the write and audited-read endpoints
    for route in routes:
        assert hasattr(route.endpoint, "__wrapped__"), f"{route.path} is not in_transaction"


def test_in_transaction_rolls_back_when_the_endpoint_fails() -> None:
    session = RecordingSession()
    uow = UnitOfWork(lambda: session)  # type: ignore[arg-type, return-value]

    @in_transaction
    def endpoint(*, uow: UnitOfWork) -> None:
        raise RuntimeError("boom")

    with uow, pytest.raises(RuntimeError):
        endpoint(uow=uow)
    assert session.rolled_back >= 2  # in the endpoint, then again on exit (harmless)


def test_in_transaction_leaves_a_successful_endpoint_alone() -> None:
    session = RecordingSession()
    uow = UnitOfWork(lambda: session)  # type: ignore[arg-type, return-value]

    @in_transaction
    def endpoint(*, uow: UnitOfWork) -> str:
        return "ok"

    with uow:
        assert endpoint(uow=uow) == "ok"
        assert session.rolled_back == 0
