"""The GPU transcriber image (services/transcriber/Dockerfile --target gpu): the same image as
the CPU one plus CUDA's libraries from NVIDIA's pip wheels, pinned with hashes in
requirements-transcriber-gpu.lock. No Docker engine here: the Dockerfile, the locks and the
ctranslate2 library the dev .venv holds (the one the image installs) are read as files."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

from tests.deploy.test_dockerfiles import instructions, pins

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "services/transcriber/Dockerfile"
GPU_LOCK = "requirements-transcriber-gpu.lock"
CPU_LOCK = "requirements-transcriber.lock"
VENV = "/opt/moked"

WHEEL_OF_LIBRARY = {"cublas": "nvidia-cublas-cu{major}", "cudnn": "nvidia-cudnn-cu12"}
"""CUDA libraries CTranslate2 loads → NVIDIA's wheel with them in nvidia/<name>/lib.
libcublasLt ships in the cuBLAS wheel; cuDNN 9's wheel is for CUDA 12."""


def stages() -> dict[str, tuple[str, list[tuple[str, str]]]]:
    """Stage name → (what it is FROM, its instructions), in the file's order."""
    result: dict[str, tuple[str, list[tuple[str, str]]]] = {}
    steps: list[tuple[str, str]] = []
    for name, rest in instructions(DOCKERFILE.read_text()):
        if name == "FROM":
            base, _, alias = rest.partition(" AS ")
            steps = []
            result[alias.strip()] = (base.strip(), steps)
        elif result:
            steps.append((name, rest))
    return result


def lineage(stage: str) -> list[tuple[str, str]]:
    """The instructions that make `stage`: its ancestors' first, then its own."""
    all_stages = stages()
    base, steps = all_stages[stage]
    return (lineage(base) if base in all_stages else []) + steps


def copied_from(stage: str) -> set[str]:
    return {
        rest.split()[0].removeprefix("--from=")
        for name, rest in lineage(stage)
        if name == "COPY" and rest.startswith("--from=")
    }


def installs(stage: str) -> set[str]:
    """The lock files pip installs (hash-checked) into the stage and the stages it copies."""
    found = {
        match
        for name, rest in lineage(stage)
        if name == "RUN"
        for match in re.findall(r"pip install --require-hashes -r (\S+)", rest)
    }
    for source in copied_from(stage):
        found |= installs(source)
    return found


