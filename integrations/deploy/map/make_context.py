"""Lay out the Docker build context of the PAM MONAI Application Package (MAP); run by ``scripts/build_map.sh``.

    python3 integrations/deploy/map/make_context.py CONTEXT --models MODELS_DIR [--tag TAG] [--base-image IMAGE]

The context holds what ``monai-deploy package`` would put in its own (see ``Dockerfile`` beside this file):

- ``app/``: the application folder (``integrations/deploy`` + the ``pam_monai`` package + ``bundle/configs``), which
  becomes ``/opt/holoscan/app``; the MAP runs ``python3 /opt/holoscan/app`` (its ``__main__.py``).
- ``models/<name>/``: the weights (``model.pt``, ``box2mask.pt``) -> ``/opt/holoscan/models/<name>``.
- ``map/app.json``, ``map/pkg.json``: the MAP's application and package manifests -> ``/etc/holoscan``;
  ``app.config``: ``app.yaml`` -> ``/var/holoscan/app.yaml``; ``tools``: the entry point.
- ``pip/``: what pip inside the build needs, read from this machine's pip configuration (``pip config list``,
  including ``PIP_*`` variables) at build time: ``pip.conf`` (index URL, remote extra index URLs, trusted hosts),
  the CA bundle it names (``ca.crt``), its constraints file, and, from local ``find-links`` folders, the wheels of
  the packages ``requirements.txt`` names (the CPU build of torch). Local ``file://`` index mirrors are not carried
  (they are whole mirrors); the build reaches the remote index instead.

Nothing here names a host or a path of a particular machine: they all come from pip's configuration.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

HERE = Path(__file__).resolve().parent
APP_SOURCE = HERE.parent
ROOT = APP_SOURCE.parents[1]
SDK_VERSION = "4.0.0"  # monai-deploy-app-sdk in the MAP (and the app.json "sdkVersion")
API_VERSION = "1.0.0"  # MAP / HAP manifest version, as the packager writes it
WORK_DIR = "/var/holoscan"
APP_DIR = "/opt/holoscan/app"
MODELS_DIR = "/opt/holoscan/models"
REQUIREMENTS = [HERE / "requirements.txt", HERE / "requirements-no-deps.txt"]
PIP_KEYS = ("index-url", "extra-index-url", "find-links", "cert", "trusted-host", "constraint")
_CONFIG_LINE = re.compile(r"^(?P<scope>[^.]*)\.(?P<key>[a-z-]+)='(?P<value>.*)'$")


def read_pip_config(python: str = sys.executable) -> dict[str, list[str]]:
    """The pip settings this machine's pip uses, from ``pip config list``: key -> values (lists split on spaces).

    ``PIP_*`` variables (scope ``:env:``) win over configuration files, as in pip; ``install`` sections over
    ``global``.
    """
    listing = subprocess.run(
        [python, "-m", "pip", "config", "list"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    rank = {"global": 0, "install": 1, ":env:": 2}
    chosen: dict[str, tuple[int, list[str]]] = {}
    for line in listing:
        match = _CONFIG_LINE.match(line.strip())
        if not match or match["key"] not in PIP_KEYS or match["scope"] not in rank:
            continue
        level = rank[match["scope"]]
        if match["key"] not in chosen or chosen[match["key"]][0] <= level:
            chosen[match["key"]] = (level, match["value"].split())
    return {key: values for key, (_, values) in chosen.items()}


def _local_path(location: str) -> Path | None:
    """The folder or file a pip location names on this machine, or ``None`` for a remote URL."""
    parsed = urlparse(location)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme in ("", None) or len(parsed.scheme) == 1:  # a plain path (or a drive letter)
        return Path(location)
    return None


def _project(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(requirements: Path) -> set[str]:
    names = set()
    for line in requirements.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            names.add(_project(re.split(r"[\s<>=!~;\[@]", line, maxsplit=1)[0]))
    return names


def write_pip_context(target: Path, requirements: list[Path], config: dict[str, list[str]]) -> list[str]:
    """Write ``target/pip.conf`` (paths as the build sees them under ``/tmp/pip``) and the files it names.

    Returns:
        lines describing what was carried or left out (printed by the build script).
    """
    target.mkdir(parents=True, exist_ok=True)
    for path in requirements:
        shutil.copy(path, target / path.name)
    notes: list[str] = []
    lines = ["[global]", "disable-pip-version-check = true", "no-cache-dir = true"]
    for key in ("index-url", "extra-index-url"):
        remote = [url for url in config.get(key, []) if _local_path(url) is None]
        skipped = [url for url in config.get(key, []) if _local_path(url) is not None]
        if remote:
            lines.append(f"{key} = {' '.join(remote)}")
        if skipped:
            notes.append(f"{key}: {len(skipped)} local index mirror(s) not carried; the build uses the remote index")
    if config.get("trusted-host"):
        lines.append(f"trusted-host = {' '.join(config['trusted-host'])}")
    cert = next((Path(c) for c in config.get("cert", []) if Path(c).is_file()), None)
    if cert is not None:
        shutil.copy(cert, target / "ca.crt")
        lines.append("cert = /tmp/pip/ca.crt")
        notes.append("cert: the CA bundle of pip's configuration")
    constraint = next((Path(c) for c in config.get("constraint", []) if Path(c).is_file()), None)
    if constraint is not None:
        shutil.copy(constraint, target / "constraints.txt")
        lines.append("constraint = /tmp/pip/constraints.txt")
    wanted = set().union(*(requirement_names(path) for path in requirements))
    wheels = target / "find-links"
    wheels.mkdir(exist_ok=True)
    for location in config.get("find-links", []):
        folder = _local_path(location)
        if folder is None:
            lines.append(f"find-links = {location}")
            continue
        for wheel in sorted(folder.glob("*.whl")) if folder.is_dir() else []:
            if _project(wheel.name.split("-", 1)[0]) in wanted:
                shutil.copy(wheel, wheels / wheel.name)
                notes.append(f"find-links: {wheel.name}")
    lines.append("find-links = /tmp/pip/find-links")
    (target / "pip.conf").write_text("\n".join(lines) + "\n")
    return notes


def read_app_config(path: Path) -> dict:
    """The ``application`` and ``resources`` sections of ``app.yaml`` (a MAP's packaging configuration)."""
    import yaml

    config = yaml.safe_load(path.read_text())
    if not isinstance(config, dict) or "application" not in config:
        raise SystemExit(f"{path}: no 'application' section.")
    return config


def manifests(config: dict, model_names: list[str]) -> tuple[dict, dict]:
    """``(app.json, pkg.json)`` of the MAP, with the fields and paths the MAP specification gives them."""
    application = config["application"]
    version = str(application["version"])
    environment = {
        "HOLOSCAN_APPLICATION": APP_DIR,
        "HOLOSCAN_INPUT_PATH": f"{WORK_DIR}/input/",
        "HOLOSCAN_OUTPUT_PATH": f"{WORK_DIR}/output/",
        "HOLOSCAN_WORKDIR": WORK_DIR,
        "HOLOSCAN_MODEL_PATH": MODELS_DIR,
        "HOLOSCAN_CONFIG_PATH": f"{WORK_DIR}/app.yaml",
        "HOLOSCAN_APP_MANIFEST_PATH": "/etc/holoscan/app.json",
        "HOLOSCAN_PKG_MANIFEST_PATH": "/etc/holoscan/pkg.json",
        "HOLOSCAN_DOCS_PATH": "/opt/holoscan/docs",
        "HOLOSCAN_LOGS_PATH": f"{WORK_DIR}/logs",
    }
    app_json = {
        "apiVersion": API_VERSION,
        "command": json.dumps(["python3", APP_DIR]),
        "environment": environment,
        "input": {"path": "input/", "formats": application.get("input-formats")},
        "liveness": None,
        "output": {"path": "output/", "formats": application.get("output-formats")},
        "readiness": None,
        "sdk": "monai-deploy",
        "sdkVersion": SDK_VERSION,
        "timeout": int(application.get("timeout", 0)),
        "version": version,
        "workingDirectory": WORK_DIR,
    }
    pkg_json = {
        "apiVersion": API_VERSION,
        "applicationRoot": APP_DIR,
        "modelRoot": f"{MODELS_DIR}/",
        "models": {name: f"{MODELS_DIR}/{name}" for name in model_names},
        "resources": config.get("resources", {}),
        "version": version,
        "platformConfig": "cpu",
    }
    return app_json, pkg_json


def stage_app(target: Path) -> None:
    """``target`` = integrations/deploy (without the packaging files) + ``pam_monai`` + ``bundle/configs``."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "map", "build_map.sh")
    shutil.copytree(APP_SOURCE, target, ignore=ignore)
    shutil.copytree(ROOT / "pam_monai", target / "pam_monai", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copytree(ROOT / "bundle" / "configs", target / "bundle" / "configs")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("context", type=Path, help="build context folder (emptied first)")
    parser.add_argument("--models", type=Path, help="folder with model.pt and box2mask.pt (omit with --stage-only)")
    parser.add_argument("--stage-only", action="store_true", help="only lay out the application folder (app/)")
    parser.add_argument("--python", default=sys.executable, help="the Python whose pip configuration is read")
    args = parser.parse_args(argv)
    context: Path = args.context
    if context.exists():
        shutil.rmtree(context)
    context.mkdir(parents=True)
    stage_app(context / "app")
    if args.stage_only:
        print(f"staged the application in {context / 'app'}")
        return 0
    if args.models is None or not (args.models / "model.pt").is_file():
        print(f"make_context: no model.pt in {args.models}: a MAP needs the PAM weights.", file=sys.stderr)
        return 2
    name = args.models.resolve().name
    models = context / "models" / name
    models.mkdir(parents=True)
    for weights in ("model.pt", "box2mask.pt"):
        if (args.models / weights).is_file():
            shutil.copy(args.models / weights, models / weights)
    config = read_app_config(APP_SOURCE / "app.yaml")
    app_json, pkg_json = manifests(config, [name])
    (context / "map").mkdir()
    (context / "map" / "app.json").write_text(json.dumps(app_json, indent=4) + "\n")
    (context / "map" / "pkg.json").write_text(json.dumps(pkg_json, indent=4) + "\n")
    shutil.copy(APP_SOURCE / "app.yaml", context / "app.config")
    shutil.copy(HERE / "tools", context / "tools")
    shutil.copy(HERE / "Dockerfile", context / "Dockerfile")
    (context / ".dockerignore").write_text("**/__pycache__\n")
    for note in write_pip_context(context / "pip", REQUIREMENTS, read_pip_config(args.python)):
        print(f"pip context: {note}")
    print(f"build context ready in {context}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
