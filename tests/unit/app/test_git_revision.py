"""`GET /version`'s git revision, read from a checkout's .git without git: a branch's loose ref,
a packed ref, a detached head, and no checkout at all."""

from __future__ import annotations

from pathlib import Path

from app.probe_views import git_revision

COMMIT = "5e749c4a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e"


def checkout(root: Path, head: str) -> Path:
    (root / ".git" / "refs" / "heads").mkdir(parents=True)
    (root / ".git" / "HEAD").write_text(head)
    return root


def test_a_branch_whose_ref_is_a_loose_file(tmp_path: Path) -> None:
    root = checkout(tmp_path, "ref: refs/heads/main\n")
    (root / ".git" / "refs" / "heads" / "main").write_text(COMMIT + "\n")

    assert git_revision(root) == COMMIT


def test_a_branch_whose_ref_is_packed(tmp_path: Path) -> None:
    root = checkout(tmp_path, "ref: refs/heads/main\n")
    (root / ".git" / "packed-refs").write_text(
        f"# pack-refs with: peeled fully-peeled sorted\n{'1' * 40} refs/heads/other\n"
        f"{COMMIT} refs/heads/main\n"
    )

    assert git_revision(root) == COMMIT


def test_a_detached_head_is_its_commit(tmp_path: Path) -> None:
    assert git_revision(checkout(tmp_path, COMMIT + "\n")) == COMMIT


def test_no_checkout_no_revision(tmp_path: Path) -> None:
    assert git_revision(tmp_path) is None
