"""Department and kind of an alert -> rotation (BRIEF §1: the three on-call audiences).

Routes are checked in order; the first whose department matches and whose ``kinds``/``levels``
(empty = any) contain the alert's wins, so a config can send escalations of Customer Service to
a supervisors' rotation and everything else of the department to the agents' one.
"""

from __future__ import annotations

from cxstream.errors import ConfigurationError
from cxstream.notify.errors import RoutingError
from cxstream.notify.notification import Notification
from cxstream.notify.rotation import Rotation
from cxstream.settings import NotifySettings


class Router:
    def __init__(self, config: NotifySettings) -> None:
        self.rotations = {rotation.name: Rotation(rotation) for rotation in config.rotations}
        if len(self.rotations) != len(config.rotations):
            raise ConfigurationError("notify.rotations: rotation names repeat")
        for route in config.routes:
            if route.rotation not in self.rotations:
                raise ConfigurationError(
                    f"notify.routes: route for {route.department} names unknown rotation "
                    f"{route.rotation!r} (rotations: {', '.join(self.rotations) or 'none'})"
                )
        self.routes = config.routes

    def rotation_for(self, notification: Notification) -> Rotation:
        for route in self.routes:
            if route.department != notification.department:
                continue
            if route.kinds and notification.kind not in route.kinds:
                continue
            if route.levels and notification.level not in route.levels:
                continue
            return self.rotations[route.rotation]
        raise RoutingError(
            f"notify: no route for department={notification.department} "
            f"kind={notification.kind} level={notification.level} (alert {notification.alert_id})"
        )
