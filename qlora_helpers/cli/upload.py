"""`qlora-bert upload`: a finished output folder and its model card to a Hugging Face Hub repository."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    upload = sub.add_parser("upload", help="upload a train, merge or export output with its model card to the Hub")
    upload.add_argument("folder", help="the output directory of `train`, `merge` or `export`")
    upload.add_argument("--repo-id", required=True, help="the Hub repository, NAMESPACE/NAME (created if missing)")
    upload.add_argument("--private", action="store_true", help="create the repository as private")


def run(args: argparse.Namespace) -> int:
    from qlora_helpers.hub import upload_folder

    print(f"uploaded {args.folder} to {upload_folder(args.folder, args.repo_id, args.private)}")
    return 0
