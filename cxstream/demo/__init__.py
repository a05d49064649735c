"""``cxstream demo``: the whole platform as one main job on one machine.

Starts the native local stack, applies topics and ClickHouse migrations, runs every processor
(one Faust worker), the ClickHouse sink, the HTTP API, the notifier and a local on-call receiver
as child processes, publishes simulated bank traffic (plus poison pills for the dead-letter
path), and shows live what each part has done: throughput, lag, the KPIs against their targets
(computed by the scorecard board's own SQL), the latest alerts on-call received and security
flags. When the traffic is in, it checks the results exactly against what was produced. Ctrl-C
stops everything cleanly.

Modules: :mod:`.namespace` (where a run lives), :mod:`.children` (child processes and the on-call
wiring), :mod:`.observe` (reading the services), :mod:`.checks` (the final verdict),
:mod:`.view` (the terminal view), :mod:`.cli` (the command).
"""

from cxstream.demo.cli import demo

__all__ = ["demo"]
