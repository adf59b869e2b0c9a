"""The ``Simulator`` object: state + HTTP server in a daemon thread."""
from __future__ import annotations

import shutil
import ssl
import tempfile
import threading
from pathlib import Path

from .commands import load_all
from .faults import FaultConfig, FaultInjector
from .numeric_ids import NumericIds
from .server import Handler, SimHTTPServer
from .state import State, load_scenario
from .timing import Timing
from .uploads import Uploads


class Simulator:
    def __init__(self, scenario="advanced", host: str = "127.0.0.1", port: int = 0, job_seconds: float | None = None,
                 seed: int | None = None, faults: FaultConfig | None = None, device_dir=None,
                 tls_cert=None, tls_key=None, numeric_ids: bool = False, timing: str = "instant",
                 timing_scale: float = 1.0):
        """``timing`` names the job durations ("instant", "realistic": timing.py); ``timing_scale`` multiplies
        them; ``job_seconds``, when given, is the one duration of every job instead (the profile is unused)."""
        timing_ = Timing(timing, timing_scale, job_seconds)
        load_all()
        self._scenario_data = load_scenario(scenario)
        self.scenario_name = self._scenario_data.get("name", "custom")
        self.host = host
        self.port = port
        self.seed = seed
        self.tls_cert, self.tls_key = tls_cert, tls_key
        if bool(tls_cert) != bool(tls_key):
            raise ValueError("tls_cert and tls_key must be given together")
        self._datadir = Path(tempfile.mkdtemp(prefix="cloudstack-sim-"))
        self.device_dir = Path(device_dir) if device_dir else None
        if self.device_dir:
            self.device_dir.mkdir(parents=True, exist_ok=True)
        # Ids shown as numbers, as CloudStack before 4.0 answered (numeric_ids.py).
        self.numeric_ids = NumericIds() if numeric_ids else None
        self._injector = FaultInjector(faults or FaultConfig(), seed)
        self._state = State(self._scenario_data, self._datadir, self.device_dir, self._injector, timing=timing_)
        self._uploads = Uploads(self)
        self._log_lock = threading.Lock()
        self._request_log: list[tuple[str, dict]] = []
        self._server: SimHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._ticker: threading.Thread | None = None
        self._stopping = threading.Event()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Simulator:
        if self._server is not None:
            return self
        server = SimHTTPServer((self.host, self.port), Handler, self)
        if self.tls_cert:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(self.tls_cert, self.tls_key)
            server.socket = ctx.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
        self._server = server
        self.port = server.server_address[1]
        self._state.base_url = f"{self.scheme}://{self._public_host}:{self.port}"
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="cloudstack-simulator", daemon=True)
        self._thread.start()
        self._ticker = threading.Thread(target=self._tick_loop, name="cloudstack-simulator-jobs", daemon=True)
        self._ticker.start()
        return self

    def _tick_loop(self) -> None:
        while not self._stopping.wait(0.05):
            st = self._state
            if st.jobs.has_pending():
                with st.lock:
                    st.jobs.tick()

    def stop(self) -> None:
        self._stopping.set()
        self._uploads.stop_event.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
        shutil.rmtree(self._datadir, ignore_errors=True)

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ properties
    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"

    @property
    def _public_host(self) -> str:
        return "127.0.0.1" if self.host in ("", "0.0.0.0") else ("[::1]" if self.host == "::" else self.host)

    @property
    def endpoint(self) -> str:
        return f"{self.scheme}://{self._public_host}:{self.port}/client/api"

    @property
    def api_key(self) -> str:
        return self._state.account["api_key"]

    @property
    def secret_key(self) -> str:
        return self._state.account["secret_key"]

    @property
    def state(self) -> State:
        """The live state (hold ``state.lock`` while reading it)."""
        return self._state

    # ------------------------------------------------------------------ test helpers
    def inventory(self) -> dict:
        with self._state.lock:
            return self._state.inventory()

    def _log_request(self, command: str, params: dict) -> None:
        with self._log_lock:
            self._request_log.append((command, params))

    @property
    def request_log(self) -> list[tuple[str, dict]]:
        with self._log_lock:
            return list(self._request_log)

    def clear_request_log(self) -> None:
        with self._log_lock:
            self._request_log.clear()

    @property
    def fault_counts(self) -> dict[str, int]:
        return self._injector.snapshot_counts()

    def set_job_seconds(self, seconds: float | None) -> None:
        """Every job from now on runs ``seconds``; None gives the timing profile back its say."""
        with self._state.lock:
            self._state.jobs.job_seconds = seconds

    def set_timing(self, profile: str, scale: float | None = None) -> None:
        """Use the timing profile ``profile`` (and ``scale``) for jobs submitted from now on; clears job_seconds."""
        with self._state.lock:
            current = self._state.jobs.timing
            self._state.jobs.timing = Timing(profile, current.scale if scale is None else scale)

    @property
    def timing(self) -> Timing:
        return self._state.jobs.timing

    def set_faults(self, faults: FaultConfig) -> None:
        self._injector.set_config(faults)

    def script_fault(self, command: str, kind: str, times: int = 1) -> None:
        """The next ``times`` requests of ``command`` get the fault ``kind`` (error: HTTP 500; drop; throttle;
        drop_after_action: acted on, answer lost) or, for ``job_failure``, its next jobs fail with 530."""
        self._injector.script(command, kind, times)

    def template_bytes(self, template_id: str) -> Path | None:
        """Path of the stored file of a template (None when it has no bytes, e.g. scenario templates)."""
        with self._state.lock:
            tpl = self._state.templates.get(template_id)
            if tpl is None:
                raise KeyError(template_id)
            return Path(tpl["_file"]) if tpl.get("_file") else None

    def volume_path(self, volume_id: str) -> Path | None:
        """Where a volume's bytes currently are (device file while attached with device_dir, else the stored
        content file), or None when the volume never had content."""
        with self._state.lock:
            vol = self._state.volumes.get(volume_id)
            if vol is None:
                raise KeyError(volume_id)
            if vol.get("_device_path"):
                return Path(vol["_device_path"])
            return Path(vol["_content"]) if vol.get("_content") else None
