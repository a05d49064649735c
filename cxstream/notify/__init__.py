"""On-call delivery of alerts and security flags (``cxstream notify``).

``service`` consumes the alert and security-flag topics, ``routing`` picks the rotation,
``rotation`` the member on call at the alert's firing time, ``channels`` deliver (signed webhook,
chat webhook, e-mail) with ``retry``; ``delivery_log`` makes delivery idempotent across restarts
and holds acknowledgements made through ``ack``. ``receiver`` is the helper for integrators.
"""
