#!/usr/bin/env bash
# Cut a release: bump the version, check the changelog, build, and tag.
#
# Usage: scripts/release.sh 0.5.0
# Pushing the tag (git push --follow-tags) triggers the PyPI upload in CI.
set -euo pipefail

VERSION="${1:?usage: scripts/release.sh X.Y.Z}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

if [[ ! "$VERSION" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]]; then
    echo "error: version must look like 1.2.3, got '$VERSION'" >&2
    exit 1
fi

if [[ -n "$(git status --porcelain)" ]]; then
    echo "error: working tree is not clean; commit or stash first" >&2
    exit 1
fi

if ! grep -q "^## $VERSION " docs/changelog.md; then
    echo "error: docs/changelog.md has no '## $VERSION' section" >&2
    exit 1
fi

echo "==> bumping version to $VERSION"
sed -i.bak -E "s/^version = \".*\"/version = \"$VERSION\"/" pyproject.toml
sed -i.bak -E "s/^__version__ = \".*\"/__version__ = \"$VERSION\"/" src/throttlekit/__init__.py
rm -f pyproject.toml.bak src/throttlekit/__init__.py.bak

echo "==> running checks"
ruff check .
python -m pytest -q

echo "==> building"
rm -rf dist/
python -m build

echo "==> committing and tagging"
git add pyproject.toml src/throttlekit/__init__.py
git commit -m "Release $VERSION"
git tag -a "v$VERSION" -m "throttlekit $VERSION"

echo "Done. Review, then: git push --follow-tags"
