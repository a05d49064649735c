"""Redis 7 (Debian's ``redis-server``) with a config generated under ``<home>/redis``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cxstream.settings import StackSettings
from cxstream.stack.service import (
    LOCALHOST,
    Service,
    find_executable,
    render_template,
    write_if_changed,
)


def _quoted(path: Path) -> str:
    # The template wraps paths in double quotes; escape what would end or break them.
    return str(path).replace("\\", "\\\\").replace('"', '\\"')


def redis_conf(stack: StackSettings, *, data_dir: Path, log_file: Path) -> str:
    return render_template(
        "redis.conf",
        {"port": stack.redis_port, "data_dir": _quoted(data_dir), "log_file": _quoted(log_file)},
    )


class RedisService(Service):
    name = "redis"

    @property
    def port(self) -> int:
        return self.stack.redis_port

    @property
    def url(self) -> str:
        return f"redis://{LOCALHOST}:{self.port}/0"

    @property
    def config_file(self) -> Path:
        return self.dir / "redis.conf"

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    def prepare(self) -> None:
        super().prepare()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        text = redis_conf(self.stack, data_dir=self.data_dir, log_file=self.log_file)
        write_if_changed(self.config_file, text)

    def argv(self) -> list[str]:
        server = find_executable("redis-server", "install Redis (apt-get install redis-server)")
        return [server, str(self.config_file)]

    def matches(self, argv: Sequence[str]) -> bool:
        return Path(argv[0]).name == "redis-server" and str(self.config_file) in argv

    def probe(self, timeout: float) -> None:
        import redis

        client = redis.Redis(
            host=LOCALHOST, port=self.port, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        try:
            client.ping()
        finally:
            client.close()
