"""``--push-to-hub``: upload the exported model and its card to a Hugging Face model repository."""

from __future__ import annotations

import os
import re
from pathlib import Path

from .card import CARD_NAME
from .errors import ExportError

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")


class HubError(ExportError):
    """The Hub push cannot happen (offline, no token, bad repo id) or failed."""


def check_push_ready(repo_id: str) -> None:
    """Refuse before exporting when the push could not work: a bad repo id, offline mode, no token."""
    if not _REPO_ID.match(repo_id):
        raise HubError(f"--push-to-hub {repo_id!r} is not a Hub repo id; expected OWNER/NAME, e.g. alice/dementia-cgan")
    import huggingface_hub
    from huggingface_hub import constants

    offline = os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"} or constants.HF_HUB_OFFLINE
    if offline:
        raise HubError(f"cannot push to {repo_id}: HF_HUB_OFFLINE is set; unset it and retry with network access")
    if not huggingface_hub.get_token():
        raise HubError(f"cannot push to {repo_id}: no Hugging Face token; run `hf auth login` or set HF_TOKEN")


def push_to_hub(repo_id: str, model: Path, card: Path | None, *, private: bool = False) -> str:
    """Create the repo if needed and upload ``model`` (and ``card`` as the repo's README.md) in one commit; returns its URL."""
    check_push_ready(repo_id)
    from huggingface_hub import CommitOperationAdd, HfApi

    files = {model.name: model, **({CARD_NAME: card} if card is not None else {})}
    try:
        api = HfApi()
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        info = api.create_commit(
            repo_id=repo_id,
            repo_type="model",
            operations=[CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(path)) for name, path in files.items()],
            commit_message=f"Upload {model.name} exported with cgan-export",
        )
    except Exception as exc:  # network, auth and HTTP errors come in many types; the user needs one line
        first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise HubError(f"push to {repo_id} failed ({first[:300]}); the local export at {model} is complete") from None
    return str(getattr(info, "commit_url", None) or f"https://huggingface.co/{repo_id}")
