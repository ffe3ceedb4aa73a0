"""What the Java services (the Kafka broker, the S3-compatible server) share: finding Java 17+
and Maven, and downloading their jars once into a per-user cache with Maven.

Each service ships a small pom next to its module (``kafka_pom.xml``, ``s3proxy_pom.xml``;
no binary is committed) and describes itself with a :class:`JavaProgram`. :func:`fetch_jars`
copies that pom into the cache and runs one goal of the maven-dependency-plugin on it,
which downloads the jars from Maven Central (or the mirror in ``~/.m2/settings.xml``).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from saleslake.devservices.ports import file_lock
from saleslake.devservices.process import run_logged
from saleslake.errors import TransientError, UserError

MIN_JAVA = 17


class JavaNotFoundError(UserError):
    """No usable Java runtime (missing or older than Java 17)."""


class MavenNotFoundError(UserError):
    """``mvn`` is not installed or not on PATH."""


class JarFetchError(TransientError):
    """Maven could not download a service's jars (network, repository or mirror)."""


@dataclass(frozen=True)
class JavaProgram:
    """A Java service saleslake downloads with Maven and runs.

    ``pom`` is a resource of this package holding ``<version_property>`` and
    ``<dependency-plugin.version>``; ``goal`` is the maven-dependency-plugin goal that
    copies the jars (``copy-dependencies`` for the pom's dependencies, ``copy`` for its
    ``artifactItems``); ``main_jar`` is a glob that matches once the download is complete.
    ``product`` names it in messages ("Kafka"), ``runs`` says what Java runs ("the local
    Kafka broker") and ``instead`` what a user can do without it.
    """

    name: str
    pom: str
    version_property: str
    goal: str
    main_jar: str
    product: str
    runs: str
    instead: str

    def pom_text(self) -> str:
        return resources.files("saleslake.devservices").joinpath(self.pom).read_text("utf-8")

    def pom_property(self, name: str) -> str:
        match = re.search(rf"<{re.escape(name)}>\s*([^<\s]+)\s*</{re.escape(name)}>", self.pom_text())
        if not match:  # pragma: no cover - the pom ships with the package
            raise RuntimeError(f"{self.pom} has no <{name}> property")
        return match.group(1)

    def version(self) -> str:
        return self.pom_property(self.version_property)

    def default_cache_dir(self) -> Path:
        """``<cache root>/<name>/<version>`` (see :func:`cache_root`)."""
        return cache_root() / self.name / self.version()


def cache_root() -> Path:
    """Per-user jar cache: ``$SALESLAKE_CACHE_DIR`` or ``$XDG_CACHE_HOME/saleslake`` or
    ``~/.cache/saleslake``."""
    base = os.environ.get("SALESLAKE_CACHE_DIR")
    if base:
        root = Path(base).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "saleslake"
    return root.absolute()


# --------------------------------------------------------------------------- maven


def find_maven(program: JavaProgram) -> str:
    for candidate in (
        os.environ.get("SALESLAKE_MVN"),
        shutil.which("mvn"),
        *(str(Path(os.environ[v]) / "bin" / "mvn") for v in ("MAVEN_HOME", "M2_HOME") if os.environ.get(v)),
    ):
        if candidate and os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
            return candidate
    raise MavenNotFoundError(
        f"Maven (mvn) is needed once to download the {program.product} jars but was not found on PATH: "
        f"install Maven 3.6+ (e.g. apt-get install maven) or {program.instead}"
    )


def _jars_present(lib: Path, marker: Path, digest: str, main_jar: str) -> bool:
    try:
        return marker.read_text("utf-8").strip() == digest and any(lib.glob(main_jar))
    except OSError:
        return False


def fetch_jars(program: JavaProgram, cache_dir: Path | None = None, *, quiet: bool = True) -> Path:
    """Download ``program``'s jars into ``<cache_dir>/lib`` (idempotent) and return that folder.

    Skips Maven entirely when the folder was completed before for the same pom. Maven's own
    repository (``~/.m2`` or whatever ``settings.xml`` says) is reused, so a warm CI cache
    makes this an offline copy.
    """
    cache = Path(cache_dir).expanduser().absolute() if cache_dir else program.default_cache_dir()
    lib, marker = cache / "lib", cache / ".complete"
    pom = program.pom_text()
    digest = hashlib.sha256(pom.encode("utf-8")).hexdigest()
    if _jars_present(lib, marker, digest, program.main_jar):
        return lib
    mvn = find_maven(program)
    cache.mkdir(parents=True, exist_ok=True)
    with file_lock(cache / ".lock"):
        if _jars_present(lib, marker, digest, program.main_jar):  # another process finished while we waited
            return lib
        downloaded = _download_jars(program, mvn, cache, pom, quiet)
        marker.unlink(missing_ok=True)
        shutil.rmtree(lib, ignore_errors=True)
        downloaded.rename(lib)
        marker.write_text(digest + "\n", "utf-8")
    return lib