def env(stage: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for name, rest in lineage(stage):
        if name == "ENV":
            values |= dict(re.findall(r"(\w+)=(\S+)", rest))
    return values


def gpu_library_dirs() -> list[str]:
    return env("gpu")["LD_LIBRARY_PATH"].split(":")


def test_the_default_image_is_the_cpu_one_and_the_gpu_one_a_target() -> None:
    names = list(stages())
    assert names[-1] == "runtime", "`docker build` without --target builds the CPU image"
    assert "gpu" in names
    assert installs("runtime") == {CPU_LOCK}
    assert installs("gpu") == {GPU_LOCK}


def test_both_images_share_user_entrypoint_and_healthcheck() -> None:
    for target in ("runtime", "gpu"):
        steps = lineage(target)
        names = [name for name, _ in steps]
        users = [rest for name, rest in steps if name == "USER"]
        assert users == ["10001:10001"], target
        assert names.index("USER") > max(i for i, n in enumerate(names) if n == "RUN"), target
        assert ("ENTRYPOINT", '["/app/scripts/run-service"]') in steps, target
        assert ("CMD", '["transcriber"]') in steps, target
        assert "HEALTHCHECK" in names, target
    assert stages()["gpu"][0] == stages()["runtime"][0], "one base for both"


def test_the_gpu_image_runs_on_cuda_by_default() -> None:
    values = env("gpu")
    assert values["WHISPER_DEVICE"] == "cuda"
    assert values["WHISPER_COMPUTE_TYPE"] == "float16"
    assert "compute" in values["NVIDIA_DRIVER_CAPABILITIES"].split(",")
    assert "WHISPER_DEVICE" not in env("runtime"), "the CPU image keeps the settings' auto"


def test_ld_library_path_is_the_lib_dirs_of_the_locks_wheels() -> None:
    python = re.search(r"^ARG PYTHON_IMAGE=python:(\d+\.\d+)\.", DOCKERFILE.read_text(), re.M)
    assert python, "the venv's site-packages follows the base image's Python"
    locked = pins(GPU_LOCK)
    dirs = gpu_library_dirs()
    assert dirs
    for directory in dirs:
        match = re.fullmatch(
            rf"{VENV}/lib/python{re.escape(python[1])}/site-packages/nvidia/(\w+)/lib", directory
        )
        assert match, directory
        wheel = WHEEL_OF_LIBRARY[match[1]].format(major=12)
        assert wheel in locked, f"{directory}: {wheel} is not in {GPU_LOCK}"


def _cuda_libraries_ctranslate2_loads() -> dict[str, int]:
    """'cublas' → 12 … : the CUDA libraries (and their major versions) named in the
    ctranslate2 library this .venv holds, the version the image installs."""
    files = metadata.files("ctranslate2") or []
    libraries = [f for f in files if re.search(r"libctranslate2[^/]*\.so", str(f))]
    assert libraries, "ctranslate2 ships its library"
    found: dict[str, int] = {}
    for library in libraries:
        data = Path(str(library.locate())).read_bytes()
        for name, major in re.findall(rb"lib(cublas|cudnn)\w*\.so\.(\d+)", data):
            found[name.decode()] = int(major)
    return found


def test_the_gpu_lock_has_every_cuda_library_ctranslate2_loads() -> None:
    """CTranslate2's wheel loads cuBLAS (and, before 4.7, cuDNN) by name at run time: each
    must come from a wheel in the lock and its directory be on LD_LIBRARY_PATH."""
    installed = metadata.version("ctranslate2")
    assert pins(GPU_LOCK)["ctranslate2"][0] == installed, "the scanned library is the image's"
    loaded = _cuda_libraries_ctranslate2_loads()
    assert loaded.get("cublas") == 12, loaded
    locked = pins(GPU_LOCK)
    dirs = gpu_library_dirs()
    for name, major in loaded.items():
        wheel = WHEEL_OF_LIBRARY[name].format(major=major)
        assert wheel in locked, f"ctranslate2 {installed} loads lib{name}: add {wheel}"
        assert any(d.endswith(f"/nvidia/{name}/lib") for d in dirs), name


def test_the_gpu_lock_agrees_with_the_other_locks() -> None:
    """Same versions and hashes as requirements.lock and the CPU transcriber's lock; it adds
    NVIDIA's wheels and nothing else, and the development lock has none of them."""
    gpu = pins(GPU_LOCK)
    cpu = pins(CPU_LOCK)
    everything = pins("requirements.lock")
    shared = gpu.keys() & everything.keys()
    assert {name: gpu[name] for name in shared} == {name: everything[name] for name in shared}
    assert {name: gpu.get(name) for name in cpu} == cpu, "every CPU pin, unchanged"
    added = gpu.keys() - cpu.keys()
    assert added and all(name.startswith("nvidia-") for name in added), sorted(added)
    assert not [name for name in everything if name.startswith("nvidia-")], (
        "CUDA's wheels stay out of the development .venv"
    )


def test_the_gpu_lock_is_in_the_build_context_and_generated() -> None:
    allowed = [line[1:] for line in (ROOT / ".dockerignore").read_text().splitlines()]
    assert GPU_LOCK in allowed
    script = (ROOT / "scripts/lock").read_text()
    assert f"--extra gpu -o {GPU_LOCK}" in script, "scripts/lock writes it"
    development = [line for line in script.splitlines() if "-o requirements.lock" in line]
    assert development and "--extra gpu" not in development[0], "not in the dev .venv"
