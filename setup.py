"""Packaging of the javisdit library (configs and scripts are used from a checkout of the repository)."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def requirements(name: str) -> list[str]:
    """Requirement lines of requirements/<name>, without comments and pip options."""
    lines = (HERE / "requirements" / name).read_text().splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip() and not line.startswith("-")]


setup(
    name="javisdit",
    version="0.1.0",
    description="JavisDiT: joint audio-video diffusion transformer with hierarchical spatio-temporal prior "
    "synchronisation (a clean re-implementation of v0.1)",
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["javisdit", "javisdit.*"]),
    install_requires=requirements("requirements.txt"),
    extras_require={
        # ColossalAI itself must be installed with --no-deps (see requirements/requirements-colossalai.txt).
        "train": requirements("requirements-colossalai.txt"),
        "gpu": requirements("requirements-gpu.txt"),
        "test": requirements("requirements-test.txt"),
    },
)
