"""A plain (non-editable) install is discovered by HyperSpy.

The package is installed into a fresh virtual environment and a separate
interpreter, started outside the repository, checks that HyperSpy finds the
"fused_stem" signal types of the *installed* copy. This catches what an
editable install hides: a ``hyperspy_extension.yaml`` left out of the package
data, a wrong entry point, modules missing from the package list.

The dependencies come from the environment running the tests: the new
environment is created with ``--system-site-packages`` and, when the tests
themselves run in a virtual environment (whose packages
``--system-site-packages`` would not reach), a ``.pth`` file adds this
environment's site-packages. Its own ``.pth`` files (the editable install's
path hook among them) are not processed, so the repository is not importable
from the new environment.
"""

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import textwrap
import warnings
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE_DIR = REPO / "stemfuse_hs"

#: Left out of the copy that is built: VCS data, caches and earlier build output.
_IGNORE = shutil.ignore_patterns(
    ".git", "*.egg-info", "build", "dist", "__pycache__", ".pytest_cache", ".hypothesis", ".venv", "*.pyc"
)

PROBE = textwrap.dedent(
    r"""
    import contextlib, importlib.metadata, importlib.util, io, json, sys
    import numpy as np
    import hyperspy.api as hs

    hs.preferences.General.show_progressbar = False
    out = {"sys_path": sys.path}
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        hs.print_known_signal_types()
    out["known_types"] = buf.getvalue()
    # HyperSpy reads the yaml of the package named by the entry point, before importing it.
    out["stemfuse_imported_by_hyperspy"] = "stemfuse_hs" in sys.modules
    out["spec_origin"] = importlib.util.find_spec("stemfuse_hs").origin
    eps = importlib.metadata.entry_points(group="hyperspy.extensions")
    out["entry_points"] = sorted((ep.name, ep.value) for ep in eps)

    def describe(signal):
        cls = type(signal)
        return {
            "name": cls.__name__,
            "file": sys.modules[cls.__module__].__file__,
            "signal_type": signal.metadata.Signal.signal_type,
            "mro": [c.__module__ + "." + c.__name__ for c in cls.__mro__],
        }

    classes = {}
    s = hs.signals.Signal2D(np.random.default_rng(0).poisson(3.0, (3, 4, 8, 8)).astype("uint16"))
    s.set_signal_type("fused_stem")
    classes["eager_2d"] = describe(s)
    features = s.sdt_features(binning=1, fraction=0.5, beam_radius=0)
    classes["sdt_result"] = describe(features)
    out["n_features"] = int(features.data.shape[-1])
    lazy = hs.signals.Signal2D(np.ones((3, 4, 8, 8))).as_lazy()
    lazy.set_signal_type("fused_stem")
    classes["lazy_2d"] = describe(lazy)
    spectrum = hs.signals.Signal1D(np.ones((3, 4, 16)))
    spectrum.set_signal_type("fused_stem")
    classes["eager_1d"] = describe(spectrum)
    lazy_spectrum = hs.signals.Signal1D(np.ones((3, 4, 16))).as_lazy()
    lazy_spectrum.set_signal_type("fused_stem")
    classes["lazy_1d"] = describe(lazy_spectrum)
    out["classes"] = classes

    import stemfuse_hs

    out["package_file"] = stemfuse_hs.__file__
    out["version"] = stemfuse_hs.__version__
    out["distribution_version"] = importlib.metadata.version("stemfuse_hs")
    out["hs_fuse"] = callable(getattr(hs, "fuse", None))
    print("PROBE-JSON " + json.dumps(out))
    """
)


def _run(args, **kwargs):
    return subprocess.run(args, capture_output=True, text=True, **kwargs)


def _clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env.update(
        PIP_NO_INDEX="1",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PIP_NO_INPUT="1",
        PYTHONNOUSERSITE="1",
        MPLBACKEND="Agg",
        **extra,
    )
    return env