def _download_jars(program: JavaProgram, mvn: str, cache: Path, pom: str, quiet: bool) -> Path:
    """Have Maven copy the jars into a fresh folder under ``cache`` and return it; the
    caller moves it into place, so an interrupted download never looks complete. A failure
    removes the folder and raises one line pointing at Maven's output."""
    pom_file = cache / "pom.xml"
    pom_file.write_text(pom, "utf-8")
    tmp = cache / f"lib.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    out_file = cache / "fetch.log"
    cmd = [
        mvn,
        "-B",
        *(["-q"] if quiet else []),
        "-f",
        str(pom_file),
        f"org.apache.maven.plugins:maven-dependency-plugin:"
        f"{program.pom_property('dependency-plugin.version')}:{program.goal}",
        f"-DoutputDirectory={tmp}",
    ]
    what = f"the {program.product} {program.version()} jars"
    try:
        with out_file.open("w", encoding="utf-8") as out:
            proc = run_logged(cmd, out, timeout=1800, cwd=cache)
    except subprocess.TimeoutExpired:
        shutil.rmtree(tmp, ignore_errors=True)
        raise JarFetchError(f"downloading {what} with Maven took over 30 minutes; output in {out_file}") from None
    if proc.returncode != 0 or not any(tmp.glob(program.main_jar)):
        shutil.rmtree(tmp, ignore_errors=True)
        reason = _first_maven_error(out_file) or f"mvn exited with status {proc.returncode}"
        raise JarFetchError(
            f"Maven could not download {what}: {reason} "
            f"(full output in {out_file}; check network access to Maven Central or the "
            f"mirror in ~/.m2/settings.xml)"
        )
    return tmp


def _first_maven_error(out_file: Path) -> str:
    try:
        lines = out_file.read_text("utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    ansi = re.compile(r"\x1b\[[0-9;]*m")
    for line in lines:
        line = ansi.sub("", line).strip()
        if line.startswith("[ERROR]") and len(line) > len("[ERROR]") + 1:
            return line[len("[ERROR]") :].strip()[:400]
    return ""


# --------------------------------------------------------------------------- java


def find_java(program: JavaProgram) -> str:
    """The ``java`` to run: ``$JAVA_HOME/bin/java`` or ``java`` on PATH, Java 17 or newer."""
    java_home = os.environ.get("JAVA_HOME")
    candidates = [str(Path(java_home) / "bin" / "java")] if java_home else []
    candidates.append(shutil.which("java") or "")
    java = next((c for c in candidates if c and os.access(c, os.X_OK) and not os.path.isdir(c)), None)
    if java is None:
        raise JavaNotFoundError(
            f"Java {MIN_JAVA}+ is needed to run {program.runs} but no java was found "
            "(JAVA_HOME or PATH): install a JDK/JRE 17+ (e.g. apt-get install openjdk-17-jre-headless) "
            f"or {program.instead}"
        )
    try:
        proc = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise JavaNotFoundError(f"{java} does not run ({exc}): install a working Java {MIN_JAVA}+") from None
    major = _java_major(proc.stderr + proc.stdout)
    if major is None or major < MIN_JAVA:
        found = f"Java {major}" if major else "an unknown Java version"
        raise JavaNotFoundError(
            f"{program.product} {program.version()} needs Java {MIN_JAVA} or newer but {java} is {found}: "
            f"install Java {MIN_JAVA}+ and put it first on PATH or set JAVA_HOME"
        )
    return java


def _java_major(version_output: str) -> int | None:
    match = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major  # "1.8.0" is Java 8


__all__ = [
    "MIN_JAVA",
    "JarFetchError",
    "JavaNotFoundError",
    "JavaProgram",
    "MavenNotFoundError",
    "cache_root",
    "fetch_jars",
    "find_java",
    "find_maven",
]
