"""Seeded synthetic bank traffic for cxstream (``cxstream simulate``).

The generator (:func:`generate`) is pure: a :class:`SimulationConfig` in, a reproducible stream of
``SimEvent(name, record)`` out (records valid against ``schemas/avro/<name>``, timestamps in int
epoch milliseconds), with the ground truth of injected security scenarios written to a
:class:`LabelSink`. Publishing to Kafka is a separate step (:mod:`cxstream.simulate.publish`).

Importing this package imports neither Kafka clients nor Faust.
"""

from __future__ import annotations

from cxstream.simulate.catalogue import PRODUCTS, Product
from cxstream.simulate.config import SCENARIO_TYPES, SimulationConfig, parse_duration, parse_start
from cxstream.simulate.labels import JsonlLabelSink, LabelSink, ListLabelSink, ScenarioLabel
from cxstream.simulate.population import Customer, Population, StaffMember, build_population
from cxstream.simulate.traffic import SimEvent, generate

__all__ = [
    "PRODUCTS",
    "SCENARIO_TYPES",
    "Customer",
    "JsonlLabelSink",
    "LabelSink",
    "ListLabelSink",
    "Population",
    "Product",
    "ScenarioLabel",
    "SimEvent",
    "SimulationConfig",
    "StaffMember",
    "build_population",
    "generate",
    "parse_duration",
    "parse_start",
]
