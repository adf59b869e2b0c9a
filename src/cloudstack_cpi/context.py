"""What one CPI call knows: the request's context, the config, the CloudStack client.

Everything expensive (reading the config, importing the HTTP and TLS modules,
connecting) happens on first use, so methods that need none of it (``info``) stay
cheap: every BOSH call is a new process.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the types only: importing their modules is what the lazy properties below put off
    from .cloudstack.client import Client
    from .cloudstack.gateway import Gateway
    from .config import Config
    from .log import Logger


class CallContext:
    def __init__(self, *, method: str, api_version: int, context: dict, config_path: str | None, log: Logger) -> None:
        self.method = method
        self.api_version = api_version
        self.request_context = context
        self.config_path = config_path
        self.log = log

    @property
    def director_uuid(self) -> str | None:
        value = self.request_context.get("director_uuid")
        return value if isinstance(value, str) and value else None

    @property
    def stemcell_api_version(self) -> int | None:
        vm = self.request_context.get("vm")
        stemcell = vm.get("stemcell") if isinstance(vm, dict) else None
        version = stemcell.get("api_version") if isinstance(stemcell, dict) else None
        return version if isinstance(version, int) and not isinstance(version, bool) else None

    @cached_property
    def config(self) -> Config:
        from . import config as config_module
        from .errors import CpiError

        if not self.config_path:
            raise CpiError("No CPI config file given: usage: bin/cpi CONFIG_PATH")
        config = config_module.load(self.config_path, self.request_context)
        self.log.set_level(config.cloudstack.log_level)
        self._register_secrets(config)
        return config

    def _register_secrets(self, config: Config) -> None:
        self.log.add_secret(config.cloudstack.secret_access_key.get_secret_value())
        if config.agent.mbus:
            self.log.add_secret(config.agent.mbus)
            password = _url_password(config.agent.mbus)
            self.log.add_secret(password)
        if config.agent.blobstore:
            for key, value in config.agent.blobstore.options.items():
                if isinstance(value, str) and ("password" in key or "secret" in key or "key" in key):
                    self.log.add_secret(value)

    @cached_property
    def client(self) -> Client:
        from .cloudstack.client import Client, RetryPolicy

        cs = self.config.cloudstack
        client = Client(
            cs.endpoint,
            cs.api_key,
            cs.secret_access_key.get_secret_value(),
            log=self.log,
            verify=not cs.skip_verify_ssl,
            ca_cert=cs.ca_cert,
            connect_timeout=cs.timeout.http_connect,
            read_timeout=cs.timeout.http_read,
            retry=RetryPolicy(attempts=cs.api_retries),
        )
        if cs.project:
            from .cloudstack.gateway import Gateway
            from .projects import resolve

            client.project_id = resolve(Gateway(client, cs.timeout), cs.project)
        return client

    @cached_property
    def cloud(self) -> Gateway:
        """The typed gateway: what actions use to reach CloudStack."""
        from .cloudstack.gateway import Gateway

        return Gateway(self.client, self.config.cloudstack.timeout)

    def close(self) -> None:
        if "client" in self.__dict__:
            self.client.close()


def _url_password(url: str) -> str | None:
    from urllib.parse import urlsplit

    try:
        return urlsplit(url).password
    except ValueError:
        return None
