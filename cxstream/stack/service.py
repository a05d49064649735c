"""What every native service of the stack provides: files under the stack home, argv, health."""

from __future__ import annotations

import os
import shutil
import string
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import ClassVar

from cxstream.errors import ConfigurationError
from cxstream.settings import Settings, StackSettings

LOCALHOST = "127.0.0.1"


class Service(ABC):
    """One local service. Subclasses hold no state beyond the settings they were given."""

    name: ClassVar[str]

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    def stack(self) -> StackSettings:
        return self.settings.stack

    @property
    def dir(self) -> Path:
        """Config and data of this service."""
        return self.stack.home / self.name

    @property
    def pid_file(self) -> Path:
        return self.stack.home / "run" / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        """The service's own log (shown by ``stack status``)."""
        return self.stack.home / "logs" / f"{self.name}.log"

    @property
    def console_file(self) -> Path:
        """stdout and stderr of the process: early start-up failures land here, not in the log."""
        return self.stack.home / "logs" / f"{self.name}.console.log"

    @property
    @abstractmethod
    def port(self) -> int:
        """The port clients use."""

    @property
    def ports(self) -> tuple[int, ...]:
        """Every port the process binds (all must be free before it starts)."""
        return (self.port,)

    def prepare(self) -> None:
        """Write configs, fetch binaries, initialise storage. Idempotent; runs before each start."""
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.dir.mkdir(parents=True, exist_ok=True)

    @abstractmethod
    def argv(self) -> list[str]:
        """Command line of the foreground server process."""

    @abstractmethod
    def matches(self, argv: Sequence[str]) -> bool:
        """Whether a process with this command line is *this* stack's instance of the service."""

    @abstractmethod
    def probe(self, timeout: float) -> None:
        """One real client call; raises if the service does not answer correctly."""

    def env(self) -> dict[str, str] | None:
        """Environment of the process (``None``: inherit ours)."""
        return None

    def healthy(self, timeout: float = 2.0) -> bool:
        try:
            self.probe(timeout)
        except Exception:  # any client error means "not (yet) healthy"
            return False
        return True


def render_template(name: str, values: Mapping[str, object]) -> str:
    """A file shipped in this package with ``${key}`` placeholders filled in."""
    text = resources.files(__package__).joinpath(name).read_text(encoding="utf-8")
    try:
        return string.Template(text).substitute({k: str(v) for k, v in values.items()})
    except KeyError as exc:
        raise ConfigurationError(f"template {name} needs a value for {exc}") from exc


def package_file(name: str) -> str:
    """Contents of a file shipped in this package, unchanged."""
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def write_if_changed(path: Path, text: str) -> None:
    """Write ``path`` only when its content differs (keeps mtimes meaningful for humans)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def find_executable(name: str, hint: str, extra_dirs: Sequence[str] = ()) -> str:
    """Absolute path of a program on PATH (or in ``extra_dirs``, e.g. /usr/sbin for non-root)."""
    search = os.pathsep.join([os.environ.get("PATH", os.defpath), *extra_dirs])
    found = shutil.which(name, path=search)
    if found is None:
        raise ConfigurationError(f"{name} not found; {hint}")
    return found
