"""Errors of the dashboards package."""

from __future__ import annotations

from cxstream.errors import CxStreamError, ServiceError


class DashboardError(CxStreamError):
    """A board is malformed, drifted from its exported JSON, or a panel's SQL is wrong."""


class MacroError(DashboardError):
    """A panel's SQL uses a plugin macro or template variable that cannot be expanded."""


class PanelQueryError(DashboardError):
    """ClickHouse refused a panel's SQL, or returned columns its panel type cannot show."""

    def __init__(self, message: str, *, board: str, panel: str) -> None:
        super().__init__(message)
        self.board = board
        self.panel = panel


class GrafanaPushError(ServiceError):
    """Grafana could not be reached, refused the token, or refused a board."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        #: the HTTP status Grafana answered with, when it answered
        self.status = status
