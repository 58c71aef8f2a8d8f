"""Python packages for an image: fill a wheelhouse on this machine, resolve a hashed lock from it.

Everything that touches a package index runs here, on the host, with the
host's pip configuration (private index URLs and their credentials stay in
this process's environment). The image only ever installs the locked wheels
with `--no-index`, so no index, credential or download reaches a layer.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .errors import MkserveError, UsageError
from .spec import PLATFORMS, BuildSpec, file_sha256

# mkserve's own dependencies that an image does without: the builder's tools, and torch
# (pinned to the build's version on its own).
BUILDER_ONLY = frozenset({"docker", "jinja2", "typer", "torch"})
CUDA_PACKAGE = re.compile(r"^(nvidia-.*|triton|cuda-.*)$")
Out = Callable[[str], None]


class WheelhouseError(MkserveError):
    """pip could not download or resolve the image's packages."""

    exit_code = 2


@dataclass(frozen=True)
class Target:
    """The interpreter and platform wheels must fit (the image's, not this machine's)."""

    arch: str
    python_version: str

    @property
    def platform_tag(self) -> str:
        return f"manylinux_2_28_{self.arch}"

    @property
    def abi(self) -> str:
        return "cp" + self.python_version.replace(".", "")

    @property
    def platform_tags(self) -> list[str]:
        """The tags a wheel may carry: pip takes a given --platform literally, so the older
        manylinux generations the image's glibc also runs (grpcio ships manylinux2014
        only) are named too."""
        return [self.platform_tag, f"manylinux_2_17_{self.arch}", f"manylinux2014_{self.arch}"]

    def pip_args(self) -> list[str]:
        platforms = [arg for tag in self.platform_tags for arg in ("--platform", tag)]
        return ["--only-binary=:all:", *platforms,
                "--python-version", self.python_version, "--implementation", "cp",
                "--abi", self.abi]

    def __str__(self) -> str:
        return f"{self.abi} {self.platform_tag}"


@dataclass(frozen=True)
class Pinned:
    name: str
    version: str
    path: Path
    sha256: str


@dataclass(frozen=True)
class Lock:
    """Every package the image installs: exact versions, wheel files and their hashes.

    `packages` (torch and mkserve's runtime needs) and `model_packages` (what
    the archive's requirementsFile and --requirements add) are resolved together
    and installed in separate layers, so that changing a model's requirements
    does not rebuild or re-push the large torch layer.
    """

    packages: tuple[Pinned, ...]
    target: str
    model_packages: tuple[Pinned, ...] = ()
    notes: tuple[str, ...] = ()

    @staticmethod
    def _text(packages: tuple[Pinned, ...], target: str, what: str) -> str:
        lines = [f"# Written by mkserve: {what}, pinned and hashed.",
                 f"# Resolved on the build host from a wheelhouse for {target}."]
        lines += [f"{p.name}=={p.version} --hash=sha256:{p.sha256}" for p in packages]
        return "\n".join(lines) + "\n"

    def text(self) -> str:
        return self._text(self.packages, self.target, "torch and mkserve's runtime packages")

    def model_text(self) -> str:
        return self._text(self.model_packages, self.target, "the model's own requirements")

    @property
    def all(self) -> tuple[Pinned, ...]:
        return self.packages + self.model_packages

    def version(self, name: str) -> str | None:
        return next((p.version for p in self.all if p.name == name), None)


def target_for(spec: BuildSpec) -> Target:
    return Target(PLATFORMS[spec.platform], spec.python_version)


def runtime_requirements() -> list[str]:
    """What `pip install mkserve` installs, less BUILDER_ONLY: what `python -m
    mkserve.runtime` needs besides torch, read from the installed package's metadata."""
    from importlib.metadata import requires

    wanted = []
    for text in requires("mkserve") or []:
        requirement, _, marker = text.partition(";")
        if "extra" in marker:
            continue  # an optional extra (test tools)
        name = re.split(r"[\s\[<>=!~(]", requirement.strip(), maxsplit=1)[0]
        if canonical(name) not in BUILDER_ONLY:
            wanted.append(text.strip())
    return wanted


def base_requirements(spec: BuildSpec) -> list[str]:
    return [f"torch=={spec.torch_version}", *runtime_requirements()]


def requirement_args(spec: BuildSpec) -> list[str]:
    args = base_requirements(spec)
    for path in spec.requirement_files:
        args += ["-r", path]
    return args


def default_wheelhouse(spec: BuildSpec) -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "mkserve" / "wheelhouse" / f"{target_for(spec).arch}-{target_for(spec).abi}"


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pip(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True,
                          env=env, check=False)


def _missing(output: str) -> str | None:
    match = re.search(r"No matching distribution found for (\S+)", output)
    return match.group(1) if match else None


