"""cxstream: real-time customer-experience platform for banks."""

__version__ = "0.1.0"
