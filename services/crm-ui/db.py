"""One database session per request, closed (and rolled back if uncommitted) at teardown."""

from __future__ import annotations

from flask import Flask, current_app, g
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from moked.db.session import engine_for
from moked.settings import Settings


def app_settings() -> Settings:
    """The settings the app was created with (`create_app(settings)`)."""
    value: Settings = current_app.config["MOKED_SETTINGS"]
    return value


def engine() -> Engine:
    """The engine of the app's settings."""
    return engine_for(app_settings().database_url)


def db() -> Session:
    session: Session | None = g.get("_db")
    if session is None:
        session = Session(engine(), expire_on_commit=False)
        g._db = session
    return session


def _close(exc: BaseException | None) -> None:
    session: Session | None = g.pop("_db", None)
    if session is not None:
        if exc is not None:
            session.rollback()
        session.close()


def init_app(app: Flask) -> None:
    app.teardown_appcontext(_close)
