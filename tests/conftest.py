"""Shared fixtures: real DICOM peers (see tests/peers.py), an isolated
findtui config directory, and snapshots stored under the top-level
``snapshots/`` directory.

Peer fixtures are module-scoped: a test module that uses ``orthanc`` starts one
Orthanc for all its tests. A peer whose binary is missing makes the test fail
(naming the Debian package), never skip. Peers may be shared by the tests of a
module: do not change their data (use ``peers.orthanc(tmp_path)`` etc. directly
for a peer of your own).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_textual_snapshot import SVGImageExtension
from syrupy.assertion import SnapshotAssertion

if str(Path(__file__).resolve().parent) not in sys.path:  # e.g. --import-mode=importlib
    sys.path.insert(0, str(Path(__file__).resolve().parent))

import peers  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
SNAPSHOTS_DIR = REPO_ROOT / "snapshots"


# --------------------------------------------------------------------------
# Isolation
# --------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _isolated_findtui_config(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A developer's own findtui profiles must never leak into a test."""
    config_dir = tmp_path_factory.mktemp("findtui-config")
    monkeypatch.setenv("FINDTUI_CONFIG_DIR", str(config_dir))
    return config_dir


@pytest.fixture
def findtui_config_dir(_isolated_findtui_config: Path) -> Path:
    """The (empty, per-test) directory FINDTUI_CONFIG_DIR points at."""
    return _isolated_findtui_config


# --------------------------------------------------------------------------
# Snapshots: snapshots/<test module>/<test name>.svg
# --------------------------------------------------------------------------


class SnapshotsDirSVGExtension(SVGImageExtension):
    """pytest-textual-snapshot's SVG extension, storing in the top-level
    ``snapshots/<test module name>/`` instead of ``tests/__snapshots__/``."""

    @classmethod
    def dirname(cls, *, test_location) -> str:
        return str(SNAPSHOTS_DIR / test_location.basename)


class _SnapshotAssertion(SnapshotAssertion):
    # snap_compare calls snapshot.use_extension(SVGImageExtension): use ours.
    def with_defaults(self, *, extension_class=None, **kwargs):
        if extension_class is SVGImageExtension:
            extension_class = SnapshotsDirSVGExtension
        return super().with_defaults(extension_class=extension_class, **kwargs)


@pytest.fixture
def snapshot(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    """syrupy's ``snapshot``, with which pytest-textual-snapshot's ``snap_compare``
    writes its SVGs under ``snapshots/``."""
    return _SnapshotAssertion(
        update_snapshots=snapshot.update_snapshots,
        extension_class=snapshot.extension_class,
        test_location=snapshot.test_location,
        session=snapshot.session,
    )


# --------------------------------------------------------------------------
# Real peers
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[peers.OrthancPeer]:
    """Orthanc (ModalityWorklists plugin) loaded with peers.corpus() and peers.WORKLIST."""
    with peers.orthanc(tmp_path_factory.mktemp("orthanc")) as peer:
        yield peer


@pytest.fixture(scope="module")
def bulk_orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[peers.OrthancPeer]:
    """Orthanc, uncapped, holding peers.bulk_study_datasets(peers.CAPPED_STUDIES)."""
    with peers.bulk_orthanc(tmp_path_factory.mktemp("orthanc-bulk")) as peer:
        yield peer


@pytest.fixture(scope="module")
def capped_orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[peers.OrthancPeer]:
    """The same studies in an Orthanc with LimitFindResults: peers.CAPPED_LIMIT."""
    with peers.capped_orthanc(tmp_path_factory.mktemp("orthanc-capped")) as peer:
        yield peer


@pytest.fixture(scope="module")
def dcmqrscp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[peers.Peer]:
    """DCMTK dcmqrscp (Patient Root, Study Root, Patient/Study Only) with peers.corpus()."""
    with peers.dcmqrscp(tmp_path_factory.mktemp("dcmqrscp")) as peer:
        yield peer


@pytest.fixture(scope="module")
def wlmscpfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[peers.Peer]:
    """DCMTK wlmscpfs serving peers.WORKLIST."""
    with peers.wlmscpfs(tmp_path_factory.mktemp("wlmscpfs")) as peer:
        yield peer


@pytest.fixture(scope="module")
def qrscp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[peers.Peer]:
    """pynetdicom's qrscp app, as it is (one response per instance!), with peers.corpus()."""
    with peers.qrscp(tmp_path_factory.mktemp("qrscp")) as peer:
        yield peer


@pytest.fixture(
    scope="module",
    params=peers.UNCOMPRESSED_TRANSFER_SYNTAXES,
    ids=[peers.TRANSFER_SYNTAX_NAMES[ts] for ts in peers.UNCOMPRESSED_TRANSFER_SYNTAXES],
)
def single_ts_peer(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[peers.Peer]:
    """Parametrized over the four uncompressed transfer syntaxes: a Q/R peer that
    accepts only ``peer.transfer_syntaxes[0]`` (see peers.single_ts_peer)."""
    ts = request.param
    with peers.single_ts_peer(ts, tmp_path_factory.mktemp(f"ts-{peers.TRANSFER_SYNTAX_NAMES[ts]}")) as peer:
        yield peer


@pytest.fixture(scope="module")
def single_ts_peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, peers.Peer]]:
    """All four single-transfer-syntax peers at once: {transfer syntax UID: peer}."""
    from contextlib import ExitStack

    with ExitStack() as stack:
        yield {
            ts: stack.enter_context(
                peers.single_ts_peer(ts, tmp_path_factory.mktemp(f"ts-{peers.TRANSFER_SYNTAX_NAMES[ts]}"))
            )
            for ts in peers.UNCOMPRESSED_TRANSFER_SYNTAXES
        }
