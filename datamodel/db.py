"""Database URLs and small helpers shared by the service, the loaders and the migrations."""

from __future__ import annotations

from urllib.parse import urlsplit


def psycopg_url(url: str) -> str:
    """A libpq/psycopg URL from either a plain or an SQLAlchemy-style URL."""
    for prefix in ("postgresql+psycopg://", "postgresql+psycopg2://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix):]
    return url


def sqlalchemy_url(url: str) -> str:
    """An SQLAlchemy URL that uses psycopg 3."""
    return "postgresql+psycopg://" + psycopg_url(url)[len("postgresql://"):]


def database_name(url: str) -> str:
    return urlsplit(psycopg_url(url)).path.lstrip("/")


def with_database(url: str, name: str) -> str:
    """The same server URL pointing at another database."""
    parts = urlsplit(psycopg_url(url))
    return parts._replace(path="/" + name).geturl()
