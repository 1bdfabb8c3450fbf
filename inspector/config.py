# Kept whole: one schema; the sections, their checks and the loading that runs them read together.
"""The one configuration file: TOML in, validated typed objects out.

Every key is checked at start-up. Unknown keys and bad values become one
``key.path: reason`` line each, gathered into a single ``ConfigError``, so an
integrator fixes the whole file in one pass. With ``runnable=True`` (``inspector
run`` and ``inspector check-config``) the same pass also checks what running
needs on this box: a model that loads, camera folders and files that exist, a
store that can be written. Relative paths in a file, defaults included, resolve
against the file's folder; without a file (embedded defaults) and in environment
overrides they resolve against the working directory. Paths and secrets may be
overridden from the environment: ``INSPECTOR__STORAGE__ROOT=/data`` sets
``storage.root`` and ``INSPECTOR__CAMERAS__0__URL=rtsp://...`` sets ``cameras[0].url``.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import socket
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from inspector.errors import ConfigError, InspectorError

ENV_PREFIX = "INSPECTOR__"
ENDPOINT_SCHEMES = ("inproc://", "ipc://", "tcp://")
STREAM_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://")


class _Strict(BaseModel):
    """Base of every config section: unknown keys are errors, objects are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    base = (info.context or {}).get("base_dir")
    value = value.expanduser()
    return value if value.is_absolute() or base is None else (Path(base) / value).resolve()


def _runnable(info: ValidationInfo) -> bool:
    """Whether this validation also checks the box (files, model), as ``inspector run`` needs."""
    return bool((info.context or {}).get("runnable"))


