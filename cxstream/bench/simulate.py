"""``cxstream bench simulate``: generator, encode and publish rates of the simulator."""

from cxstream.simulate.benchmark import run

__all__ = ["run"]
