"""Configuration: valid files load, every invalid one gets one line per problem naming its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from inspector.cli import main
from inspector.config import (
    FolderCamera,
    StreamCamera,
    SyntheticCamera,
    check_runnable,
    load_config,
    parse_config,
)
from inspector.errors import ConfigError
from tests.conftest import REPO_ROOT

EXAMPLE = REPO_ROOT / "inspector.example.toml"
DEMO_MODEL = REPO_ROOT / "models" / "demo"


def folder(**extra: object) -> dict:
    return {"id": "cam1", "type": "folder", "path": "images", **extra}


def test_example_config_is_valid() -> None:
    config = load_config(EXAMPLE, environ={})
    assert [cam.id for cam in config.cameras] == ["replay", "synthetic"]
    assert isinstance(config.cameras[0], FolderCamera)
    assert isinstance(config.cameras[1], SyntheticCamera)
    # relative paths resolve against the config file's folder, not the working directory
    assert config.cameras[0].path == REPO_ROOT / "sample_images" / "test"
    assert config.storage.root == REPO_ROOT / "var"


def test_empty_config_gives_defaults() -> None:
    config = parse_config({}, environ={})
    assert config.cameras == []
    assert config.bus.frames == "inproc://frames"
    assert config.web.port == 8080


@pytest.mark.parametrize(
    ("data", "key", "reason"),
    [
        ({"cameras": [folder(fpss=3)]}, "cameras[0].fpss", "did you mean 'fps'"),
        ({"cameras": [folder(fps=-1)]}, "cameras[0].fps", "greater than 0"),
        ({"cameras": [folder(fps="fast")]}, "cameras[0].fps", "valid number"),
        ({"cameras": [folder(id="has space")]}, "cameras[0].id", "pattern"),
        ({"cameras": [folder(encoding="webp")]}, "cameras[0].encoding", "'raw', 'jpeg' or 'png'"),
        (
            {"cameras": [folder(jpeg_quality=0)]},
            "cameras[0].jpeg_quality",
            "greater than or equal to 1",
        ),
        ({"cameras": [folder(trigger="hardware")]}, "cameras[0].trigger", "free_run"),
        ({"cameras": [{"id": "a", "type": "folder"}]}, "cameras[0].path", "required"),
        ({"cameras": [{"id": "a", "type": "lidar"}]}, "cameras[0].type", "unknown camera type"),
        ({"cameras": [{"id": "a"}]}, "cameras[0]", "needs a 'type' key"),
        ({"cameras": [folder(), folder()]}, "cameras[1].id", "used twice (also by cameras[0])"),
        ({"cameras": {"id": "a"}}, "cameras", "valid list"),
        (
            {"cameras": [folder(watchdog={"backoff_initial_s": 5, "backoff_max_s": 1})]},
            "cameras[0].watchdog",
            "backoff_max_s must be >= backoff_initial_s",
        ),
        (
            {"cameras": [folder(watchdog={"no_frame_timeout_s": 0})]},
            "cameras[0].watchdog.no_frame_timeout_s",
            "greater than 0",
        ),
        ({"cameras": [{"id": "a", "type": "device", "device": -1}]}, "cameras[0].device", ">= 0"),
        (
            {"cameras": [{"id": "a", "type": "device", "device": True}]},
            "cameras[0].device",
            "device index",
        ),
        (
            {"cameras": [{"id": "a", "type": "stream", "url": "ftp://x"}]},
            "cameras[0].url",
            "rtsp://",
        ),
        (
            {"cameras": [{"id": "a", "type": "synthetic", "defect_rate": 2}]},
            "cameras[0].defect_rate",
            "less than or equal to 1",
        ),
        ({"cameras": [{"id": "a", "type": "genicam"}]}, "cameras[0].cti", "required"),
        ({"bus": {"frames": "udp://239.0.0.1:5000"}}, "bus.frames", "inproc://"),
        ({"bus": {"send_hwm": 0}}, "bus.send_hwm", "greater than or equal to 1"),
        ({"bus": {"frmes": "inproc://x"}}, "bus.frmes", "did you mean 'frames'"),
        (
            {"model": {"intra_op_threads": -2}},
            "model.intra_op_threads",
            "greater than or equal to 0",
        ),
        ({"inspection": {"workers": 0}}, "inspection.workers", "'auto' or a number"),
        ({"inspection": {"workers": "many"}}, "inspection.workers", "'auto' or a number"),
        ({"inspection": {"workers": True}}, "inspection.workers", "'auto' or a number"),
        ({"storage": {"root": 5}}, "storage.root", "path"),
        ({"storage": {"min_free_mb": -1}}, "storage.min_free_mb", "greater than or equal to 0"),
        ({"storage": {"recorder_queue": 0}}, "storage.recorder_queue", "greater than or equal"),
        ({"web": {"port": 70000}}, "web.port", "65535"),
        ({"logging": {"level": "LOUD"}}, "logging.level", "'DEBUG'"),
        ({"telemetry": {}}, "telemetry", "unknown key"),
    ],
)
def test_invalid_config_names_the_key(data: dict, key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, environ={})
    problems = caught.value.problems
    assert len(problems) == 1, problems
    line = problems[0]
    assert "\n" not in line
    assert line.startswith(f"{key}: "), line
    assert reason in line, line


def test_all_problems_are_reported_at_once() -> None:
    data = {"cameras": [folder(fps=0, colour=1)], "web": {"port": -1}}
    with pytest.raises(ConfigError) as caught:
        parse_config(data, environ={})
    keys = sorted(problem.split(":")[0] for problem in caught.value.problems)
    assert keys == ["cameras[0].colour", "cameras[0].fps", "web.port"]


def test_environment_overrides_paths_and_secrets(tmp_path: Path) -> None:
    data = {"cameras": [{"id": "a", "type": "stream", "url": "rtsp://cam/1"}]}
    environ = {
        "INSPECTOR__STORAGE__ROOT": str(tmp_path / "data"),
        "INSPECTOR__WEB__SECRET_KEY": "s3cret",
        "INSPECTOR__CAMERAS__0__URL": "rtsp://user:pw@cam/1",
        "INSPECTOR__INSPECTION__WORKERS": "3",
        "UNRELATED": "x",
    }
    config = parse_config(data, base_dir=tmp_path, environ=environ)
    assert config.inspection.workers == 3
    assert config.storage.root == tmp_path / "data"
    assert config.web.secret_key == "s3cret"
    assert isinstance(config.cameras[0], StreamCamera)
    assert config.cameras[0].url == "rtsp://user:pw@cam/1"
    assert data["cameras"][0]["url"] == "rtsp://cam/1"  # the caller's mapping is untouched


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("INSPECTOR__CAMERAS__3__URL", "x", "INSPECTOR__CAMERAS__3__URL"),
        ("INSPECTOR__WEB__PORT", "eighty", "web.port"),
        ("INSPECTOR__WEB__PORT__X", "1", "INSPECTOR__WEB__PORT__X"),
        ("INSPECTOR__NOPE", "1", "nope: unknown key"),
    ],
)
def test_bad_environment_override_is_named(name: str, value: str, fragment: str) -> None:
    data = {"web": {"port": 8080}, "cameras": []}
    with pytest.raises(ConfigError) as caught:
        parse_config(data, environ={name: value})
    assert any(fragment in problem for problem in caught.value.problems), caught.value.problems


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[[cameras]\nid=1", "not valid TOML"),
        ("[bus]\nfrmes = 'x'", "bus.frmes: unknown key"),
    ],
)
def test_unreadable_files(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=fragment):
        load_config(path, environ={})


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "absent.toml")


def test_check_config_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(EXAMPLE)]) == 0
    assert "ok (2 camera(s))" in capsys.readouterr().out

    bad = tmp_path / "bad.toml"
    bad.write_text("[[cameras]]\nid = 'a'\ntype = 'folder'\nfps = -1\n[web]\nport = -1\n")
    assert main(["check-config", str(bad)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert sorted(lines) == [
        f"{bad}: cameras[0].fps: Input should be greater than 0 (got -1)",
        f"{bad}: cameras[0].path: required key is missing",
        f"{bad}: model.path: required key is missing: inspection needs a fitted model folder",
        f"{bad}: web.port: Input should be greater than or equal to 0 (got -1)",
    ]


def test_duplicate_ids_are_reported_with_the_other_problems() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"cameras": [folder(fps=0), folder(), folder(id="b", fps=0)]}, environ={})
    keys = [problem.split(":")[0] for problem in caught.value.problems]
    assert sorted(keys) == ["cameras[0].fps", "cameras[1].id", "cameras[2].fps"]


# ---- runnable: what `inspector run` needs on this box, checked in the same pass ----------


def runnable(tmp_path: Path, **sections: object) -> dict:
    """A config `run` accepts, with ``sections`` replaced."""
    (tmp_path / "images").mkdir(exist_ok=True)
    data = {"cameras": [folder()], "model": {"path": str(DEMO_MODEL)}, "storage": {"root": "var"}}
    return {**data, **sections}


def test_a_runnable_config_passes(tmp_path: Path) -> None:
    config = parse_config(runnable(tmp_path), base_dir=tmp_path, environ={}, runnable=True)
    assert check_runnable(config) == []
    assert not (tmp_path / "var").exists()  # checking creates nothing


@pytest.mark.parametrize(
    ("sections", "line"),
    [
        ({"model": {}}, "model.path: required key is missing"),
        ({"model": {"path": "absent"}}, "model.path: {tmp}/absent does not exist"),
        ({"model": {"path": "images"}}, "model.path: {tmp}/images: no card.json"),
        ({"model": {"path": str(DEMO_MODEL), "providers": ["nope"]}},
         "model.providers: execution provider 'nope' is not available"),
        ({"cameras": []}, "cameras: no camera configured"),
        ({"cameras": [folder(path="absent")]}, "cameras[0].path: {tmp}/absent does not exist"),
        ({"cameras": [folder(path="images/x.png")]}, "cameras[0].path: {tmp}/images/x.png"),
        ({"cameras": [{"id": "v", "type": "video", "path": "a.mp4"}]},
         "cameras[0].path: {tmp}/a.mp4 does not exist"),
        ({"cameras": [{"id": "g", "type": "genicam", "cti": "p.cti"}]},
         "cameras[0].cti: {tmp}/p.cti does not exist"),
        ({"storage": {"root": "images/file/var"}},
         "storage.root: {tmp}/images/file/var cannot be created: {tmp}/images/file is not a"),
        ({"logging": {"file": "images"}}, "logging.file: {tmp}/images is a folder"),
        ({"bus": {"frames": "ipc://{tmp}/absent/frames.sock"}},
         "bus.frames: the folder of ipc://{tmp}/absent/frames.sock, {tmp}/absent, does not exist"),
    ],
)
def test_runnable_names_the_key_of_what_run_would_fail_on(
    tmp_path: Path, sections: dict, line: str
) -> None:
    data = runnable(tmp_path, **sections)
    (tmp_path / "images" / "file").write_text("a file where a folder should be")
    data["bus"] = {k: v.replace("{tmp}", str(tmp_path)) for k, v in data.get("bus", {}).items()}
    assert parse_config(data, base_dir=tmp_path, environ={})  # the schema alone is content
    with pytest.raises(ConfigError) as caught:
        parse_config(data, base_dir=tmp_path, environ={}, runnable=True)
    assert len(caught.value.problems) == 1, caught.value.problems
    assert caught.value.problems[0].startswith(line.replace("{tmp}", str(tmp_path)))
    # The same lines whichever way the checks are asked for.
    config = parse_config(data, base_dir=tmp_path, environ={})
    assert check_runnable(config) == caught.value.problems


def test_check_config_reports_everything_run_needs_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "inspector.toml"
    path.write_text(
        '[[cameras]]\nid = "a"\ntype = "folder"\npath = "missing"\nfps = -1\n'
        '[[cameras]]\nid = "a"\ntype = "synthetic"\n'
    )
    assert main(["check-config", str(path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert sorted(lines) == sorted(f"{path}: {line}" for line in [
        "cameras[0].fps: Input should be greater than 0 (got -1)",
        f"cameras[0].path: {tmp_path}/missing does not exist",
        "model.path: required key is missing: inspection needs a fitted model folder",
        "cameras[1].id: camera id 'a' is used twice (also by cameras[0])",
    ])


# ---- where relative paths point -----------------------------------------------------------


def test_paths_in_a_file_resolve_against_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf, elsewhere = tmp_path / "conf", tmp_path / "elsewhere"
    conf.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # started from another folder
    path = conf / "inspector.toml"
    path.write_text(
        '[[cameras]]\nid = "f"\ntype = "folder"\npath = "images"\n'
        '[[cameras]]\nid = "v"\ntype = "video"\npath = "line.mp4"\n'
        '[[cameras]]\nid = "g"\ntype = "genicam"\ncti = "vendor/producer.cti"\n'
        '[model]\npath = "models/m"\n[logging]\nfile = "logs/inspector.log"\n'
    )  # no [storage]: its default root is a relative path too
    config = load_config(path, environ={})
    assert [cam.path for cam in config.cameras[:2]] == [conf / "images", conf / "line.mp4"]
    assert config.cameras[2].cti == conf / "vendor" / "producer.cti"
    assert config.model.path == conf / "models" / "m"
    assert config.logging.file == conf / "logs" / "inspector.log"
    assert config.storage.root == conf / "var"


def test_paths_from_the_environment_resolve_against_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf, work = tmp_path / "conf", tmp_path / "work"
    conf.mkdir()
    work.mkdir()
    monkeypatch.chdir(work)
    path = conf / "inspector.toml"
    path.write_text('[[cameras]]\nid = "f"\ntype = "folder"\npath = "images"\n')
    environ = {
        "INSPECTOR__STORAGE__ROOT": "data",
        "INSPECTOR__MODEL__PATH": "models/m",
        "INSPECTOR__CAMERAS__0__PATH": "replay",
        "INSPECTOR__LOGGING__FILE": "inspector.log",
        "INSPECTOR__WEB__SECRET_KEY": "not/a/path",  # strings stay as given
    }
    config = load_config(path, environ=environ)
    assert config.storage.root == work / "data"
    assert config.model.path == work / "models" / "m"
    assert config.cameras[0].path == work / "replay"
    assert config.logging.file == work / "inspector.log"
    assert config.web.secret_key == "not/a/path"
    absolute = load_config(path, environ={"INSPECTOR__STORAGE__ROOT": str(tmp_path / "abs")})
    assert absolute.storage.root == tmp_path / "abs"


def test_without_a_file_paths_resolve_against_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Embedded defaults (inspector demo, tools) have no file: the working directory it is.
    monkeypatch.chdir(tmp_path)
    assert parse_config({}, environ={}).storage.root.absolute() == tmp_path / "var"
    config = parse_config({"model": {"path": "m"}}, environ={})
    assert config.model.path.absolute() == tmp_path / "m"
