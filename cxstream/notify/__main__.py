"""``python -m cxstream.notify serve|receiver`` (the same group as ``cxstream notify``)."""

from cxstream.notify.cli import notify

if __name__ == "__main__":
    notify()
