#!/bin/sh
# Builds the runtime virtualenv of the sitenet image from a source tree.
#
# The Dockerfile's build stage runs this, and tests/deploy/test_image.py runs the
# same Dockerfile instructions outside a container (as a non-root user, on a
# read-only copy of the sources), so what the image installs is exercised.
#
#   SITENET_SRC   the source tree (pyproject.toml, README.md, services/); read only
#   SITENET_VENV  where the virtualenv goes (copied as is into the runtime stage)
set -eu

src="${SITENET_SRC:?SITENET_SRC: the source tree}"
venv="${SITENET_VENV:?SITENET_VENV: where the virtualenv goes}"

# setuptools writes build/ and *.egg-info beside the sources: build from a copy,
# so the sources may stay read-only.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp -R "$src/pyproject.toml" "$src/README.md" "$src/services" "$work/"
chmod -R u+w "$work"  # cp keeps the sources' read-only modes
find "$work" -name __pycache__ -prune -exec rm -rf {} +

python3 -m venv "$venv"
# The exact pins of pyproject.toml; a wheel of our own code, not an editable install.
"$venv/bin/python" -m pip install --no-compile --quiet "$work"
# No build or install tools at run time: drop pip and setuptools from the venv.
"$venv/bin/python" -m pip uninstall --quiet --yes pip setuptools
# Byte-compile once here, so a read-only root filesystem costs no start-up time.
"$venv/bin/python" -m compileall -q "$venv/lib" >/dev/null || true
test -x "$venv/bin/sitenet"