def _parent_site_packages():
    """site-packages of the interpreter running the tests, when it is a virtual environment."""
    if sys.prefix == sys.base_prefix:
        return []  # --system-site-packages already reaches them
    dirs = list(site.getsitepackages()) + [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    seen = []
    for d in dirs:
        if d not in seen and Path(d).is_dir():
            seen.append(d)
    return seen


def _install(python, source, workdir, env):
    """Install ``source`` into the environment of ``python``, without touching the network.

    Returns the name of the method that worked. Tried in order:

    1. ``pip install --no-deps --no-build-isolation`` with the new environment's pip;
    2. a wheel built by the test interpreter's ``pip wheel --no-build-isolation``,
       then installed (forced: pip skips a wheel of a version the parent
       environment, on the path, holds already);
    3. setuptools' own ``install --single-version-externally-managed`` (what
       pip used to run), for build environments whose setuptools cannot make
       wheels (setuptools < 70.1 without the ``wheel`` package).
    """
    log = []
    result = _run([python, "-m", "pip", "install", "--no-deps", "--no-build-isolation", str(source)], env=env)
    if result.returncode == 0:
        return "pip install --no-build-isolation", log
    log.append(("pip install", result.stdout[-3000:] + result.stderr[-3000:]))

    wheels = workdir / "wheels"
    result = _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source)],
        env=env,
    )
    if result.returncode == 0:
        (wheel,) = wheels.glob("stemfuse_hs-*.whl")
        # The parent environment (on the path through the .pth file) may hold the
        # same version already, and pip skips a wheel of an installed version.
        result = _run([python, "-m", "pip", "install", "--no-deps", "--force-reinstall", str(wheel)], env=env)
        if result.returncode == 0:
            return "pip wheel + pip install", log
    log.append(("pip wheel", result.stdout[-3000:] + result.stderr[-3000:]))

    legacy = (
        "import sys, setuptools; "
        "sys.argv = ['setup.py', 'install', '--single-version-externally-managed', "
        f"'--record', {str(workdir / 'installed-files.txt')!r}]; "
        "setuptools.setup()"
    )
    result = _run([python, "-c", legacy], cwd=source, env=env)
    if result.returncode == 0:
        return "setuptools install --single-version-externally-managed", log
    log.append(("setuptools install", result.stdout[-3000:] + result.stderr[-3000:]))
    pytest.fail("Could not install the package:\n" + "\n\n".join(f"--- {name}\n{text}" for name, text in log))


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh environment with stemfuse_hs installed from a copy of the repository, and
    what a probe interpreter (started outside the repository) saw there."""
    root = tmp_path_factory.mktemp("install")
    # Build from a clean copy: pip builds in the source tree (build/, *.egg-info),
    # and the repository is being edited by others while the tests run.
    source = root / "source"
    shutil.copytree(REPO, source, symlinks=True, ignore=_IGNORE)

    venv = root / "venv"
    result = _run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)])
    assert result.returncode == 0, result.stderr
    python = str(venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python"))
    env = _clean_env()
    purelib = _run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], env=env
    ).stdout.strip()
    parents = _parent_site_packages()
    if parents:
        (Path(purelib) / "_stemfuse_test_parent_env.pth").write_text("\n".join(parents) + "\n")

    method, log = _install(python, source, root, env)
    if method.startswith("setuptools"):
        warnings.warn(
            "pip could not build a wheel without network access here (its log follows); the package "
            f"was installed with {method} instead. Errors: "
            + "; ".join(
                f"{name}: " + " | ".join(l.strip() for l in text.splitlines() if "error:" in l.lower())[-300:]
                for name, text in log
            ),
            stacklevel=1,
        )

    workdir = root / "elsewhere"
    workdir.mkdir()
    probe = workdir / "probe.py"
    probe.write_text(PROBE)
    result = _run([python, str(probe)], cwd=workdir, env=env)
    assert result.returncode == 0, f"probe failed ({method}):\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    (line,) = [l for l in result.stdout.splitlines() if l.startswith("PROBE-JSON ")]
    report = json.loads(line[len("PROBE-JSON "):])
    report.update(method=method, purelib=purelib, venv=str(venv), source=str(source))
    return report


def _under(path, directory):
    try:
        Path(path).resolve().relative_to(Path(directory).resolve())
        return True
    except ValueError:
        return False


def test_installed_package_is_used_not_the_repository(installed):
    purelib = installed["purelib"]
    assert _under(installed["package_file"], purelib), installed["package_file"]
    assert not _under(installed["package_file"], REPO)
    assert _under(installed["spec_origin"], purelib)
    # The repository (or its package folder) is not on the path: nothing imports from it.
    path = {Path(p).resolve() for p in installed["sys_path"] if p}
    assert REPO.resolve() not in path and PACKAGE_DIR.resolve() not in path, installed["sys_path"]
    assert installed["distribution_version"] == installed["version"]


def test_entry_point_is_registered(installed):
    assert ["stemfuse_hs", "stemfuse_hs"] in installed["entry_points"]


def test_hyperspy_lists_fused_stem(installed):
    known = installed["known_types"]
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in known.splitlines()]
    fused = {row[2] for row in rows if row and row[0] == "fused_stem"}
    assert fused == {"FusedSTEMDiffraction", "FusedSTEMSignal"}, (installed["method"], known)
    assert all(row[3] == "stemfuse_hs" for row in rows if row and row[0] == "fused_stem")


@pytest.mark.parametrize(
    "key, name, base",
    [
        ("eager_2d", "FusedSTEMDiffraction", "pyxem.signals.diffraction2d.Diffraction2D"),
        ("lazy_2d", "LazyFusedSTEMDiffraction", "pyxem.signals.diffraction2d.LazyDiffraction2D"),
        ("eager_1d", "FusedSTEMSignal", "hyperspy._signals.signal1d.Signal1D"),
        ("lazy_1d", "LazyFusedSTEMSignal", "hyperspy._signals.lazy.LazySignal"),
        ("sdt_result", "FusedSTEMSignal", "hyperspy._signals.signal1d.Signal1D"),
    ],
)
def test_set_signal_type_gives_the_installed_classes(installed, key, name, base):
    info = installed["classes"][key]
    assert info["name"] == name
    assert info["signal_type"] == "fused_stem"
    assert base in info["mro"]
    assert _under(info["file"], installed["purelib"]), info["file"]


def test_sdt_features_runs_from_the_installed_copy(installed):
    assert installed["n_features"] == 32  # half of the 8 x 8 detector
    assert installed["hs_fuse"]  # importing the package adds hs.fuse


def test_extension_yaml_is_installed_as_package_data(installed):
    yaml_file = Path(installed["package_file"]).parent / "hyperspy_extension.yaml"
    assert yaml_file.is_file(), sorted(p.name for p in yaml_file.parent.iterdir())
    built_from = Path(installed["source"]) / "stemfuse_hs"
    assert yaml_file.read_text() == (built_from / "hyperspy_extension.yaml").read_text()
    # Every module of the package is installed, not only the top level.
    installed_modules = {
        p.relative_to(yaml_file.parent).as_posix() for p in yaml_file.parent.rglob("*.py")
    }
    source_modules = {p.relative_to(built_from).as_posix() for p in built_from.rglob("*.py")}
    assert source_modules <= installed_modules, sorted(source_modules - installed_modules)