def _path_field(check: Callable[[Path], None]) -> Callable[..., Path | None]:
    """A path field's validator: resolve the path and, when ``runnable``, ``check`` it."""

    def validate(value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        value = _resolve_path(value, info)
        if _runnable(info):
            check(value)
        return value

    return validate


def _existing_folder(path: Path) -> None:
    if not path.is_dir():
        raise ValueError(f"{path} {'is not a folder' if path.exists() else 'does not exist'}")


def _existing_file(path: Path) -> None:
    if not path.is_file():
        raise ValueError(f"{path} {'is not a file' if path.exists() else 'does not exist'}")


def _genicam_producer(cti: Path) -> None:
    _existing_file(cti)
    if importlib.util.find_spec("harvesters") is None:  # the source needs it only when opened
        raise ValueError("GenICam cameras need the 'genicam' extra: "
                         "pip install 'edge-inspector[genicam]'")


def _fitted_model(path: Path) -> None:
    _existing_folder(path)
    from inspector.model import load_model  # onnxruntime: only when checking a box

    try:  # the card and the ONNX bytes verified exactly as run loads them
        load_model(path)
    except InspectorError as exc:
        raise ValueError(str(exc)) from None


_model_path = _path_field(_fitted_model)


def _log_file(path: Path) -> None:
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a file")
    _writable_folder(path.parent)


def _writable_folder(folder: Path) -> None:
    """``folder`` is, or can become, a folder this process writes in (run creates it)."""
    existing = folder
    while not existing.exists():  # the nearest existing folder is where the new ones go
        existing = existing.parent
    if not existing.is_dir():
        problem = "is not a folder"
    elif not os.access(existing, os.W_OK | os.X_OK):
        problem = "is not writable"
    else:
        return
    where = "" if existing == folder else f"{folder} cannot be created: "
    raise ValueError(f"{where}{existing} {problem}")


def _check_endpoint(value: str) -> str:
    if not value.startswith(ENDPOINT_SCHEMES):
        raise ValueError(f"must start with one of {', '.join(ENDPOINT_SCHEMES)}, got {value!r}")
    return value


Seconds = Annotated[float, Field(gt=0)]


class WatchdogConfig(_Strict):
    """When a source counts as dead and how fast it is retried."""

    no_frame_timeout_s: Seconds = 5.0
    backoff_initial_s: Seconds = 0.5
    backoff_max_s: Seconds = 30.0
    open_timeout_s: Seconds = 10.0  # OpenCV/FFmpeg open timeout for device and stream sources
    read_timeout_s: Seconds = 5.0  # OpenCV/FFmpeg read timeout for device and stream sources

    @model_validator(mode="after")
    def _backoff_order(self) -> WatchdogConfig:
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_max_s must be >= backoff_initial_s")
        return self


class _CameraBase(_Strict):
    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    fps: Annotated[float, Field(gt=0, le=1000)] | None = None  # None: as fast as the source gives
    encoding: Literal["raw", "jpeg", "png"] = "raw"  # how frames travel on the bus
    jpeg_quality: Annotated[int, Field(ge=1, le=100)] = 90
    trigger: Literal["free_run", "software"] = "free_run"
    watchdog: WatchdogConfig = WatchdogConfig()
    # A frame older than this on arrival, or whose verdict would be later, gets "error".
    latency_budget_ms: Annotated[float, Field(gt=0)] = 1000.0
    mm_per_pixel: Annotated[float, Field(gt=0)] | None = None  # defect areas in mm² when set
    # The score-drift alarm assumes most parts are good; off for a camera that mostly sees
    # defects (a rework station, a replayed test set).
    drift_alarm: bool = True


class FolderCamera(_CameraBase):
    """Replays the images of a folder in sorted order."""

    type: Literal["folder"]
    path: Path
    recursive: bool = True
    loop: bool = True

    _resolve = field_validator("path")(_path_field(_existing_folder))


class VideoCamera(_CameraBase):
    """Replays a video file."""

    type: Literal["video"]
    path: Path
    loop: bool = True

    _resolve = field_validator("path")(_path_field(_existing_file))


class DeviceCamera(_CameraBase):
    """A USB/V4L2 camera by index (0, 1, ...) or device path (/dev/video0)."""

    type: Literal["device"]
    device: int | str
    width: Annotated[int, Field(gt=0)] | None = None
    height: Annotated[int, Field(gt=0)] | None = None

    @field_validator("device", mode="before")
    @classmethod
    def _index_or_path(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValueError("must be a device index (0, 1, ...) or a device path")
        if isinstance(value, int) and value < 0:
            raise ValueError(f"device index must be >= 0, got {value}")
        if isinstance(value, str) and not value:
            raise ValueError("device path must not be empty")
        return value


class StreamCamera(_CameraBase):
    """An RTSP or HTTP stream read through OpenCV's FFmpeg backend."""

    type: Literal["stream"]
    url: str

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        if not value.startswith(STREAM_SCHEMES):
            raise ValueError(f"must start with one of {', '.join(STREAM_SCHEMES)}")
        return value


class SyntheticCamera(_CameraBase):
    """Renders synthetic machined parts, some with defects: a labeled camera for demos and tests."""

    type: Literal["synthetic"]
    seed: int = 0
    width: Annotated[int, Field(ge=64, le=8192)] = 256
    height: Annotated[int, Field(ge=64, le=8192)] = 256
    defect_rate: Annotated[float, Field(ge=0, le=1)] = 0.2


class GenICamCamera(_CameraBase):
    """A GenICam camera through a vendor GenTL producer, with the ``genicam`` extra."""

    type: Literal["genicam"]
    cti: Path  # the GenTL producer library (.cti) supplied by the camera vendor
    serial: str | None = None  # which camera; None takes the first one found
    timeout_ms: Annotated[int, Field(gt=0)] = 1000

    _resolve = field_validator("cti")(_path_field(_genicam_producer))


class RemoteCamera(_CameraBase):
    """A camera captured on another host (``inspector capture --forward`` there), whose
    frames reach this box's ``bus.frames`` over tcp://. Nothing is opened here."""

    type: Literal["remote"]


CameraConfig = Annotated[
    FolderCamera | VideoCamera | DeviceCamera | StreamCamera | SyntheticCamera | GenICamCamera
    | RemoteCamera,
    Field(discriminator="type"),
]
CAMERA_TYPES = ("folder", "video", "device", "stream", "synthetic", "genicam", "remote")


class BusConfig(_Strict):
    """ZeroMQ endpoints: ``inproc://`` (threads of one process), ``ipc://`` or ``tcp://``."""

    frames: str = "inproc://frames"  # capture PUSH -> inspector PULL
    results: str = "inproc://results"  # inspector PUB -> PLC bridge, UI, ...
    triggers: str | None = None  # software triggers in (JSON {"camera", "part_id"}), bound here
    # Frames queued per camera, at the camera and at the inspector. Short on purpose: a
    # frame that waits in a long queue ages past its latency budget and becomes an error
    # verdict; with short queues an overloaded box drops new frames at capture (counted).
    send_hwm: Annotated[int, Field(ge=1)] = 2
    recv_hwm: Annotated[int, Field(ge=1)] = 2
    max_frame_bytes: Annotated[int, Field(gt=0)] = 64 * 1024 * 1024
    # CurveZMQ on the result feed (a tcp:// one reaches other hosts): the box's secret key
    # file (zmq.auth.create_certificates writes one), and optionally a folder of the public
    # key files of the clients allowed to subscribe; without it any client that knows the
    # box's public key may.
    results_secret_key: Path | None = None
    results_clients: Path | None = None

    _key_file = field_validator("results_secret_key")(_path_field(lambda p: _existing_file(p)))
    _clients = field_validator("results_clients")(_path_field(lambda p: _existing_folder(p)))

    @model_validator(mode="after")
    def _curve_needs_key(self) -> BusConfig:
        if self.results_clients is not None and self.results_secret_key is None:
            raise ValueError("results_clients needs results_secret_key (CurveZMQ)")
        return self

    @field_validator("frames", "results", "triggers")
    @classmethod
    def _endpoint(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        _check_endpoint(value)
        # run binds all three; ZeroMQ cannot bind an ipc socket in a missing folder
        # ("@name" is Linux's abstract namespace, no file at all).
        socket = value.removeprefix("ipc://")
        if _runnable(info) and socket != value and not socket.startswith("@"):
            folder = Path(socket).parent
            if not folder.is_dir():
                raise ValueError(f"the folder of {value}, {folder}, does not exist")
        return value


class ModelConfig(_Strict):
    # A fitted model directory (model.onnx + card.json). validate_default: run needs one.
    path: Path | None = Field(None, validate_default=True)
    # Threads inside one model run; 0: the CPU's cores shared out among the inspection
    # workers (all of them with one worker)
    intra_op_threads: Annotated[int, Field(ge=0)] = 0
    # "auto": TensorRT or CUDA when present, else the CPU; "openvino" only when named
    providers: list[str] = ["auto"]

    @field_validator("path")
    @classmethod
    def _resolve(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None and _runnable(info):
            raise ValueError("required key is missing: inspection needs a fitted model folder")
        return _model_path(value, info)

    @field_validator("providers")
    @classmethod
    def _available(cls, value: list[str], info: ValidationInfo) -> list[str]:
        if _runnable(info):
            from inspector.model import plan_threads  # onnxruntime: only when checking a box

            try:  # the providers chosen exactly as the running service chooses them
                plan_threads(1, 0, value)
            except InspectorError as exc:
                raise ValueError(str(exc)) from None
        return value


class InspectionConfig(_Strict):
    """How verdicts are decided and delivered."""

    error_is_reject: bool = True  # fail-safe: at the output an error counts as a reject
    # Frames scored together across cameras. 1 on CPUs, where batching measured no gain
    # (docs/benchmarks.md); raise it on a GPU.
    max_batch: Annotated[int, Field(ge=1, le=64)] = 1
    # Threads that run the model side by side, each on frames of its own. "auto": one per
    # CPU core with one thread each on the CPU provider (more frames per second and a
    # steadier latency tail than one frame on every core; docs/benchmarks.md); one on an
    # accelerator. 1 gives a single slow camera the lowest latency at light load.
    workers: int | Literal["auto"] = "auto"
    batch_wait_ms: Annotated[float, Field(ge=0, le=1000)] = 2.0  # longest wait to fill a batch
    min_region_px: Annotated[int, Field(ge=1)] = 16  # smaller above-threshold blobs are noise
    # Score drift (inspector.loop.drift): a camera's median score over its last drift_window
    # parts, drift_limit of the way from the fit-time median to the threshold, is an alarm.
    drift_window: Annotated[int, Field(ge=20, le=100_000)] = 200
    drift_limit: Annotated[float, Field(gt=0, le=10)] = 0.5

    @field_validator("workers", mode="before")
    @classmethod
    def _workers(cls, value: Any) -> Any:
        # One message for both forms, instead of one per member of the union.
        if value == "auto":
            return value
        if isinstance(value, str) and value.strip().isdigit():  # from an environment variable
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 64:
            raise ValueError(f"must be 'auto' or a number of workers from 1 to 64, got {value!r}")
        return value


class StorageConfig(_Strict):
    # SQLite database and image files live under here. validate_default: the default too
    # resolves against the config file's folder.
    root: Path = Field(Path("var"), validate_default=True)
    max_disk_gb: Annotated[float, Field(gt=0)] | None = None  # cap on stored image bytes
    max_disk_percent: Annotated[float, Field(gt=0, le=100)] | None = 90.0  # of the filesystem
    keep_days: Annotated[float, Field(gt=0)] | None = None  # unlabeled passes older go
    pass_sample_rate: Annotated[float, Field(ge=0, le=1)] = 0.1  # passes whose images are kept
    protect_recent_rejects_hours: Annotated[float, Field(ge=0)] = 24.0
    # Kept frames: "png" keeps them as the line saw them, for refits and shadow runs;
    # "jpeg" is smaller and faster to write but moves scores a little (docs/closed-loop.md).
    frame_format: Literal["png", "jpeg"] = "png"
    # Below this much free space no image is written (verdicts still are) and retention runs
    # at once; the reserve is a file deleted to give SQLite room when the disk fills.
    min_free_mb: Annotated[float, Field(ge=0)] = 64.0
    reserve_mb: Annotated[float, Field(ge=0)] = 16.0
    # Verdicts waiting for the recorder (beyond: dropped and counted), and how many of them
    # may still hold pictures (beyond: written without them, counted as shed).
    recorder_queue: Annotated[int, Field(ge=1)] = 10_000
    recorder_image_queue: Annotated[int, Field(ge=1)] = 32

    _resolve = field_validator("root")(_path_field(_writable_folder))


class WebConfig(_Strict):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8080  # 0: any free port
    secret_key: str | None = None  # sessions; generated and kept under storage.root when unset
    idle_logout_minutes: Annotated[float, Field(gt=0)] = 30.0
    secure_cookies: bool = False  # set true when the UI is served over HTTPS
    qa_can_promote: bool = False  # QA may promote and roll back models (admins always may)
    # GET /metrics asks for "Authorization: Bearer <token>" when set; open to any client when
    # not (a Prometheus scraper has no session). Set it through INSPECTOR__WEB__METRICS_TOKEN.
    metrics_token: Annotated[str, Field(min_length=16)] | None = None
    # Times on the pages: an IANA zone ("Europe/Berlin"); None: the box's own zone.
    time_zone: str | None = None

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None:
            from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {value!r}; use an IANA name such as "
                                 "'Europe/Berlin'") from None
        return value
    defect_types: list[Annotated[str, Field(min_length=1, max_length=40)]] = [
        "scratch", "dent", "spot", "crack", "missing_feature", "contamination", "other",
    ]  # keys 1-9 in the review page pick these in order


class LoggingConfig(_Strict):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    file: Path | None = None
    format: Literal["text", "json"] = "text"  # json: one object per line, for log shippers

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    _resolve = field_validator("file")(_path_field(_log_file))


BoxId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
HostPort = Annotated[str, Field(pattern=r"^[^\s:]*:[0-9]{1,5}$")]


def _default_box_id() -> str:
    """The host name, cut to what a box id (an MQTT topic level) may hold."""
    name = "".join(c if c.isalnum() or c in "_.-" else "-" for c in socket.gethostname())
    return name[:64] or "box"


class ModbusConfig(_Strict):
    """The PLC's side of the reject gate: a Modbus TCP server the PLC polls
    (register map in docs/integration.md)."""

    listen: HostPort  # "0.0.0.0:502" (port 502 needs CAP_NET_BIND_SERVICE) or "0.0.0.0:5020"
    unit_id: Annotated[int, Field(ge=0, le=247)] = 1  # the device id the PLC addresses; 0: any
    heartbeat_ms: Annotated[int, Field(ge=50, le=10_000)] = 500  # the heartbeat register ticks


class MqttConfig(_Strict):
    """Verdicts, status, alarms and counters to an MQTT broker (topics in
    docs/integration.md). The password comes from the environment variable named by
    ``password_env``, never from the file."""

    url: Annotated[str, Field(pattern=r"^mqtts?://[^\s/:]+(:[0-9]{1,5})?/?$")]  # mqtts: TLS
    prefix: Annotated[str, Field(pattern=r"^[^\s+#]{1,100}$")] = "inspector"
    qos: Literal[0, 1, 2] = 1
    username: str | None = None
    password_env: str = "INSPECTOR_MQTT_PASSWORD"
    tls_ca: Path | None = None  # CA bundle for mqtts://; None: the system's
    tls_cert: Path | None = None  # client certificate and key, when the broker asks for one
    tls_key: Path | None = None
    keepalive_s: Annotated[int, Field(ge=5, le=3600)] = 30
    counters_interval_s: Seconds = 10.0
    # Verdicts held while the broker is away; beyond it the oldest go, counted.
    buffer: Annotated[int, Field(ge=1, le=1_000_000)] = 10_000
    reconnect_min_s: Seconds = 1.0
    reconnect_max_s: Seconds = 30.0

    _files = field_validator("tls_ca", "tls_cert", "tls_key")(_path_field(_existing_file))


class OutputsConfig(_Strict):
    """Where verdicts leave the box besides the result feed (``bus.results``)."""

    box_id: BoxId = Field(default_factory=_default_box_id)  # this box among many (MQTT topics)
    modbus: ModbusConfig | None = None
    mqtt: MqttConfig | None = None


class AlarmsConfig(_Strict):
    """When the box raises an alarm (inspector.monitor): each is raised and cleared with a
    reason and timestamps, kept in the store, and shown on the panel, MQTT and /metrics."""

    check_interval_s: Annotated[float, Field(gt=0, le=60)] = 1.0
    # A free-running camera with no frame for this long is down; a triggered one is down
    # only while its source fails to open or read.
    camera_down_s: Seconds = 5.0
    # More than this share of the verdicts over error_window_s are errors (and at least
    # error_min_count of them).
    error_rate: Annotated[float, Field(gt=0, le=1)] = 0.2
    error_window_s: Seconds = 60.0
    error_min_count: Annotated[int, Field(ge=1)] = 10
    disk_low_percent: Annotated[float, Field(gt=0, le=100)] = 90.0  # of the store's filesystem


class Config(_Strict):
    """The whole configuration file."""

    cameras: list[CameraConfig] = []
    bus: BusConfig = BusConfig()
    model: ModelConfig = ModelConfig()
    inspection: InspectionConfig = InspectionConfig()
    storage: StorageConfig = StorageConfig()
    web: WebConfig = WebConfig()
    logging: LoggingConfig = LoggingConfig()
    outputs: OutputsConfig = Field(default_factory=OutputsConfig)
    alarms: AlarmsConfig = AlarmsConfig()


# Every section, validated even when the file leaves it out, so that its defaults resolve
# against the file's folder and get checked too.
_SECTIONS = tuple(name for name in Config.model_fields if name != "cameras")
_CAMERA_MODELS = (FolderCamera, VideoCamera, DeviceCamera, StreamCamera, SyntheticCamera,
                  GenICamCamera, RemoteCamera)


def load_config(
    path: str | Path, environ: Mapping[str, str] | None = None, runnable: bool = False
) -> Config:
    """Read, override from the environment, and validate one TOML config file."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(["file not found"], str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"cannot read: {exc}"], str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"not valid TOML: {exc}"], str(path)) from None
    return parse_config(data, path.parent.resolve(), environ, str(path), runnable)


def parse_config(
    data: dict[str, Any],
    base_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
    source: str = "config",
    runnable: bool = False,
) -> Config:
    """Validate an already-parsed config mapping (``environ`` defaults to ``os.environ``).

    ``base_dir`` is the config file's folder; without one relative paths stay relative to the
    working directory. ``runnable`` adds the checks of ``check_runnable`` to the same pass.
    """
    data, problems = _override(data, os.environ if environ is None else environ)
    return _validate(data, {"base_dir": base_dir, "runnable": runnable}, source, problems)


def check_runnable(config: Config) -> list[str]:
    """Every problem ``inspector run`` would meet at start on this box, one ``key.path:
    reason`` line each: no camera, no model or one that does not load, an unavailable
    execution provider, camera folders and files that do not exist, a store or log folder
    that cannot be written, a missing ipc socket folder. Empty when it can run."""
    try:
        _validate(config.model_dump(), {"base_dir": None, "runnable": True}, "config")
    except ConfigError as exc:
        return exc.problems
    return []


def _validate(
    data: dict[str, Any], context: dict[str, Any], source: str, env_problems: Sequence[str] = ()
) -> Config:
    """The one validation pass: every problem, from every stage, in one ``ConfigError``."""
    data = {name: {} for name in _SECTIONS} | data
    problems = list(env_problems)
    try:
        config = Config.model_validate(data, context=context)
    except ValidationError as exc:
        problems += map(_describe, exc.errors())
    problems += _camera_list_problems(data, context["runnable"])
    if problems:
        # dict.fromkeys: one line per distinct problem, in order
        raise ConfigError(list(dict.fromkeys(problems)), source)
    return config


def _camera_list_problems(data: dict[str, Any], runnable: bool) -> list[str]:
    """What no one camera's validation sees: an id used twice and, to run, no camera at all.
    Read from the raw list, so it comes out together with the cameras' own problems."""
    cameras = data.get("cameras", [])
    if not isinstance(cameras, list):
        return []  # validation says so
    if runnable and not cameras:
        return ["cameras: no camera configured"]
    frames = (data.get("bus") or {}).get("frames", BusConfig.model_fields["frames"].default)
    problems = []
    for index, camera in enumerate(cameras):
        if (isinstance(camera, dict) and camera.get("type") == "remote"
                and isinstance(frames, str) and frames.startswith("inproc://")):
            problems.append(f"cameras[{index}].type: a remote camera's frames come from "
                            f"another host: set bus.frames to a tcp:// endpoint (now {frames})")
    first: dict[str, int] = {}
    for index, camera in enumerate(cameras):
        camera_id = camera.get("id") if isinstance(camera, dict) else None
        if isinstance(camera_id, str) and camera_id in first:
            problems.append(f"cameras[{index}].id: camera id {camera_id!r} is used twice "
                            f"(also by cameras[{first[camera_id]}])")
        elif isinstance(camera_id, str):
            first[camera_id] = index
    return problems


def apply_env_overrides(data: dict[str, Any], environ: Mapping[str, str], source: str) -> dict:
    """Return a copy of ``data`` with every ``INSPECTOR__A__B=value`` applied as ``a.b = value``."""
    data, problems = _override(data, environ)
    if problems:
        raise ConfigError(problems, source)
    return data


def _override(data: dict[str, Any], environ: Mapping[str, str]) -> tuple[dict, list[str]]:
    data = _deep_copy(data)
    problems = []
    for name, value in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        keys = [key.lower() for key in name[len(ENV_PREFIX) :].split("__")]
        if _is_path_key(keys) and not Path(value).expanduser().is_absolute():
            # Whoever sets the variable means the working directory, not the file's folder.
            value = str(Path(value).resolve())
        try:
            _set_path(data, keys, value)
        except (KeyError, IndexError, TypeError) as exc:
            problems.append(f"{name}: cannot set {'.'.join(keys)} ({exc})")
    return data, problems


def _is_path_key(keys: list[str]) -> bool:
    """Whether ``keys`` (``storage.root``, ``cameras.0.path``, ...) name a path field."""
    if len(keys) == 3 and keys[0] == "cameras":
        models: tuple[Any, ...] = _CAMERA_MODELS
    elif len(keys) == 2 and keys[0] in _SECTIONS:
        models = (Config.model_fields[keys[0]].annotation,)
    else:
        return False
    fields = [model.model_fields[keys[-1]] for model in models if keys[-1] in model.model_fields]
    return any(f.annotation is Path or Path in get_args(f.annotation) for f in fields)


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _deep_copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_deep_copy(item) for item in value]
    return value


def _set_path(node: Any, keys: list[str], value: str) -> None:
    for depth, key in enumerate(keys):
        last = depth == len(keys) - 1
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise IndexError(f"no list item {key!r}")
            if last:
                node[int(key)] = value
            else:
                node = node[int(key)]
        elif isinstance(node, dict):
            if last:
                node[key] = value
            else:
                node = node.setdefault(key, {})
        else:
            raise TypeError(f"{key!r} is below a plain value")


def _all_field_names() -> set[str]:
    names: set[str] = set()
    models: list[type[BaseModel]] = [Config, WatchdogConfig, BusConfig, ModelConfig]
    models += [InspectionConfig, StorageConfig, WebConfig, LoggingConfig, OutputsConfig]
    models += [ModbusConfig, MqttConfig, AlarmsConfig, *_CAMERA_MODELS]
    for model in models:
        names.update(model.model_fields)
    return names


def _describe(error: Mapping[str, Any]) -> str:
    """One ``key.path: reason`` line for one pydantic error."""
    loc = list(error["loc"])
    # A discriminated union puts the tag (camera type) into the path; the user never wrote it.
    if len(loc) > 2 and loc[0] == "cameras" and loc[2] in CAMERA_TYPES:
        del loc[2]
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    kind = error["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        close = difflib.get_close_matches(key, _all_field_names(), n=1)
        reason = "unknown key" + (f" (did you mean {close[0]!r}?)" if close else "")
    elif kind == "missing":
        reason = "required key is missing"
    elif kind == "union_tag_invalid":
        reason = f"unknown camera type; expected one of {', '.join(CAMERA_TYPES)}"
        path += ".type"
    elif kind == "union_tag_not_found":
        reason = f"camera needs a 'type' key, one of {', '.join(CAMERA_TYPES)}"
    elif kind == "value_error":  # our own validators already say what they got
        reason = error["msg"].removeprefix("Value error, ")
    else:
        reason = error["msg"]
        if not isinstance(error.get("input"), dict | list):
            reason += f" (got {error.get('input')!r})"
    return f"{path or '(top level)'}: {reason}"