def fill(spec: BuildSpec, wheelhouse: Path, out: Out) -> None:
    """`pip download` the image's packages into `wheelhouse`, with this machine's pip config."""
    wheelhouse.mkdir(parents=True, exist_ok=True)
    target = target_for(spec)
    args = ["download", "--dest", str(wheelhouse), "--progress-bar", "off",
            "--disable-pip-version-check", *target.pip_args()]
    if spec.torch_index_url:
        args += ["--extra-index-url", spec.torch_index_url]
    args += requirement_args(spec)
    out(f"downloading wheels for {target} into {wheelhouse} (on this machine)")
    proc = _pip(args)
    if proc.returncode != 0:
        text = proc.stdout + proc.stderr
        missing = _missing(text)
        hint = ""
        if missing and missing.startswith("torch"):
            hint = (f" For a CPU build of torch ({spec.torch_version}) add the PyTorch CPU index: "
                    "--torch-index-url https://download.pytorch.org/whl/cpu.")
        elif missing:
            hint = (f" If {missing} publishes no wheel for {target}, build one and put it in "
                    f"the wheelhouse: pip wheel --no-deps -w {wheelhouse} '{missing}'.")
        raise WheelhouseError(f"pip download failed{' for ' + missing if missing else ''}: "
                              f"{_last_error(text)}.{hint}")
    saved = len(re.findall(r"^Saved ", proc.stdout, re.MULTILINE))
    reused = len(re.findall(r"File was already downloaded", proc.stdout))
    out(f"wheelhouse ready: {saved} downloaded, {reused} already there")


def _last_error(text: str) -> str:
    errors = [line.strip() for line in text.splitlines() if line.startswith("ERROR:")]
    tail = errors[-1] if errors else (text.strip().splitlines() or ["no output"])[-1]
    return tail.removeprefix("ERROR:").strip().rstrip(".")


def _resolve(wheelhouse: Path, target: Target, requirements: list[str]) -> dict[str, Pinned]:
    """pip's resolution of `requirements` from the wheelhouse alone, as the image will see it."""
    with tempfile.TemporaryDirectory(prefix="mkserve-lock-") as tmp:
        report_path = Path(tmp) / "report.json"
        # --isolated: ignore this machine's pip config and PIP_* variables, so the
        # resolution sees the wheelhouse and nothing else (as the image will).
        args = ["install", "--isolated", "--dry-run", "--ignore-installed", "--quiet",
                "--disable-pip-version-check", "--no-index", "--find-links", str(wheelhouse),
                "--target", str(Path(tmp) / "target"), "--report", str(report_path),
                *target.pip_args(), *requirements]
        proc = _pip(args)
        if proc.returncode != 0:
            text = proc.stdout + proc.stderr
            missing = _missing(text)
            what = f"no wheel of {missing}" if missing else _last_error(text)
            raise WheelhouseError(
                f"the wheelhouse {wheelhouse} cannot satisfy the image's requirements for "
                f"{target}: {what}. Add the wheel (pip download --only-binary=:all: "
                f"{' '.join('--platform ' + t for t in target.platform_tags)} "
                f"--python-version {target.python_version} "
                f"-d {wheelhouse} '{missing or 'PACKAGE'}'), or pass --fill-wheelhouse to "
                "let mkserve download it on this machine")
        report = json.loads(report_path.read_text())
    found: dict[str, Pinned] = {}
    for item in report.get("install", []):
        url = item.get("download_info", {}).get("url", "")
        path = Path(unquote(urlsplit(url).path))
        if not url.startswith("file:") or not path.is_file():
            raise WheelhouseError(f"pip resolved {item['metadata']['name']} to {url!r}, which is "
                                  "not a wheel file in the wheelhouse")
        name = canonical(item["metadata"]["name"])
        found[name] = Pinned(name, item["metadata"]["version"], path, "")
    return found


def _hashed(found: dict[str, Pinned], names: list[str]) -> tuple[Pinned, ...]:
    return tuple(Pinned(p.name, p.version, p.path, file_sha256(p.path))
                 for p in (found[n] for n in sorted(names)))


def lock(spec: BuildSpec, wheelhouse: Path) -> Lock:
    """Resolve the image's packages from the wheelhouse alone (what the image will install)."""
    if not wheelhouse.is_dir():
        raise UsageError(f"--wheelhouse {wheelhouse}: no such folder")
    target = target_for(spec)
    base = _resolve(wheelhouse, target, base_requirements(spec))
    joint = _resolve(wheelhouse, target, requirement_args(spec)) if spec.requirement_files \
        else base
    moved = sorted(f"{n} {base[n].version} -> {joint[n].version}" for n in base
                   if n in joint and joint[n].version != base[n].version)
    notes: tuple[str, ...] = ()
    if moved:
        # The model pins other versions of base packages: one layer holds everything.
        result = Lock(_hashed(joint, list(joint)), str(target), (), (
            "the model's requirements change base packages (" + ", ".join(moved) + "); "
            "they share one dependency layer",))
    else:
        extras = [n for n in joint if n not in base]
        result = Lock(_hashed(joint, list(base)), str(target), _hashed(joint, extras), notes)
    cuda = [p.name for p in result.all if CUDA_PACKAGE.match(p.name)]
    if cuda and not spec.gpu:
        raise WheelhouseError(
            f"this CPU image would install CUDA packages ({', '.join(cuda)}): the wheelhouse's "
            f"torch {result.version('torch')} is a CUDA build. Use a CPU build (torch=="
            f"{spec.torch_version.split('+')[0]}+cpu, e.g. --torch-index-url "
            "https://download.pytorch.org/whl/cpu) or build with --gpu")
    return result
